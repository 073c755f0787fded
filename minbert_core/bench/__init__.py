"""`minbert bench`: speed and memory, measured as ratios against a baseline run in the same process.

Every timing alternates the contenders step by step after a warm-up and reports min/median/max
over the measured steps. BENCHMARKS.md is written from these measurements only. The harness
(`harness`), the cases (`cases`) and the Markdown writer (`render`) are separate modules.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from .cases import (bench_bucketing, bench_dropout, bench_gpu, bench_model, bench_multitask, bench_optimizer,
                    bench_precision_study, bench_precision, bench_profile, bench_strategies, bench_utilisation)
from .harness import _machine, _mmm, _ratio, _stats, alternate, matmul_peak, training_flops, utc_minute
from .attempts import bench_attempts
from .ddp import bench_ddp
from .study_jobs import bench_study_jobs
from .render import render

__all__ = ["PARTS", "run_parts", "alternate", "gpu_records", "rerender", "run_race", "save_race_figure", "bench_attempts", "bench_ddp", "bench_study_jobs", "bench_bucketing", "bench_dropout", "bench_gpu", "bench_model", "bench_multitask",
           "bench_optimizer", "bench_profile", "bench_strategies", "bench_utilisation", "matmul_peak", "render", "run_all",
           "training_flops", "_machine", "_mmm", "_ratio", "_stats"]


def _busy_from_profile(text: str) -> dict | None:
    """From scripts/gpu_profile.py's torch.profiler table: wall and device time of the profiled steps, and
    kernel launches per step."""
    import re

    step = re.search(r"^\s*ProfilerStep\*.*?(\d+)\s*$", text, re.M)
    dev = re.search(r"Self CUDA time total: ([\d.]+)(ms|s)", text)
    if not (step and dev):
        return None
    n = int(step.group(1))
    cols = re.split(r"\s{2,}", step.group(0).strip())
    wall = _ms(cols[4])  # CPU total of the profiled steps (the host runs ahead by at most a few kernels)
    launches = sum(int(m.group(1)) for m in re.finditer(r"^\s*(?:cudaLaunchKernel|cuLaunchKernelEx)\s.*?(\d+)\s*$",
                                                         text, re.M))
    return {"steps": n, "wall_ms": wall, "device_ms": _ms(dev.group(1) + dev.group(2)), "launches": launches // n}


def _ms(v: str) -> float:
    for unit, f in (("ms", 1.0), ("us", 1e-3), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    raise ValueError(v)


def gpu_records(root: Path) -> dict:
    """What the GPU scripts measured, where their records were committed (gpu_check.json beside
    BENCHMARKS.md; results/gpu/step_times.json and profile.txt): BENCHMARKS.md shows them."""
    out: dict = {}
    if (root / "gpu_check.json").is_file():
        out["gpu_check"] = json.loads((root / "gpu_check.json").read_text())
    steps = sorted((root / "results" / "gpu").glob("step_times*.json"))
    if steps:
        prof = steps[0].with_name("profile.txt")
        rows = [{"batch_size": 8, **r} for f in steps for r in json.loads(f.read_text())]  # 8: before it was recorded
        out["gpu_profile"] = {"steps": rows,
                              "device_busy": _busy_from_profile(prof.read_text()) if prof.is_file() else None}
    return out


def run_race(out: str | Path = "BENCHMARKS.md", checkpoint: str = "minilm-l6", budget: float = 1.5, seeds: int = 3,
             precision: str = "auto", **kw) -> dict:
    """The race alone (race.race, `seeds` seeds per side; kw: its other arguments); its result joins the last
    `minbert bench` results (BENCHMARKS.json), its figure is saved as figures/bench/race.png beside `out`,
    and BENCHMARKS.md is rewritten from them. Each side is kept as it finishes in BENCHMARKS.race.json beside
    `out` (race_progress), so that a race stopped part way resumes there; that file is removed once the race
    has joined BENCHMARKS.json.

    Raises FileNotFoundError without a BENCHMARKS.json to add to."""
    from .race import race

    out = Path(out)
    raw = out.with_suffix(".json")
    if not raw.is_file():
        raise FileNotFoundError(f"{raw}: not found; run `minbert bench` first (the race adds a section to it)")
    res = json.loads(raw.read_text())
    progress = race_progress(out)
    res["race"] = race(checkpoint, seeds=seeds, budget=budget, precision=precision,
                       say=lambda s: print(s, flush=True), progress=progress, **kw)
    res["race"]["figure"] = save_race_figure(res["race"], out.parent)
    atomic_write_text(raw, json.dumps(res, indent=2, default=str))
    atomic_write_text(out, render(res))
    progress.unlink(missing_ok=True)
    print(f"wrote {out}, {raw} and {out.parent / res['race']['figure']}")
    return res["race"]


def race_progress(out: str | Path) -> Path:
    """Where `minbert bench --race --out out` keeps its finished sides while it runs: BENCHMARKS.race.json
    beside BENCHMARKS.md (the same stem)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.race.json")


def save_race_figure(race: dict, root: Path) -> str:
    """The race's time-to-accuracy figure as root/figures/bench/race.png; returns its path relative to root
    (what BENCHMARKS.md links)."""
    import matplotlib.pyplot as plt

    from ..plots import race_curves

    path = Path("figures") / "bench" / "race.png"
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    fig = race_curves(race)
    fig.savefig(root / path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path.as_posix()


def rerender(out: str | Path = "BENCHMARKS.md") -> None:
    """BENCHMARKS.md again from the last `minbert bench` results (BENCHMARKS.json) and the GPU records
    committed since (gpu_check.json, results/gpu/): measures nothing."""
    out = Path(out)
    raw = out.with_suffix(".json")
    if not raw.is_file():
        raise FileNotFoundError(f"{raw}: not found; run `minbert bench` first")
    res = json.loads(raw.read_text()) | gpu_records(out.parent)
    res["rerendered_utc"] = utc_minute()
    atomic_write_text(raw, json.dumps(res, indent=2, default=str))
    atomic_write_text(out, render(res))
    print(f"wrote {out} and {raw} (nothing measured)")


# the parts of `minbert bench` that --only can re-measure alone, each with its progress line and its measurement
PARTS = {
    "model": ("training step and evaluation, ours vs transformers", lambda c, s, r: bench_model(c, steps=s)),
    "attempts": ("attempts: fused QKV, torch.compile of the encoder", lambda c, s, r: bench_attempts(c, steps=s)),
    "optimizer": ("optimizer", lambda c, s, r: bench_optimizer(checkpoint=c)),
    "dropout": ("dropout", lambda c, s, r: bench_dropout()),
    "precision": ("the training step in fp32 and bf16 autocast, ours and transformers",
                  lambda c, s, r: bench_precision(c, steps=s)),
    "precision_study": ("the study's multi-task step in fp32 and bf16 at 1 and 2 threads",
                        lambda c, s, r: bench_precision_study(c, steps=s)),
    "attempts_bf16": ("attempts on the bf16 step: fused QKV, torch.compile, fused AdamW, flash attention",
                      lambda c, s, r: bench_attempts(c, steps=s, precision="bf16")),
    "multitask": ("multi-task step: sum, pcgrad, naive pcgrad", lambda c, s, r: bench_multitask(c, steps=s)),
    "strategies": ("every gradient strategy against the summed loss", lambda c, s, r: bench_strategies(c, steps=s)),
    "bucketing": ("length bucketing on SST train", lambda c, s, r: bench_bucketing(c)),
    "utilisation": ("utilisation (needs the model part's times)", lambda c, s, r: bench_utilisation(r["model"], c)),
    "profile": ("profile of one training step", lambda c, s, r: bench_profile(c)),
    "ddp": ("the 2-process multi-task step (gloo)", lambda c, s, r: bench_ddp(c, steps=s)),
}


def run_parts(parts: list[str], out: str | Path = "BENCHMARKS.md", checkpoint: str = "minilm-l6",
              steps: int = 10) -> dict:
    """Re-measure only `parts` (names in PARTS), e.g. those fed by code that moved, and rewrite BENCHMARKS.md;
    every other section keeps its last measurement from BENCHMARKS.json. Each re-measured part is dated, with
    the machine, in the header. Ratios stay within one part's run, as always.

    Raises ValueError naming an unknown part; FileNotFoundError without a BENCHMARKS.json to add to."""
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"--only: unknown part(s) {', '.join(bad)}; known: {', '.join(PARTS)}")
    out = Path(out)
    raw = out.with_suffix(".json")
    if not raw.is_file():
        raise FileNotFoundError(f"{raw}: not found; run `minbert bench` first (--only re-measures parts of it)")
    res = json.loads(raw.read_text())
    machine = _machine()
    for i, part in enumerate(parts, 1):
        print(f"{i}/{len(parts)} {PARTS[part][0]} ...", flush=True)
        res[part] = PARTS[part][1](checkpoint, steps, res)
        res.setdefault("remeasured", {})[part] = {"date_utc": machine["date_utc"], "cpu": machine["cpu"],
                                                  "torch_threads": machine["torch_threads"]}
    atomic_write_text(raw, json.dumps(res, indent=2, default=str))
    atomic_write_text(out, render(res))
    print(f"wrote {out} and {raw} (re-measured: {', '.join(parts)})")
    return res


def run_all(out: str | Path = "BENCHMARKS.md", checkpoint: str = "minilm-l6", steps: int = 10,
            study_jobs: str | None = "smoke") -> dict:
    """Every benchmark, then BENCHMARKS.md (and the raw numbers beside it as JSON)."""
    from ..data import file_path

    sst = file_path("sst", "train")
    if not sst.is_file():  # needed by the bucketing part; fail before minutes of measuring, not after
        raise FileNotFoundError(f"{sst}: the bucketing benchmark reads SST train; set MINBERT_DATA or run "
                                "`minbert data fetch`")
    res: dict = {"machine": _machine(), "checkpoint": checkpoint}  # a full run: no part is "re-measured"
    say = lambda s: print(s, flush=True)  # noqa: E731
    for i, (part, (what, measure)) in enumerate(PARTS.items(), 1):  # the same parts --only re-measures
        say(f"{i}/{len(PARTS)} {what} ...")
        res[part] = measure(checkpoint, steps, res)
    res["gpu"] = bench_gpu()
    if res["gpu"] is None:
        res["gpu_note"] = "skipped: no CUDA device on this machine (run `minbert bench` where one is present)."
        say("    no CUDA device: GPU part skipped")
    if study_jobs:
        say(f"    the {study_jobs} study with --jobs 1, then --jobs 2 ...")
        res["study_jobs"] = bench_study_jobs(study_jobs)
    res.update(gpu_records(Path(out).parent))
    old = Path(out).with_suffix(".json")
    if old.is_file():  # the race is its own, longer run (--race): keep its last result
        race = json.loads(old.read_text()).get("race")
        if race:
            res["race"] = race
    out = Path(out)
    atomic_write_text(out, render(res))
    atomic_write_text(out.with_suffix(".json"), json.dumps(res, indent=2, default=str))
    say(f"wrote {out} and {out.with_suffix('.json')}")
    return res
