"""Sections 1b and 1d of BENCHMARKS.md: speed-ups tried on minBERT's CPU training step, in fp32 (1b) and
under bf16 autocast (1d), each measured against transformers at the same precision in the same process
(issues 14 and 23 ask for every attempt's ratio, kept or not).

- torch.compile of the encoder (inductor; falls back to a note where no compiler is present)
- fused QKV: one (3C x C) projection instead of three (C x C), its weight concatenated each step
- bf16 only:
  - fused AdamW: torch's fused CPU AdamW kernel (`fused=True`) instead of its default on the CPU, the
    per-parameter loop (torch takes `foreach` only on accelerators). Both sides of this benchmark step
    with torch.optim.AdamW, not the study's own (minbert_core/optim.py, a multi-tensor update timed in
    section 1), so a gain here says what a fused kernel is worth, not what the study's step would gain;
  - flash attention: SDPA's fused CPU kernel, which torch 2.13 takes only without attention-probability
    dropout, so this variant turns that dropout off: a different regulariser, measured as the ceiling a
    fused kernel could reach, not as a drop-in;
  - casting the weights once per step is not a variant: autocast already caches each weight's bf16 copy
    for the duration of its region (torch.autocast's cache_enabled, on by default).
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


def _with_attention_changed(model, change):
    """A copy of `model` with `change(module)` applied to each of its self-attention modules."""
    from ..model import BertSelfAttention

    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, BertSelfAttention):
            change(mod)
    return m


def fused_qkv(model):
    """A copy of `model` whose attention layers project Q, K and V in one matrix product."""
    return _with_attention_changed(model, lambda mod: setattr(mod, "forward", types.MethodType(_fused_qkv_forward, mod)))


def compiled(model):
    """A copy of `model` with its encoder under torch.compile (compiled at the first step)."""
    m = copy.deepcopy(model)
    m.encoder.compile()
    return m


def flash_attention(model):
    """A copy of `model` whose self-attention takes SDPA's fused CPU kernel in training: attention-probability
    dropout off (torch 2.13's CPU flash kernel has no dropout; with it SDPA falls back to its math path)."""
    def change(mod):
        mod.impl, mod.dropout.p = "sdpa", 0.0

    return _with_attention_changed(model, change)


def bench_attempts(checkpoint: str = "minilm-l6", shapes=((32, 64), (32, 128)), steps: int = 8,
                   warmup: int = 2, precision: str = "fp32") -> list[dict]:
    """Per shape: each variant's training step against transformers' at the same precision ("fp32", or
    "bf16" autocast with its extra variants), alternating in one process. Rows: what, variant, note (why a
    variant was not measured), ours_s, transformers_s (seconds, min/median/max) and speed_ratio
    (transformers' time / the variant's, per round); bf16 rows add gflops and share_bf16_matmul (of the
    measured 1024² bf16 matmul rate)."""
    from .harness import matmul_peak, training_flops

    dev = torch.device("cpu")
    bf16 = precision == "bf16"
    ours, ref = _models(checkpoint, dev)
    variants = {"default": ours, "fused QKV": fused_qkv(ours), "torch.compile (encoder)": compiled(ours)}
    if bf16:
        variants |= {"fused AdamW": copy.deepcopy(ours), "flash attention (no attention dropout)": flash_attention(ours)}
    peak = matmul_peak(1024, 8, torch.bfloat16)["gflops"]["median"] if bf16 else None
    rows = []
    for B, T in shapes:
        batch = _batch(B, T, ours.config.vocab_size, dev)
        fns, notes = {}, {}
        for name, m in {**variants, "transformers": ref}.items():
            m.train()
            head, opt = _head_and_opt(m, fused=True if name == "fused AdamW" else None)
            step = _train_step(m, head, opt, batch, name == "transformers", autocast=bf16)
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
                if bf16:
                    g = training_flops(ours.config, B, T) / row["ours_s"]["median"] / 1e9
                    row |= {"gflops": g, "share_bf16_matmul": g / peak}
            rows.append(row)
    return rows
