"""The GPU check's real-data slice: the cpu profile's Table 4 summed-loss runs (results/study-cpu/t4-sum*:
packaged MiniLM, 150 steps of 16 rows per task, 2,000 Quora dev rows, no test files) run again, from their
own config.json, on another device, and their dev scores set against the committed CPU records' by the
project's rule: a difference of means beyond the seed spread 2·sqrt(sa²/na + sb²/nb) is a finding.

    python -m minbert_core.bench.gpu_slice bundle DEST.tar.xz      # here: data + MiniLM (carry.py), to carry
    python -m minbert_core.bench.gpu_slice unbundle BUNDLE DIR     # there: DIR/data, DIR/minilm
    python -m minbert_core.bench.gpu_slice run OUT --precision fp32 [--device cuda] [--short] [--until EPOCH]

The carried MiniLM is rounded to fp16 (carry.py): the GPU runs start from weights within 2^-11 of the CPU
runs', so equal scores are not expected, scores within the seed spread are.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from ..train_config import TrainConfig

SLICE_RUNS = ("t4-sum", "t4-sum-seed21111", "t4-sum-seed100")
CPU_STUDY = Path(__file__).resolve().parents[2] / "results" / "study-cpu"
TASKS = ("sst", "para", "sts")
METRICS = (*TASKS, "overall")
# --short (the CPU rehearsal): a few steps on a few rows, to run the path, not to compare scores
SHORT = {"steps_per_epoch": 2, "train_limit": 128, "eval_limit": 32, "dev_limits": "", "max_length": 64}


def slice_data_files(root: Path) -> list[Path]:
    """The data files the slice reads: each task's train and dev split (no test files)."""
    from ..data import file_path

    return [file_path(t, s, root) for t in TASKS for s in ("train", "dev")]


def slice_texts(root: Path) -> Iterator[str]:
    """Every sentence of the slice's data files, as the project's loader reads them."""
    from ..data import load_split

    for task in TASKS:
        for split in ("train", "dev"):
            for e in load_split(task, split, root).examples:
                yield e.text_a
                if e.text_b is not None:
                    yield e.text_b


def bundle(dst: Path, data_root: Path, checkpoint: str = "minilm-l6") -> dict:
    """carry.write_bundle for the GPU check: the slice's data files and the test files there are (the `gpu`
    tests' runs predict test sets, on random weights), and `checkpoint` with its word rows cut to the slice's
    tokens."""
    from ..checkpoints import resolve_checkpoint
    from ..data import file_path
    from ..tokenizer import load_tokenizer
    from .carry import token_rows, write_bundle

    rows = token_rows(load_tokenizer(checkpoint), slice_texts(data_root))
    tests = [f for f in (file_path(t, "test", data_root) for t in TASKS) if f.is_file()]
    return write_bundle(dst, resolve_checkpoint(checkpoint), slice_data_files(data_root) + tests, rows)


def slice_config(record: Path, precision: str, device: str, runs_dir: Path, short: bool = False) -> "TrainConfig":
    """The TrainConfig of a committed run (its config.json), moved to `device`, `precision` and `runs_dir`
    (the data from $MINBERT_DATA); `short` cuts it to SHORT's steps and rows.

    Raises FileNotFoundError without the record."""
    from ..train_config import TrainConfig, migrate_keys

    f = record / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: the committed CPU run is missing; the slice compares against it")
    d = migrate_keys(json.loads(f.read_text())["config"], str(f), warn=False)  # old records: bf16 -> precision
    d.update(device=device, precision=precision, runs_dir=str(runs_dir), data_dir="", **(SHORT if short else {}))
    return TrainConfig.from_dict(d)


def run_slice(out: Path, precision: str, device: str = "cuda", short: bool = False, until: float | None = None,
              cpu_study: Path = CPU_STUDY) -> list[dict]:
    """Each of SLICE_RUNS again into out/<precision>/<run_id>; a run is skipped (recorded so) when it would
    not end before `until` (epoch seconds), judged by the longest run so far. Returns one row per run."""
    import torch

    from ..train import train

    rows, longest = [], 0.0
    for run_id in SLICE_RUNS:
        if until is not None and time.time() + longest > until:
            rows.append({"run_id": run_id, "precision": precision, "status": "skipped: out of time"})
            continue
        t0 = time.time()
        cfg = slice_config(cpu_study / run_id, precision, device, out / precision, short)
        run = train(cfg, progress=False)
        m = json.loads((run / "metrics.json").read_text())
        longest = max(longest, time.time() - t0)
        rows.append({"run_id": run_id, "precision": precision, "status": m["status"], "seconds": time.time() - t0})
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def _side(metrics: list[dict], key: str) -> dict:
    vals = [m["best_dev"][key] for m in metrics]
    return {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def compare(gpu_dir: Path, cpu_study: Path = CPU_STUDY) -> dict:
    """GPU runs under `gpu_dir` (<run_id>/metrics.json) against the committed CPU runs: per metric, mean ± std
    of each side, the difference of means, the seed spread and the verdict (report_cells.diff_verdict).

    Returns {} when no GPU run completed."""
    from ..report_cells import diff_verdict

    def done(root: Path) -> list[dict]:
        ms = [json.loads(p.read_text()) for p in (root / r / "metrics.json" for r in SLICE_RUNS) if p.is_file()]
        return [m for m in ms if m.get("status") == "complete"]

    gpu, cpu = done(gpu_dir), done(cpu_study)
    if not gpu or not cpu:
        return {}
    rows = {}
    for key in METRICS:
        g, c = _side(gpu, key), _side(cpu, key)
        a = {"ours": g["mean"], "std": g["std"], "n": g["n"], "learned": all(m.get("learned", True) for m in gpu)}
        b = {"ours": c["mean"], "std": c["std"], "n": c["n"], "learned": all(m.get("learned", True) for m in cpu)}
        diff, spread, verdict = diff_verdict(a, b)
        rows[key] = {"gpu": g, "cpu": c, "diff": diff, "spread": spread, "verdict": verdict}
    steps = {m["steps"] for m in gpu}
    return {"metrics": rows, "gpu_steps": sorted(steps), "cpu_steps": sorted({m["steps"] for m in cpu}),
            "gpu_train_s": [m["train_time_s"] for m in gpu], "cpu_train_s": [m["train_time_s"] for m in cpu]}


def main(argv: list[str] | None = None) -> None:
    """The command line in the module's docstring."""
    p = argparse.ArgumentParser(prog="python -m minbert_core.bench.gpu_slice", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle")
    b.add_argument("dst", type=Path)
    b.add_argument("--data", type=Path, default=None, help="data folder (default: $MINBERT_DATA)")
    u = sub.add_parser("unbundle")
    u.add_argument("bundle", type=Path)
    u.add_argument("dst", type=Path)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    r.add_argument("--device", default="cuda")
    r.add_argument("--short", action="store_true", help="a few steps and rows (the CPU rehearsal)")
    r.add_argument("--until", type=float, default=None, help="epoch seconds: start no run that would end later")
    a = p.parse_args(argv)
    if a.cmd == "bundle":
        from ..data import data_dir

        print(json.dumps(bundle(a.dst, a.data or data_dir())))
    elif a.cmd == "unbundle":
        from .carry import open_bundle

        print(open_bundle(a.bundle, a.dst))
    else:
        rows = run_slice(a.out, a.precision, a.device, a.short, a.until)
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
