"""Section 1b of BENCHMARKS.md: speed-ups tried on minBERT's CPU training step, each measured against
transformers in the same process (issue 14 asks for every attempt's ratio, kept or not).

- torch.compile of the encoder (inductor; falls back to a note where no compiler is present)
- fused QKV: one (3C x C) projection instead of three (C x C), its weight concatenated each step
The variants are copies of the default model changed here, not options of the model: an attempt
that does not pay is not kept in the model's code."""
from __future__ import annotations

import copy
import types

import torch
import torch.nn.functional as F

from .cases import _batch, _head_and_opt, _models, _train_step
from .harness import _ratio, _stats, alternate


def _fused_qkv_forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    B, T, C = x.shape
    w = torch.cat([self.query.weight, self.key.weight, self.value.weight])
    b = torch.cat([self.query.bias, self.key.bias, self.value.bias])
    q, k, v = (self._heads(t) for t in F.linear(x, w, b).split(C, dim=-1))
    y = self.reference_attention(q, k, v, mask)  # training on the CPU takes this path (model.py says why)
    return y.transpose(1, 2).reshape(B, T, C)


def fused_qkv(model):
    """A copy of `model` whose attention layers project Q, K and V in one matrix product."""
    from ..model import BertSelfAttention

    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, BertSelfAttention):
            mod.forward = types.MethodType(_fused_qkv_forward, mod)
    return m


def compiled(model):
    """A copy of `model` with its encoder under torch.compile (compiled at the first step)."""
    m = copy.deepcopy(model)
    m.encoder.compile()
    return m


def bench_attempts(checkpoint: str = "minilm-l6", shapes=((32, 64), (32, 128)), steps: int = 8,
                   warmup: int = 2) -> list[dict]:
    """Per shape: each variant's training step against transformers', alternating in one process."""
    dev = torch.device("cpu")
    ours, ref = _models(checkpoint, dev)
    variants = {"default": ours, "fused QKV": fused_qkv(ours), "torch.compile (encoder)": compiled(ours)}
    rows = []
    for B, T in shapes:
        batch = _batch(B, T, ours.config.vocab_size, dev)
        fns, notes = {}, {}
        for name, m in {**variants, "transformers": ref}.items():
            m.train()
            head, opt = _head_and_opt(m)
            step = _train_step(m, head, opt, batch, name == "transformers")
            try:
                step()  # compiles here, so compilation is outside the timing and its failure is caught
                fns[name] = step
            except Exception as e:  # no C++ compiler, or a graph inductor cannot take: reported
                notes[name] = f"{type(e).__name__}: {str(e)[:160]}"
        t = alternate(fns, steps, warmup)
        for name in variants:
            row = {"what": f"training step {B}x{T}", "variant": name, "note": notes.get(name)}
            if name in t:
                row |= {"ours_s": _stats(t[name]), "transformers_s": _stats(t["transformers"]),
                        "speed_ratio": _ratio(t["transformers"], t[name])}
            rows.append(row)
    return rows
