"""Small helpers the tests share (not fixtures)."""
from __future__ import annotations


def stop_after(n: int):
    """An on_step callback that interrupts a run after n steps, as a kill mid-epoch would."""
    def on_step(steps: int) -> None:
        if steps >= n:
            raise KeyboardInterrupt(f"stopped after {steps} steps (test)")
    return on_step


def assert_same_records(run_a, run_b, files=("telemetry.csv",)) -> None:
    """Two run folders hold the same results: metrics (every score, the best epoch, the steps), every
    history row but the wall-clock throughput, and `files` byte for byte."""
    import csv
    import json

    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run_a, run_b))
    for key in ("status", "best_dev", "final_dev", "best_epoch", "steps", "baselines"):
        assert a[key] == b[key], key

    def history(run):
        return [{k: v for k, v in r.items() if k != "examples_per_s"}
                for r in csv.DictReader((run / "history.csv").open())]

    assert history(run_a) == history(run_b) and history(run_a)
    for f in files:
        assert (run_a / f).read_bytes() == (run_b / f).read_bytes(), f
