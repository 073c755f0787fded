"""Section 8 of BENCHMARKS.md: a whole study (papermill notebooks, then the report) with --jobs 1 against
--jobs 2, each in a fresh process and folder, one after the other, on the same machine."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _study(profile: str, jobs: int, folder: Path) -> float:
    cmd = [sys.executable, "-m", "minbert_core.cli", "study", "--profile", profile, "--jobs", str(jobs),
           "--out", str(folder / "study"), "--report-dir", str(folder / "report")]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MINBERT_PROGRESS_EVERY": "600"})
    took = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({res.returncode}):\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}")
    return took


def bench_study_jobs(profile: str = "smoke", jobs: tuple[int, ...] = (1, 2)) -> dict:
    """Wall time of the whole `profile` study per --jobs value."""
    out = {"profile": profile, "cores": os.cpu_count(), "seconds": {}}
    for n in jobs:
        with tempfile.TemporaryDirectory() as d:
            out["seconds"][str(n)] = _study(profile, n, Path(d))
    best = min(out["seconds"], key=out["seconds"].get)
    out["faster"] = int(best)
    return out
