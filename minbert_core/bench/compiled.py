"""The bf16 training step eager, under torch.compile and under CUDA graphs, against transformers eager.

On the H100 a multi-task step at batch 8 was bound by the host (30 ms of GPU work in a 160 ms PCGrad step,
5,080 kernel launches; GPU_CHECK.md). `torch.compile(mode="reduce-overhead")` captures the compiled step in
CUDA graphs, so one graph launch replaces thousands of kernel launches. This measures what that buys on
the single-task training step (encoder + 5-way head + cross-entropy, backward, fused AdamW), bert-base's
shape with random weights, at a small and a larger batch, each contender on its own copy of the same
weights, alternating round by round in one process (harness.alternate). A contender that fails to compile
or to run is recorded with its error; the others are still measured.
"""
from __future__ import annotations

import copy
import logging
import statistics
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .harness import _ratio, _stats, alternate, matmul_peak, training_flops

# contender -> (model, torch.compile mode or None for eager)
CONTENDERS = {"minbert": ("minbert", None), "minbert-compile": ("minbert", "default"),
              "minbert-reduce-overhead": ("minbert", "reduce-overhead"), "transformers": ("transformers", None)}
CPU_NOTE = ("on a CPU CUDA graphs do not apply: reduce-overhead compiles as the default mode does (its "
            "cudagraph skips count that), so the CPU rehearsal checks the code path, not the speed-up")


class _LossStep(nn.Module):
    """The step's forward: encoder, a 5-way linear head on the pooled output, fp32 cross-entropy."""

    def __init__(self, encoder: nn.Module, hf: bool, autocast: bool):
        super().__init__()
        self.encoder, self.hf, self.autocast = encoder, hf, autocast
        self.head = nn.Linear(encoder.config.hidden_size, 5)

    def forward(self, ids: torch.Tensor, am: torch.Tensor, tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ids, am, tt: (B, T) token ids, attention mask, token types; y: (B,) labels -> scalar loss."""
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = (self.encoder(input_ids=ids, attention_mask=am, token_type_ids=tt) if self.hf
                   else self.encoder(ids, am, tt))
            return F.cross_entropy(self.head(out.pooler_output).float(), y)


def _make_step(encoder: nn.Module, hf: bool, mode: str | None, batch: tuple, autocast: bool) -> Callable[[], None]:
    """One training step of a fresh copy of `encoder` (and its own head and fused AdamW), compiled with
    `mode` (None: eager)."""
    dev = batch[0].device
    torch.manual_seed(0)  # the same head for every contender
    module = _LossStep(copy.deepcopy(encoder), hf, autocast).to(dev).train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-5, fused=dev.type == "cuda")
    fwd = torch.compile(module, mode=mode, dynamic=False) if mode else module
    graphs = mode == "reduce-overhead" and dev.type == "cuda"

    def step() -> None:
        if graphs:  # a new iteration: the graphs may reuse the last step's output memory
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        fwd(*batch).backward()
        opt.step()
    return step


class _SkipLog(logging.Handler):
    """Collects inductor's 'skipping cudagraphs due to ...' warnings (its cudagraphs log is off by default)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the message (shortened)."""
        self.messages.append(record.getMessage()[:300])


def _counts() -> dict[str, int]:
    from torch._dynamo.utils import counters

    return {"graph_breaks": sum(counters["graph_break"].values()),
            "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def _prepare(make: Callable[[], Callable[[], None]], sync: Callable[[], None],
             warm: int = 3) -> tuple[Callable[[], None] | None, dict]:
    """Build a contender and run its first `warm` steps (compilation, CUDA graph recording) outside the
    timing: (its step, {first_step_s, graph_breaks, cudagraph_skips, skip_reasons}), or (None, {error})."""
    log = logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs")
    handler, before = _SkipLog(), _counts()
    log.addHandler(handler)
    try:
        t0 = time.perf_counter()
        step = make()
        step()
        sync()
        first = time.perf_counter() - t0
        for _ in range(warm - 1):
            step()
        sync()
    except Exception as e:  # no compiler, a graph it cannot take, out of memory: recorded, not fatal
        return None, {"error": _short(e)}
    finally:
        log.removeHandler(handler)
    after = _counts()
    return step, {"first_step_s": first, **{k: after[k] - before[k] for k in after},
                  "skip_reasons": handler.messages[:3]}


def _short(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


class _Failed(Exception):
    def __init__(self, name: str, error: str):
        super().__init__(name)
        self.name, self.error = name, error


def _guarded(name: str, fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception as e:
            raise _Failed(name, _short(e)) from e
    return run


def alternate_tolerant(fns: dict[str, Callable[[], None]], steps: int, warmup: int, sync: Callable[[], None],
                       errors: dict[str, str]) -> dict[str, list[float]]:
    """harness.alternate, except that a contender raising is dropped (its error put in `errors`) and the
    others are timed again from the start."""
    fns = dict(fns)
    while fns:
        try:
            return alternate({k: _guarded(k, f) for k, f in fns.items()}, steps, warmup, sync)
        except _Failed as f:
            errors[f.name] = f.error
            fns.pop(f.name)
    return {}


def _shape_row(encoders: dict[str, nn.Module], cfg, B: int, T: int, steps: int, warmup: int,
               dev: torch.device, peak_gflops: float | None) -> dict:
    """Every contender at one (B, T): times, ratios against minBERT eager and transformers, compile notes."""
    from .cases import _batch

    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    ids, am, tt, y = _batch(B, T, cfg.vocab_size, dev)
    batch, fns, notes = (ids, am, tt, y), {}, {}
    for name, (model, mode) in CONTENDERS.items():
        fn, notes[name] = _prepare(lambda: _make_step(encoders[model], model == "transformers", mode, batch, True),
                                   sync)
        if fn is not None:
            fns[name] = fn
    errors = {k: v["error"] for k, v in notes.items() if "error" in v}
    t = alternate_tolerant(fns, steps, warmup, sync, errors)
    flops = training_flops(cfg, B, T)
    row = {"B": B, "T": T, "gflop_per_step": flops / 1e9, "contenders": {}}
    for name in CONTENDERS:
        c = {**notes[name], "error": errors.get(name)}
        if name in t:
            med = statistics.median(t[name])
            c.update(step_s=_stats(t[name]), tokens_per_s=B * T / med,
                     share_of_bf16_peak=flops / med / 1e9 / peak_gflops if peak_gflops else None)
            for base in ("minbert", "transformers"):
                if base in t and base != name:
                    c[f"speed_vs_{base}"] = _ratio(t[base], t[name])
        row["contenders"][name] = c
    return row


def bench_compiled_step(shapes: Sequence[tuple[int, int]] = ((8, 128), (32, 128)), steps: int = 10, warmup: int = 3,
                        device: str | None = None, encoder_shape: str = "base",
                        on_row: Callable[[dict], None] | None = None) -> dict:
    """The bf16-autocast training step of minBERT eager, under torch.compile (default and reduce-overhead,
    whose CUDA graphs apply on CUDA only) and transformers eager, on the same random weights of
    `encoder_shape` (multitask.RANDOM_SHAPES) at each (batch, length) of `shapes`; `on_row(result so far)`
    after each shape, so that a caller can keep what is done if a later shape runs out of time.

    Returns {device, shape, matmul_bf16, note, rows: [{B, T, contenders: {name: {step_s (s), speed_vs_minbert,
    speed_vs_transformers (per-round ratios, >1: faster), first_step_s (compilation included),
    graph_breaks, cudagraph_skips, error}}}]}."""
    from ..multitask import RANDOM_SHAPES
    from ..precision import device_name
    from .cases import _gpu_models

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = RANDOM_SHAPES[encoder_shape]
    ours, ref = _gpu_models(cfg, dev)
    peak = matmul_peak(8192, 10, torch.bfloat16, "cuda") if dev.type == "cuda" else matmul_peak(
        1024, 5, torch.bfloat16, "cpu")
    res = {"device": device_name(dev), "torch": torch.__version__,
           "shape": f"random:{encoder_shape} ({cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}), "
                    "bf16 autocast, fused AdamW on CUDA",
           "matmul_bf16": peak, "note": CPU_NOTE if dev.type == "cpu" else "", "rows": []}
    for B, T in shapes:
        res["rows"].append(_shape_row({"minbert": ours, "transformers": ref}, cfg, B, T, steps, warmup, dev,
                                      peak["gflops"]["median"]))
        torch._dynamo.reset()  # each shape compiles afresh, static shapes; frees the last shape's graphs
        if on_row:
            on_row(res)
    return res


def main(argv: list[str] | None = None) -> None:
    """python -m minbert_core.bench.compiled OUT.json [--shapes 8x128,32x128] [--encoder base] [--steps N]
    [--warmup N] [--device cuda]: OUT.json is rewritten after each shape."""
    import argparse
    import json
    from pathlib import Path

    from ..atomic import atomic_write_text

    p = argparse.ArgumentParser(prog="python -m minbert_core.bench.compiled", description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--shapes", default="8x128,32x128", help="batch x length, comma-separated")
    p.add_argument("--encoder", default="base", help="a multitask.RANDOM_SHAPES name (default: base)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    try:
        shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    except ValueError:
        raise ValueError(f"--shapes {a.shapes!r}: expected BxT pairs such as 8x128,32x128") from None
    bench_compiled_step(shapes, a.steps, a.warmup, a.device, a.encoder,
                        on_row=lambda r: atomic_write_text(a.out, json.dumps(r, indent=1, default=str)))


if __name__ == "__main__":
    main()
