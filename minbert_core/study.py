"""`minbert study`: execute a study plan's notebooks, locally or on a Dask cluster, then the report.

Each run's executed notebook is kept in its run folder; completed runs are skipped, interrupted
training runs resume from their checkpoint, and a failing notebook does not stop the others.
The plan itself is minbert_core.plan; one notebook's execution is minbert_core.notebook_run.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

# NOTEBOOKS_DIR, check_parameters, describe, notebook_parameters: imported from here by code written
# before the plan and the notebook runner were split out of this module
from .notebook_run import KERNEL, NOTEBOOKS_DIR, TRAINING_NOTEBOOKS, check_kernel, error_text, execute, run_entry  # noqa: F401
from .plan import PlannedRun, check_parameters, describe, expand, load_plan, notebook_parameters, plan_runs  # noqa: F401
from .lifeline import pool_worker_init
from .progress import format_duration
from .runs import folder_lock, inside, write_json


def _score_text(run_dir: Path) -> str:
    """', overall 0.718' (or the one task's metric) from a finished training run; '' otherwise."""
    try:
        best = json.loads((run_dir / "metrics.json").read_text()).get("best_dev") or {}
    except (OSError, ValueError):
        return ""
    if "overall" in best:
        return f", dev overall {best['overall']:.3f}"
    return "".join(f", dev {k} {v:.3f}" for k, v in best.items())


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM ends a study as Ctrl-C does: its pool workers or its local cluster are shut down (and
    with them their kernels) before it exits, instead of being left running."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_study(profile: str = "smoke", out_dir: str | Path | None = None, plan_path: str | Path | None = None,
              notebooks_dir: str | Path | None = None, report_dir: str | Path | None = None, jobs: int = 1,
              kernel: str = KERNEL, cluster: str | None = None, gpus_per_run: int = 0,
              report_notebook: bool = True) -> list[PlannedRun]:
    """Execute the plan for a profile, then the report. Returns every run with its status.

    cluster: a Dask scheduler address (or local:N) to run the notebooks on (minbert_core.cluster);
    gpus_per_run: the GPU resource each training run asks of the cluster's workers;
    report_notebook=False: stop after the runs (no 05_report)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1 (notebooks run at once); got {jobs}")
    if gpus_per_run and not cluster:
        raise ValueError("--gpus-per-run applies to --cluster studies only (a local study's notebooks use the "
                         "device their plan sets)")
    if cluster:
        from .cluster import local_workers

        local_workers(cluster, gpus_per_run)  # an impossible request fails now, not after a silent wait
    out = Path(out_dir or f"runs/study-{profile}").resolve()
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    report = Path(report_dir).resolve() if report_dir else out / "report"
    check_kernel(kernel)
    from .data import data_dir

    os.environ["MINBERT_DATA"] = str(data_dir().resolve())  # kernels run in their run folders
    if jobs > 1:  # share the cores: N kernels with all cores' threads each would oversubscribe them
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(max(1, (os.cpu_count() or 1) // jobs)))
    plan, runs = plan_runs(plan_path, profile, out, nb_dir)  # the whole plan is checked before anything runs
    for r in runs:
        if r.notebook == "04_gradient_conflict":
            r.params["figures_dir"] = str(report)
        if cluster and r.notebook in TRAINING_NOTEBOOKS and not r.params.get("data_dir"):
            r.params["data_dir"] = os.environ["MINBERT_DATA"]  # workers elsewhere: the shared path itself
    with folder_lock(out, "study"), _sigterm_as_interrupt():  # one `minbert study` per study folder
        return _execute_plan(plan, profile, runs, out, nb_dir, report if report_notebook else None, jobs, kernel,
                             cluster, gpus_per_run)


def _execute_plan(plan: dict, profile: str, runs: list[PlannedRun], out: Path, nb_dir: Path, report: Path | None,
                  jobs: int, kernel: str, cluster: str | None = None, gpus_per_run: int = 0) -> list[PlannedRun]:
    """The study's steps: settle what is already done, run the independent notebooks (in parallel
    with jobs > 1), then those that read other runs, then the report; say what failed."""
    ex = _Execution(plan, profile, runs, out, nb_dir, jobs, kernel)
    ex.record()  # from the start: the report (and a rerun) finds this study's plan, whatever happens next
    print(f"study '{profile}': {len(ex.executed)} runs + report -> {out}" + (f" on {cluster}" if cluster else ""),
          flush=True)
    if cluster:
        ex.run_on_cluster(cluster, gpus_per_run)
    else:
        ex.run_independent()
        ex.run_dependent()
    if report is not None:
        ex.run_report(report)
    ex.summarise_failures()
    return runs


def earlier_runs(path: Path) -> dict[str, dict]:
    """The runs an earlier invocation recorded in study.json, by name ({} where there is none or it is
    damaged: it is rewritten from the plan anyway)."""
    try:
        return {e["name"]: e for e in json.loads(path.read_text())["runs"] if isinstance(e, dict) and "name" in e}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def keep_earlier_times(runs: list[dict], earlier: dict[str, dict]) -> list[dict]:
    """`runs` with the seconds an earlier record measured for each run now skipped as complete."""
    out = []
    for r in runs:
        e = earlier.get(r["name"], {})
        if r.get("seconds") is None and str(r.get("status", "")).startswith("skipped") and e.get("seconds"):
            r = {**r, "seconds": e["seconds"]}
        out.append(r)
    return out


class _Execution:
    """One invocation of a study plan: its progress lines, its ETA and its study.json record."""

    def __init__(self, plan: dict, profile: str, runs: list[PlannedRun], out: Path, nb_dir: Path, jobs: int,
                 kernel: str):
        self.plan, self.profile, self.runs, self.out = plan, profile, runs, out
        self.nb_dir, self.jobs, self.kernel = nb_dir, jobs, kernel
        self.by_name = {r.name: r for r in runs}
        self.executed = [r for r in runs if r.same_as is None]  # same_as columns read other runs
        self.total = len(self.executed) + 1  # and the report
        self.settled = 0
        self.ran: list[float] = []  # seconds of the notebooks this invocation executed, for the ETA
        self.earlier = earlier_runs(out / "study.json")  # what an earlier invocation recorded, by run name
        self.t0 = time.perf_counter()

    def record(self) -> None:
        """study.json: the profile, its description and targets, and every run with its status so far (a
        run skipped as complete keeps the time an earlier invocation recorded for it)."""
        write_json(self.out / "study.json", {
            "profile": self.profile, "description": self.plan["profiles"][self.profile].get("description", ""),
            "targets": self.plan["profiles"][self.profile].get("targets", []),
            "runs": keep_earlier_times([asdict(r) for r in self.runs], self.earlier)})

    def settle(self, r: PlannedRun) -> None:
        """One line per settled notebook: status, time, its dev score, and the study's ETA."""
        self.settled += 1
        took = f" in {r.seconds:.0f} s" if r.seconds is not None else ""
        if r.seconds is not None:
            self.ran.append(r.seconds)
        left = self.total - 1 - self.settled
        eta = (f", ETA {format_duration(sum(self.ran) / len(self.ran) * left / self.jobs)}"
               if self.ran and left > 0 else "")
        print(f"[{self.settled}/{self.total}] {r.name} ({r.notebook}): {r.status}{took}{_score_text(self.out / r.name)}"
              f" | study {(time.perf_counter() - self.t0) / 60:.1f} min{eta}", flush=True)
        if r.error:
            print(f"    error: {r.error}", file=sys.stderr, flush=True)
        self.record()

    def needs_running(self, r: PlannedRun) -> bool:
        """Settle a run that is complete, or whose inputs failed; True where its notebook must run."""
        if (self.out / r.name / ".complete").is_file():
            r.status = "skipped (complete)"
        elif any(self.by_name[n].status.startswith("failed") for n in r.needs):
            r.status, r.error = "failed", f"needs a failed run: {', '.join(r.needs)}"
        else:
            return True
        self.settle(r)
        return False

    def _args(self, r: PlannedRun) -> tuple:
        return (str(self.nb_dir / f"{r.notebook}.ipynb"), str(self.out / r.name), r.params, self.kernel, r.notebook)

    def _run(self, r: PlannedRun) -> None:
        r.status, r.error, r.seconds = run_entry(*self._args(r))
        self.settle(r)

    def run_independent(self) -> None:
        """The runs that read no other run: in a pool of `jobs` processes, or one after another."""
        todo = [r for r in self.executed if not r.needs and self.needs_running(r)]
        if self.jobs > 1 and len(todo) > 1:
            self._run_in_pool(todo)
        else:
            for r in todo:
                self._run(r)

    def _run_in_pool(self, todo: list[PlannedRun]) -> None:
        """`todo` in `jobs` worker processes (nbclient must run in a process's main thread: widget comms
        hang in threads). Spawned, not forked, so that no worker inherits the study lock's open file;
        each dies with the study (minbert_core.lifeline) and ignores Ctrl-C, which ends the study here:
        its workers are killed, and their kernels die with them."""
        pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=pool_worker_init)
        try:
            futures = {pool.submit(run_entry, *self._args(r)): r for r in todo}
            for fut in as_completed(futures):
                r = futures[fut]
                r.status, r.error, r.seconds = fut.result()
                self.settle(r)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for p in multiprocessing.active_children():  # the pool's workers: nothing else is started here
                p.kill()
            raise
        pool.shutdown()

    def run_on_cluster(self, address: str, gpus_per_run: int) -> None:
        """Every notebook as a Dask task (minbert_core.cluster); a run that reads others waits for them."""
        from .cluster import connect, run_entry_task

        with connect(address, gpus_per_run) as client:  # first: without Dask installed, a clear error
            from distributed import as_completed as dask_completed

            futures = {}
            for r in self.executed:  # plan order: the runs a run reads come before it
                if (self.out / r.name / ".complete").is_file():
                    r.status = "skipped (complete)"
                    self.settle(r)
                    continue
                needed = [(n, futures[n]) for n in r.needs if n in futures]
                gpu = {"GPU": gpus_per_run} if gpus_per_run and r.notebook in TRAINING_NOTEBOOKS else None
                futures[r.name] = client.submit(run_entry_task, *self._args(r), needed, pure=False, resources=gpu,
                                                key=f"minbert-{self.out.name}-{r.name}-{time.time_ns()}")
            names = {f.key: n for n, f in futures.items()}
            for fut, result in dask_completed(list(futures.values()), with_results=True):
                r = self.by_name[names[fut.key]]
                r.status, r.error, r.seconds = result
                self.settle(r)

    def run_dependent(self) -> None:
        """The runs that read others (the explorer), once those are settled."""
        for r in self.executed:
            if r.needs and self.needs_running(r):
                self._run(r)

    def run_report(self, report: Path) -> None:
        """05_report on the study folder, its tables and figures into `report`."""
        rep = PlannedRun("report", "05_report", {"study_dir": str(self.out), "report_dir": str(report)})
        t0 = time.perf_counter()
        try:
            inside(self.out / "report", self.out, "report")
            execute(self.nb_dir / "05_report.ipynb", self.out / "report" / "notebook.ipynb", rep.params, self.kernel)
            rep.status = "complete"
        except Exception as e:
            rep.status, rep.error = "failed", f"{self.out / 'report' / 'notebook.ipynb'}: {error_text(e)}"
        rep.seconds = time.perf_counter() - t0
        print(f"[{self.total}/{self.total}] report (05_report): {rep.status} in {rep.seconds:.0f} s -> {report}",
              flush=True)
        self.runs.append(rep)
        self.record()

    def summarise_failures(self) -> None:
        """Every failed notebook again at the end, with its error, on stderr."""
        failed = [r for r in self.runs if r.status == "failed"]
        if failed:
            print(f"\n{len(failed)} of {len(self.runs)} notebooks failed:", file=sys.stderr)
            for r in failed:
                print(f"  {r.name}: {r.error}", file=sys.stderr)

