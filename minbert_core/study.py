"""`minbert study`: execute the study plan's notebooks with papermill, then the report.

Each run's executed notebook is kept in its run folder; completed runs are skipped, interrupted
training runs resume from their checkpoint, and a failing notebook does not stop the others.
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .atomic import atomic_write_text
from .progress import format_duration
from .runs import folder_lock, inside, write_json

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
    experiment: str = ""  # the plan entry this run expands (runs of one entry differ in grid values or seed)
    same_as: str | None = None  # not executed: this table cell reads that experiment's runs
    compare_to: str | None = None  # the report weighs this column's difference to that experiment's
    expect_failure: str | None = None  # why this row is expected not to learn (it reproduces a failure)


def notebook_parameters(path: str | Path) -> dict:
    """A notebook's parameters (name -> default), read from its cell tagged `parameters`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: notebook not found")
    cells = [c for c in json.loads(path.read_text())["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
    src = "".join(cells[0]["source"])
    return {st.target.id: ast.literal_eval(st.value) for st in ast.parse(src).body
            if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)}


_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def check_parameters(namespace: dict, notebook: str) -> None:
    """In a notebook, right after its parameters: a name the parameters cell does not define is an error.

    Papermill injects `-p epochz 3` as a new variable and only warns; this makes it fail before any
    training, under `minbert study`, plain papermill or JupyterLab alike.
    """
    import types

    known = set(notebook_parameters(NOTEBOOKS_DIR / f"{notebook}.ipynb"))
    unknown = sorted(k for k, v in namespace.items()
                     if not k.startswith("_") and k not in known and k not in _KERNEL_NAMES
                     and not isinstance(v, (types.ModuleType, types.FunctionType, type)) and not callable(v))
    if unknown:
        raise ValueError(f"notebook {notebook}: unknown parameter(s) {', '.join(unknown)}; "
                         f"its parameters: {', '.join(sorted(known))}")


def _training_defaults(nb_params: dict) -> dict:
    """TrainConfig's defaults (the original project's) for the notebook's training parameters."""
    from .train import TrainConfig

    base = TrainConfig()
    # a tuple field (tasks) is a comma-separated string in a notebook (papermill writes tuples as strings)
    return {f.name: (",".join(v) if isinstance(v := getattr(base, f.name), tuple) else v)
            for f in dataclasses.fields(TrainConfig) if f.name in nb_params}


def _resolve_refs(params: dict, defaults: dict, where: str) -> dict:
    """A value "=key" takes the profile's value of `key` (e.g. Table 1's flipped learning rates)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, str) and v.startswith("=") and len(v) > 1:
            if v[1:] not in defaults:
                raise ValueError(f"{where}: {k}: {v!r} refers to {v[1:]!r}, which the profile does not set")
            v = defaults[v[1:]]
        out[k] = v
    return out


def _check_training_params(params: dict, nb_params: dict, where: str) -> None:
    """Every parameter the plan sets reaches the notebook, and the notebook gets no smoke default."""
    from .train import TrainConfig

    unknown = sorted(set(params) - set(nb_params))
    if unknown:
        raise ValueError(f"{where}: the plan sets {', '.join(unknown)}, which the notebook has no parameter for; "
                         f"its parameters: {', '.join(nb_params)}")
    unset = sorted(set(nb_params) - set(params) - {"resume"})
    if unset:
        raise ValueError(f"{where}: the plan leaves {', '.join(unset)} unset (the notebook's smoke default "
                         "would be used); set it in the profile or the grid")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    TrainConfig.from_dict({k: v for k, v in params.items() if k in fields})  # types and choices, named


def load_plan(path: str | Path | None = None) -> dict:
    """The plan (the packaged study.yaml unless a path is given)."""
    if path is None:
        return yaml.safe_load(resources.files("minbert_core").joinpath("study.yaml").read_text())
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: study plan not found")
    return yaml.safe_load(p.read_text())


def expand(plan: dict, profile: str, out_dir: Path, notebooks_dir: str | Path | None = None) -> list[PlannedRun]:
    """Every run of a profile, with every notebook parameter resolved from the plan.

    A training run's parameters are, later winning: TrainConfig's defaults (the original project's),
    the profile's `common`, the profile's block for the notebook (or the one the experiment names in
    `block`, where the profile has it), then the grid entry. A parameter
    the plan sets that the notebook lacks, or one the plan leaves to the notebook's smoke default,
    is an error. A notebook block's `seeds` repeats each of its runs per seed (the first keeps the
    plain name, the others get `-seed<N>`); runs are ordered seed by seed, so a partial study
    covers every column once before it repeats any; unseeded runs follow in plan order.
    """
    from .train import migrate_keys

    profiles = plan.get("profiles", {})
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; the plan has: {', '.join(profiles)}")
    prof = profiles[profile]
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    runs: list[tuple[tuple[int, int], PlannedRun]] = []
    for exp in plan["experiments"]:
        if "same_as" in exp:  # a table cell filled by another experiment's runs (same configuration)
            runs.append(((1, 0), PlannedRun(exp["name"], "", {}, exp.get("table"), exp.get("row"), exp.get("column"),
                                       status="same as " + exp["same_as"], experiment=exp["name"],
                                       same_as=exp["same_as"], compare_to=exp.get("compare_to"))))
            continue
        training = exp["notebook"] in TRAINING_NOTEBOOKS
        nb_params = notebook_parameters(nb_dir / f"{exp['notebook']}.ipynb")
        key = exp["block"] if exp.get("block") in prof else exp["notebook"]  # e.g. Table 4's `table4`
        block = migrate_keys(dict(prof.get(key) or {}), f"profile {profile}, {key}")
        seeds = block.pop("seeds", None) if training else None
        grid = migrate_keys(exp.get("grid", {}), f"experiment {exp['name']}")
        varied = [k for k, v in grid.items() if isinstance(v, list)]
        for combo in itertools.product(*(grid[k] for k in varied)):
            params = dict(grid) | dict(zip(varied, combo))
            name = "-".join([exp["name"]] + [str(v) for v in combo])
            if training:
                defaults = (_training_defaults(nb_params) | migrate_keys(prof.get("common", {}), f"profile {profile}")
                            | block)
                params = defaults | _resolve_refs(params, defaults, f"run {name}")
                params["runs_dir"] = str(out_dir)
            needs = [v[1:] for v in params.values() if isinstance(v, str) and v.startswith("@")]
            params = {k: str(out_dir / v[1:]) if isinstance(v, str) and v.startswith("@") else v
                      for k, v in params.items()}
            for i, seed in enumerate(seeds or [None]):
                p, run_name = dict(params), name
                if seed is not None:
                    p["seed"] = seed
                    run_name = name if i == 0 else f"{name}-seed{seed}"
                if training:
                    p["run_id"] = run_name
                    _check_training_params(p, nb_params, f"profile {profile}, run {run_name} ({exp['notebook']})")
                runs.append(((0, i) if seeds else (1, 0), PlannedRun(run_name, exp["notebook"], p, exp.get("table"), exp.get("row"),
                                           exp.get("column"), needs=needs, experiment=exp["name"],
                                           compare_to=exp.get("compare_to"),
                                           expect_failure=exp.get("expect_failure"))))
    ordered = [r for _, r in sorted(runs, key=lambda x: x[0])]  # stable: seed by seed, then unseeded
    _check_references(ordered)
    return _select_tables(ordered, prof.get("tables"))


def _select_tables(runs: list[PlannedRun], tables: list[int] | None) -> list[PlannedRun]:
    """The runs of a profile's `tables` (every table when it has none); a run outside any table (the
    explorer) stays when every run it reads stays."""
    if tables is None:
        return runs
    kept = [r for r in runs if r.table in tables or r.table is None]
    names = {r.name for r in kept if r.table is not None}
    return [r for r in kept if r.table is not None or all(n in names for n in r.needs)]


def _check_references(runs: list[PlannedRun]) -> None:
    """Run names are unique, and every same_as, compare_to and @run names something in the plan."""
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"plan gives several runs the same name: {', '.join(dup)}")
    experiments = {r.experiment for r in runs}
    for r in runs:
        if r.same_as is not None and r.same_as not in experiments:
            raise ValueError(f"plan entry {r.name}: same_as names no experiment: {r.same_as!r}")
        if r.compare_to is not None and r.compare_to not in experiments:
            raise ValueError(f"plan entry {r.name}: compare_to names no experiment: {r.compare_to!r}")
        unknown = [n for n in r.needs if n not in names]
        if unknown:
            raise ValueError(f"run {r.name} refers to unknown run(s): {', '.join(unknown)}")


def describe(runs: list[PlannedRun], as_json: bool = False) -> str:
    """What `--dry-run` prints: every run with its fully resolved parameters.

    as_json: one JSON object per line. Otherwise a table: a run per row, the parameters that are
    the same for every run of a notebook once above its rows.
    """
    if as_json:
        return "\n".join(json.dumps({"name": r.name, "notebook": r.notebook, "table": r.table, "row": r.row,
                                     "column": r.column, "same_as": r.same_as, "needs": r.needs,
                                     "params": r.params}) for r in runs)
    lines = []
    for nb in dict.fromkeys(r.notebook for r in runs):
        group = [r for r in runs if r.notebook == nb]
        if not nb:
            lines += [f"{r.name}: table {r.table} column {r.column!r} reads the runs of {r.same_as}" for r in group]
            lines.append("")
            continue
        keys = list(dict.fromkeys(k for r in group for k in r.params if k not in ("run_id",)))
        same = {k: group[0].params.get(k) for k in keys
                if all(k in r.params and r.params[k] == group[0].params[k] for r in group)}
        vary = [k for k in keys if k not in same]
        lines.append(f"{nb}: {len(group)} run(s); shared: " + ", ".join(f"{k}={v!r}" for k, v in same.items()))
        widths = {k: max(len(k), *(len(repr(r.params.get(k))) for r in group)) for k in vary}
        wname = max(len("run"), *(len(r.name) for r in group))
        lines.append("  " + "run".ljust(wname) + "  " + "  ".join(k.ljust(widths[k]) for k in vary))
        for r in group:
            lines.append("  " + r.name.ljust(wname) + "  " +
                         "  ".join(repr(r.params.get(k)).ljust(widths[k]) for k in vary))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


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
                        progress_bar=False, log_output=False, kernel_manager_class=_kernel_manager_class())


def _kernel_manager_class() -> type:
    """Kernels talk over Unix sockets where there are any: no TCP ports opened, and no "Kernel is
    running over TCP without encryption" warning from every notebook (Windows keeps TCP). And a
    kernel being shut down is not sent SIGINT first: papermill shuts a kernel down once its cells are
    done, so there is nothing to interrupt, and the signal only made ipykernel log "KeyboardInterrupt
    caught in kernel" now and then."""
    from jupyter_client import AsyncKernelManager
    from traitlets import CaselessStrEnum

    async def interrupt(self) -> None:
        if not self.shutting_down:
            await AsyncKernelManager._async_interrupt_kernel(self)

    body: dict = {"_async_interrupt_kernel": interrupt}
    if os.name != "nt":
        body["transport"] = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)
    return type("QuietKernelManager", (AsyncKernelManager,), body)


def _score_text(run_dir: Path) -> str:
    """', overall 0.718' (or the one task's metric) from a finished training run; '' otherwise."""
    try:
        best = json.loads((run_dir / "metrics.json").read_text()).get("best_dev") or {}
    except (OSError, ValueError):
        return ""
    if "overall" in best:
        return f", dev overall {best['overall']:.3f}"
    return "".join(f", dev {k} {v:.3f}" for k, v in best.items())


def _finished(run_dir: Path) -> bool:
    """A training run that completed (its last.pt is removed then), stopped before its `.complete`."""
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def _error_text(e: Exception) -> str:
    ename, evalue = getattr(e, "ename", type(e).__name__), getattr(e, "evalue", str(e))
    return f"{ename}: {evalue}".strip()


def _run_entry(notebook: str, folder: str, params: dict, kernel: str, name: str) -> tuple[str, str | None, float]:
    """Execute one plan entry into its folder; returns (status, error, seconds). Never raises."""
    folder_p = Path(folder)
    params = dict(params)
    if name in TRAINING_NOTEBOOKS and ((folder_p / "checkpoints" / "last.pt").is_file() or _finished(folder_p)):
        params["resume"] = True  # interrupted earlier: continue from the checkpoint (a finished run: report it)
    t0 = time.perf_counter()
    try:
        inside(folder_p, folder_p.parent, "study run")  # folder is <study>/<run>: a link out is refused
        execute(Path(notebook), folder_p / "notebook.ipynb", params, kernel)
        atomic_write_text(folder_p / ".complete", time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        return "complete", None, time.perf_counter() - t0
    except Exception as e:  # papermill raises many kinds; each is reported, none stops the study
        return "failed", f"{folder_p / 'notebook.ipynb'}: {_error_text(e)}", time.perf_counter() - t0


def run_study(profile: str = "smoke", out_dir: str | Path | None = None, plan_path: str | Path | None = None,
              notebooks_dir: str | Path | None = None, report_dir: str | Path | None = None, jobs: int = 1,
              kernel: str = KERNEL, cluster: str | None = None, gpus_per_run: int = 0,
              report_notebook: bool = True) -> list[PlannedRun]:
    """Execute the plan for a profile, then the report. Returns every run with its status.

    cluster: a Dask scheduler address (or local:N) to run the notebooks on (minbert_core.cluster);
    gpus_per_run: the GPU resource each training run asks of the cluster's workers;
    report_notebook=False: stop after the runs (no 05_report)."""
    out = Path(out_dir or f"runs/study-{profile}").resolve()
    nb_dir = Path(notebooks_dir or NOTEBOOKS_DIR)
    report = Path(report_dir).resolve() if report_dir else out / "report"
    check_kernel(kernel)
    from .data import data_dir

    os.environ["MINBERT_DATA"] = str(data_dir().resolve())  # kernels run in their run folders
    if jobs > 1:  # share the cores: N kernels with all cores' threads each would oversubscribe them
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(max(1, (os.cpu_count() or 1) // jobs)))
    plan = load_plan(plan_path)
    runs = expand(plan, profile, out, nb_dir)
    for r in runs:
        if r.notebook == "04_gradient_conflict":
            r.params["figures_dir"] = str(report)
        if cluster and r.notebook in TRAINING_NOTEBOOKS and not r.params.get("data_dir"):
            r.params["data_dir"] = os.environ["MINBERT_DATA"]  # workers elsewhere: the shared path itself
    with folder_lock(out, "study"):  # one `minbert study` per study folder
        return _execute_plan(plan, profile, runs, out, nb_dir, report if report_notebook else None, jobs, kernel,
                             cluster, gpus_per_run)


def _execute_plan(plan: dict, profile: str, runs: list[PlannedRun], out: Path, nb_dir: Path, report: Path | None,
                  jobs: int, kernel: str, cluster: str | None = None, gpus_per_run: int = 0) -> list[PlannedRun]:
    """The study's steps: settle what is already done, run the independent notebooks (in parallel
    with jobs > 1), then those that read other runs, then the report; say what failed."""
    ex = _Execution(plan, profile, runs, out, nb_dir, jobs, kernel)
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
        self.t0 = time.perf_counter()

    def record(self) -> None:
        write_json(self.out / "study.json", {
            "profile": self.profile, "description": self.plan["profiles"][self.profile].get("description", ""),
            "targets": self.plan["profiles"][self.profile].get("targets", []),
            "runs": [asdict(r) for r in self.runs]})

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
        r.status, r.error, r.seconds = _run_entry(*self._args(r))
        self.settle(r)

    def run_independent(self) -> None:
        todo = [r for r in self.executed if not r.needs and self.needs_running(r)]
        if self.jobs > 1 and len(todo) > 1:
            # Separate processes: nbclient must run in a process's main thread (widget comms hang in threads).
            with ProcessPoolExecutor(max_workers=self.jobs) as pool:
                futures = {pool.submit(_run_entry, *self._args(r)): r for r in todo}
                for fut in as_completed(futures):
                    r = futures[fut]
                    r.status, r.error, r.seconds = fut.result()
                    self.settle(r)
        else:
            for r in todo:
                self._run(r)

    def run_on_cluster(self, address: str, gpus_per_run: int) -> None:
        """Every notebook as a Dask task (minbert_core.cluster); a run that reads others waits for them."""
        from .cluster import connect, run_entry_task

        client = connect(address)  # first: without Dask installed, a clear error
        from distributed import as_completed as dask_completed

        try:
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
        finally:
            client.close()

    def run_dependent(self) -> None:
        for r in self.executed:
            if r.needs and self.needs_running(r):
                self._run(r)

    def run_report(self, report: Path) -> None:
        rep = PlannedRun("report", "05_report", {"study_dir": str(self.out), "report_dir": str(report)})
        t0 = time.perf_counter()
        try:
            inside(self.out / "report", self.out, "report")
            execute(self.nb_dir / "05_report.ipynb", self.out / "report" / "notebook.ipynb", rep.params, self.kernel)
            rep.status = "complete"
        except Exception as e:
            rep.status, rep.error = "failed", f"{self.out / 'report' / 'notebook.ipynb'}: {_error_text(e)}"
        rep.seconds = time.perf_counter() - t0
        print(f"[{self.total}/{self.total}] report (05_report): {rep.status} in {rep.seconds:.0f} s -> {report}",
              flush=True)
        self.runs.append(rep)
        self.record()

    def summarise_failures(self) -> None:
        failed = [r for r in self.runs if r.status == "failed"]
        if failed:
            print(f"\n{len(failed)} of {len(self.runs)} notebooks failed:", file=sys.stderr)
            for r in failed:
                print(f"  {r.name}: {r.error}", file=sys.stderr)

