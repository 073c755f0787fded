"""Where a multi-task step's time goes on a device: per-step time of short runs (strategy x pair encoding),
then torch.profiler over ten PCGrad steps (top operators by self CPU and self device time).

    python scripts/gpu_profile.py OUTDIR [--checkpoint random:base] [--device cuda]

Needs MINBERT_DATA (and MINBERT_MINILM_L6_DIR offline); scripts/gpu_check.sh prepare gives both."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minbert_core.train import TrainConfig, train  # noqa: E402


class _Stop(Exception):
    pass


def _cfg(a, out: Path, run_id: str, **kw) -> TrainConfig:
    base = dict(checkpoint=a.checkpoint, device=a.device, precision="bf16" if a.device == "cuda" else "fp32", pooling="cls",
                pair_encoding="bi", loss_weights="", batch_size=a.batch, max_length=512, train_limit=a.rows,
                eval_limit=64, epochs=1, telemetry_every=50, runs_dir=str(out / "runs"), run_id=run_id)
    return TrainConfig(**{**base, **kw})


def timings(a, out: Path) -> list[dict]:
    rows = []
    for strategy in ("sum", "pcgrad"):
        for pairs in ("bi", "cross"):
            run = train(_cfg(a, out, f"{strategy}-{pairs}", strategy=strategy, pair_encoding=pairs), progress=False)
            m = json.loads((run / "metrics.json").read_text())
            rows.append({"strategy": strategy, "pair_encoding": pairs, "batch_size": a.batch, "steps": m["steps"],
                         "ms_per_step": 1e3 * m["train_time_s"] / m["steps"],
                         "examples_per_s": m["train_examples_per_s"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def profile(a, out: Path, wait: int = 5, active: int = 10) -> str:
    from torch.profiler import ProfilerActivity, schedule

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    prof = torch.profiler.profile(activities=acts, schedule=schedule(wait=wait, warmup=2, active=active))

    def on_step(gstep: int) -> None:
        prof.step()
        if gstep >= wait + 2 + active:
            raise _Stop

    prof.start()
    try:
        train(_cfg(a, out, "profiled", strategy="pcgrad"), on_step=on_step, progress=False)
    except _Stop:
        pass
    prof.stop()
    ka = prof.key_averages()
    dev_key = "self_cuda_time_total" if a.device == "cuda" else "self_cpu_time_total"
    return "\n\n".join(ka.table(sort_by=k, row_limit=25) for k in ("self_cpu_time_total", dev_key))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("--checkpoint", default="random:base")
    p.add_argument("--device", default="cuda")
    p.add_argument("--rows", type=int, default=400, help="training rows per task of each timed run")
    p.add_argument("--batch", type=int, default=8, help="rows per task per step (default: 8, the paper's)")
    p.add_argument("--no-profile", action="store_true", help="the timed runs only")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows = timings(a, a.out)
    suffix = "" if a.batch == 8 else f"_b{a.batch}"
    (a.out / f"step_times{suffix}.json").write_text(json.dumps(rows, indent=2))
    if not a.no_profile:
        (a.out / "profile.txt").write_text(profile(a, a.out))
        print((a.out / "profile.txt").read_text()[:6000])


if __name__ == "__main__":
    main()
