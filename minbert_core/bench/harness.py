"""The timing harness: contenders alternate step by step after a warm-up; min / median / max over the
measured steps; ratios per round. Plus the machine's own yardsticks (matmul rate, FLOPs of a step)."""
from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from typing import Callable

import torch


def _stats(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}


def alternate(fns: dict[str, Callable[[], None]], steps: int = 10, warmup: int = 3,
              sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Time each callable once per round, round after round; the first `warmup` rounds are dropped."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(warmup + steps):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def _ratio(base: list[float], ours: list[float]) -> dict[str, float]:
    """Per-round speed ratios base/ours (>1: ours faster), summarised."""
    return _stats([b / o for b, o in zip(base, ours)])


def matmul_peak(n: int = 2048, reps: int = 10, dtype=torch.float32, device: str = "cpu") -> dict:
    """Measured matrix-multiply rate, GFLOP/s (the machine's practical peak for that dtype)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = (lambda: torch.cuda.synchronize()) if device.startswith("cuda") else (lambda: None)
    t = alternate({"mm": lambda: a @ b}, reps, 2, sync)["mm"]
    return {"n": n, "gflops": _stats([2 * n**3 / x / 1e9 for x in t])}


def training_flops(cfg, B: int, T: int) -> float:
    """~6 x non-embedding parameters x tokens, plus attention's QK^T and PV (x3 for fwd + bwd)."""
    H, L, I = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    non_embed = L * (4 * H * H + 2 * H * I) + H * H  # layers' matrices + pooler
    return 6 * non_embed * B * T + 12 * L * B * T * T * H


def utc_minute() -> str:
    """Now, in UTC to the minute: how BENCHMARKS.json dates what it measured ('2026-12-01 03:42')."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")


def _machine() -> dict:
    import transformers

    from ..precision import cpu_flags, device_name

    return {"cpu": device_name(torch.device("cpu")), "cpu_bf16_flags": cpu_flags(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "platform": platform.platform(),
            "date_utc": utc_minute()}


def _mmm(s: dict, scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    return " / ".join(fmt.format(s[k] * scale) for k in ("min", "median", "max"))
