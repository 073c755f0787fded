"""`minbert study`: execute the study plan's notebooks with papermill, then the report.

Each run's executed notebook is kept in its run folder; completed runs are skipped, interrupted
training runs resume from their checkpoint, and a failing notebook does not stop the others.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .atomic import atomic_write_text
from .runs import write_json

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "minbert"
TRAINING_NOTEBOOKS = ("01_sentiment", "02_multitask", "03_structure")


@dataclass
class PlannedRun:
    """One notebook execution of the plan."""

    name: str
    notebook: str
    params: dict
    table: int | None = None
    row: str | None = None
    column: str | None = None
    status: str = "pending"
    seconds: float | None = None
    error: str | None = None
    needs: list[str] = field(default_factory=list)


def load_plan(path: str | Path | None = None) -> dict:
    """The plan (the packaged study.yaml unless a path is given)."""
    if path is None:
        return yaml.safe_load(resources.files("minbert_core").joinpath("study.yaml").read_text())
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: study plan not found")
    return yaml.safe_load(p.read_text())


def expand(plan: dict, profile: str, out_dir: Path) -> list[PlannedRun]:
    """Every run of a profile, with its resolved parameters."""
    profiles = plan.get("profiles", {})
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; the plan has: {', '.join(profiles)}")
    prof = profiles[profile]
    runs: list[PlannedRun] = []
    for exp in plan["experiments"]:
        grid = exp.get("grid", {})
        varied = [k for k, v in grid.items() if isinstance(v, list)]
        for combo in itertools.product(*(grid[k] for k in varied)):
            params = dict(grid) | dict(zip(varied, combo))
            if exp["notebook"] in TRAINING_NOTEBOOKS:
                params = dict(prof.get("common", {})) | dict(prof.get(exp["notebook"]) or {}) | params
                params["runs_dir"] = str(out_dir)
            name = "-".join([exp["name"]] + [str(v) for v in combo])
            needs = [v[1:] for v in params.values() if isinstance(v, str) and v.startswith("@")]
            params = {k: str(out_dir / v[1:]) if isinstance(v, str) and v.startswith("@") else v
                      for k, v in params.items()}
            if exp["notebook"] in TRAINING_NOTEBOOKS:
                params["run_id"] = name
            runs.append(PlannedRun(name, exp["notebook"], params, exp.get("table"), exp.get("row"),
                                   exp.get("column"), needs=needs))
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"plan gives several runs the same name: {', '.join(dup)}")
    for r in runs:
        unknown = [n for n in r.needs if n not in names]
        if unknown:
            raise ValueError(f"run {r.name} refers to unknown run(s): {', '.join(unknown)}")
    return runs


def check_kernel(kernel: str) -> None:
    """A clear error where the Jupyter kernel papermill needs is not registered."""
    from jupyter_client.kernelspec import KernelSpecManager

    if kernel not in KernelSpecManager().find_kernel_specs():
        raise ValueError(f"Jupyter kernel {kernel!r} is not registered; run `make` targets (they register it) or "
                         f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel}`")


def execute(notebook: Path, output: Path, params: dict, kernel: str) -> None:
    """Run one notebook with papermill, its outputs saved to `output`."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(notebook), str(output), parameters=params, kernel_name=kernel, cwd=str(output.parent),
                        progress_bar=False, log_output=False)


def _error_text(e: Exception) -> str:
    ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
    return f"{ename}: {evalue}".strip()


def _run_entry(notebook: str, folder: str, params: dict, kernel: str, name: str) -> tuple[str, str | None, float]:
    """Execute one plan entry into its folder; returns (status, error, seconds). Never raises."""
    folder_p = Path(folder)
    params = dict(params)
    if name in TRAINING_NOTEBOOKS and (folder_p / "checkpoints" / "last.pt").is_file():
        params["resume"] = True  # interrupted earlier: continue from the checkpoint
    t0 = time.perf_counter()
    try:
        execute(Path(notebook), folder_p / "notebook.ipynb", params, kernel)
        atomic_write_text(folder_p / ".complete", time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        return "complete", None, time.perf_counter() - t0
    except Exception as e:  # papermill raises many kinds; each is reported, none stops the study
        return "failed", f"{folder_p / 'notebook.ipynb'}: {_error_text(e)}", time.perf_counter() - t0


def run_study(profile: str = "smoke", out_dir: str | Path | None = None, plan_path: str | Path | None = None,
              notebooks_dir: str | Path | None = None, report_dir: str | Path | None = None, jobs: int = 1,
              kernel: str = KERNEL) -> list[PlannedRun]:
    """Execute the plan for a profile, then the report. Returns every run with its status."""
    out = Path(out_dir or f"runs/study-{profile}").resolve()
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    report = Path(report_dir).resolve() if report_dir else out / "report"
    check_kernel(kernel)
    from .data import data_dir

    os.environ["MINBERT_DATA"] = str(data_dir().resolve())  # kernels run in their run folders
    plan = load_plan(plan_path)
    runs = expand(plan, profile, out)
    for r in runs:
        if not (nb_dir / f"{r.notebook}.ipynb").is_file():
            raise FileNotFoundError(f"{nb_dir / (r.notebook + '.ipynb')}: notebook named by run {r.name} not found")
        if r.notebook == "04_gradient_conflict":
            r.params["figures_dir"] = str(report)
    out.mkdir(parents=True, exist_ok=True)
    record = lambda: write_json(out / "study.json", {  # noqa: E731
        "profile": profile, "description": plan["profiles"][profile].get("description", ""),
        "runs": [asdict(r) for r in runs]})
    total, done = len(runs) + 1, [0]
    t_study = time.perf_counter()
    by_name = {r.name: r for r in runs}

    def report_progress(r: PlannedRun) -> None:
        done[0] += 1
        took = f" in {r.seconds:.0f} s" if r.seconds is not None else ""
        elapsed = time.perf_counter() - t_study
        print(f"[{done[0]}/{total}] {r.name} ({r.notebook}): {r.status}{took} | study {elapsed / 60:.1f} min",
              flush=True)
        if r.error:
            print(f"    error: {r.error}", file=sys.stderr, flush=True)
        record()

    def todo(r: PlannedRun) -> bool:
        """Settle skipped runs here; True where the notebook must execute."""
        if (out / r.name / ".complete").is_file():
            r.status = "skipped (complete)"
        elif any(by_name[n].status.startswith("failed") for n in r.needs):
            r.status, r.error = "failed", f"needs a failed run: {', '.join(r.needs)}"
        else:
            return True
        report_progress(r)
        return False

    def args(r: PlannedRun) -> tuple:
        return (str(nb_dir / f"{r.notebook}.ipynb"), str(out / r.name), r.params, kernel, r.notebook)

    print(f"study '{profile}': {len(runs)} runs + report -> {out}", flush=True)
    first = [r for r in runs if not r.needs and todo(r)]
    if jobs > 1 and len(first) > 1:
        # Separate processes: nbclient must run in a process's main thread (widget comms hang in threads).
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(_run_entry, *args(r)): r for r in first}
            for fut in as_completed(futures):
                r = futures[fut]
                r.status, r.error, r.seconds = fut.result()
                report_progress(r)
    else:
        for r in first:
            r.status, r.error, r.seconds = _run_entry(*args(r))
            report_progress(r)
    for r in runs:
        if r.needs and todo(r):
            r.status, r.error, r.seconds = _run_entry(*args(r))
            report_progress(r)
    rep = PlannedRun("report", "05_report", {"study_dir": str(out), "report_dir": str(report)})
    t0 = time.perf_counter()
    try:
        execute(nb_dir / "05_report.ipynb", out / "report" / "notebook.ipynb", rep.params, kernel)
        rep.status = "complete"
    except Exception as e:
        rep.status, rep.error = "failed", f"{out / 'report' / 'notebook.ipynb'}: {_error_text(e)}"
    rep.seconds = time.perf_counter() - t0
    print(f"[{total}/{total}] report (05_report): {rep.status} in {rep.seconds:.0f} s -> {report}", flush=True)
    runs.append(rep)
    record()
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        print(f"\n{len(failed)} of {len(runs)} notebooks failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.name}: {r.error}", file=sys.stderr)
    return runs

