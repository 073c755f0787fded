"""The study plan: its YAML read into planned runs, every parameter resolved and checked, and the
config a training notebook builds from its parameters.

Nothing here runs a notebook (minbert_core.notebook_run does; minbert_core.study runs a plan).
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .notebook_run import NOTEBOOKS_DIR, TRAINING_NOTEBOOKS
from .plan_schema import Experiment, Plan, PlanError, check_plan, key_path, read_plan_text

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


def notebook_config(namespace: Mapping[str, Any], notebook: str, **fixed: Any):
    """A training notebook's TrainConfig from its parameters, in one call.

    namespace: the notebook's globals() after its parameters cell (and papermill's injected one);
    a name there that the parameters cell does not define is an error (check_parameters). Every
    parameter that is a TrainConfig field goes into the config; `fixed` sets the fields the notebook
    decides itself (01: tasks=(task,), strategy="single"); one that is also a parameter is an error.
    Types and choices are TrainConfig's (a ValueError naming the field).
    """
    from .train_config import TrainConfig

    check_parameters(namespace, notebook)
    params = notebook_parameters(NOTEBOOKS_DIR / f"{notebook}.ipynb")
    both = sorted(set(fixed) & set(params))
    if both:
        raise ValueError(f"notebook {notebook}: {', '.join(both)} is both a parameter and fixed by the notebook")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict({**{k: namespace[k] for k in params if k in fields}, **fixed})


def _training_defaults(nb_params: dict) -> dict:
    """TrainConfig's defaults (the original project's) for the notebook's training parameters."""
    from .train_config import TrainConfig

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


def _check_training_params(params: dict, nb_params: dict) -> None:
    """The merged parameters of a training run: none left to the notebook's smoke default, and
    TrainConfig's types and choices (each key the plan sets was checked at its source)."""
    from .train_config import TrainConfig

    unset = sorted(set(nb_params) - set(params) - {"resume"})
    if unset:
        raise ValueError(f"the plan leaves {', '.join(unset)} unset (the notebook's smoke default "
                         "would be used); set it in the profile or the grid")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    TrainConfig.from_dict({k: v for k, v in params.items() if k in fields})  # types and choices, named


PACKAGED_PLAN = "minbert_core/study.yaml"


def load_plan(path: str | Path | None = None) -> dict:
    """The plan's data (the packaged study.yaml unless a path is given), its YAML and shape checked.

    Raises FileNotFoundError for a missing file and PlanError (a ValueError) listing every mistake,
    `<plan file>: <key path>: <problem>` (minbert_core.plan_schema).
    """
    if path is None:
        text, source = resources.files("minbert_core").joinpath("study.yaml").read_text(), PACKAGED_PLAN
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: study plan not found")
        text, source = p.read_text(), str(p)
    data = read_plan_text(text, source)
    check_plan(data, source)
    return data


def plan_runs(plan_path: str | Path | None, profile: str, out_dir: Path,
              notebooks_dir: str | Path | None = None) -> tuple[dict, list[PlannedRun]]:
    """The plan file's data (the packaged plan for None) and its profile's runs (load_plan, expand)."""
    plan = load_plan(plan_path)
    return plan, expand(plan, profile, out_dir, notebooks_dir, source=str(plan_path or PACKAGED_PLAN))


def expand(plan: dict, profile: str, out_dir: Path, notebooks_dir: str | Path | None = None,
           source: str = PACKAGED_PLAN) -> list[PlannedRun]:
    """Every run of a profile, with every notebook parameter resolved and checked; nothing runs.

    A training run's parameters are, later winning: TrainConfig's defaults (the original project's),
    the profile's `common`, the profile's block for the notebook (or the one the experiment names in
    `block`, where the profile has it), then the grid entry; another notebook's are its block, then
    its grid. Every key must be a parameter of the notebook (read from its `parameters` cell), and a
    training run may leave none to the notebook's smoke default. Notebooks are named by file stem
    inside the notebooks folder; every run name follows the --run-id rule. A block's `seeds` (or the
    profile's) repeats each training run per seed (the first keeps the plain name, the others get
    `-seed<N>`); runs are ordered seed by seed, so a partial study covers every column once before
    it repeats any; unseeded runs follow in plan order. Raises PlanError (source: the plan's file,
    for messages) listing every mistake, and where the profile selects no run.
    """
    model = check_plan(plan, source)
    if profile not in model.profiles:
        raise PlanError(source, [("profiles", f"unknown profile {profile!r}; the plan has: "
                                              f"{', '.join(model.profiles)}")])
    ex = _Expansion(model, profile, Path(out_dir), Path(notebooks_dir or NOTEBOOKS_DIR))
    ex.check_notebooks_and_keys()
    runs = ex.runs() if not ex.problems else []
    ex.problems += _reference_problems(runs, model)
    unplanned = sorted(set(ex.prof.tables or []) - {e.table for e in model.experiments})
    if unplanned:
        ex.problems.append((f"profiles.{profile}.tables", f"no experiment fills table(s) {unplanned}"))
    selected = _select_tables(runs, ex.prof.tables)
    if not ex.problems and not any(r.same_as is None for r in selected):
        where = f"profiles.{profile}.tables" if ex.prof.tables is not None else "experiments"
        ex.problems.append((where, f"profile {profile} selects no run to execute; a study needs one"))
    if ex.problems:
        raise PlanError(source, ex.problems)
    return selected


def _exp_path(i: int, exp: Experiment) -> str:
    return f"experiments[{i}] ({exp.name})"


class _Expansion:
    """One profile of a checked plan, expanded into runs; mistakes are collected in `problems`."""

    def __init__(self, plan: Plan, profile: str, out_dir: Path, nb_dir: Path):
        self.plan, self.profile, self.prof = plan, profile, plan.profiles[profile]
        self.out_dir, self.nb_dir = out_dir, nb_dir
        self.problems: list[tuple[str, str]] = []
        self.params: dict[str, dict] = {}  # notebook -> its parameters (name -> default)

    def block_key(self, exp: Experiment) -> str:
        """The profile block an experiment reads: its `block` where the profile has it (Table 4's
        `table4`), else its notebook's."""
        return exp.block if exp.block in self.prof.model_extra else exp.notebook

    def check_notebooks_and_keys(self) -> None:
        """Each notebook resolves inside the notebooks folder; every key of a profile block, `common`
        and a grid is a parameter of each notebook that reads it."""
        for i, exp in enumerate(self.plan.experiments):
            if exp.notebook is not None and exp.notebook not in self.params:
                found = _notebook_file(self.nb_dir, exp.notebook)
                if found is None:
                    self.problems.append((_exp_path(i, exp) + ".notebook", f"{exp.notebook!r} is not a notebook of "
                                          f"{self.nb_dir}: name one by its file name without .ipynb "
                                          f"({', '.join(sorted(p.stem for p in self.nb_dir.glob('*.ipynb')))})"))
                    continue
                self.params[exp.notebook] = notebook_parameters(found)
        known = set(self.params) | {e.block for e in self.plan.experiments if e.block}
        for k in self.prof.model_extra:
            if k not in known and _notebook_file(self.nb_dir, k) is None:
                self.problems.append((key_path(f"profiles.{self.profile}", k), "unknown key: not a notebook, nor a "
                                      "block an experiment names, nor description, common, tables, targets or seeds"))
        readers: dict[str, set[str]] = {}  # profile block -> the notebooks that read it
        for i, exp in enumerate(self.plan.experiments):
            if exp.notebook in self.params:
                readers.setdefault(self.block_key(exp), set()).add(exp.notebook)
                self._check_keys(exp.grid, {exp.notebook}, _exp_path(i, exp) + ".grid")
        for key, notebooks in readers.items():
            self._check_keys(self.prof.model_extra.get(key) or {}, notebooks,
                             key_path(f"profiles.{self.profile}", key), seeds_ok=notebooks <= set(TRAINING_NOTEBOOKS))
        training = {n for n in self.params if n in TRAINING_NOTEBOOKS}
        self._check_keys(self.prof.common, training, f"profiles.{self.profile}.common")

    def _check_keys(self, block: dict, notebooks: set[str], where: str, seeds_ok: bool = False) -> None:
        from .train_config import migrate_keys

        for k in migrate_keys(block, where, warn=False):
            if k == "seeds" and seeds_ok:
                continue
            lacking = sorted(n for n in notebooks if k not in self.params[n])
            if lacking:
                why = "seeds repeat training runs only" if k == "seeds" else \
                    f"its parameters: {', '.join(self.params[lacking[0]])}"
                self.problems.append((key_path(where, k), f"not a parameter of notebook {', '.join(lacking)} ({why})"))

    def runs(self) -> list[PlannedRun]:
        """Every run of the profile, ordered seed by seed, then the unseeded ones in plan order."""
        runs: list[tuple[tuple[int, int], PlannedRun]] = []
        for i, exp in enumerate(self.plan.experiments):
            if exp.same_as is not None:  # a table cell filled by another experiment's runs (same configuration)
                runs.append(((1, 0), PlannedRun(exp.name, "", {}, exp.table, exp.row, exp.column,
                                                status="same as " + exp.same_as, experiment=exp.name,
                                                same_as=exp.same_as, compare_to=exp.compare_to)))
                continue
            try:
                runs += self._experiment_runs(exp)
            except ValueError as e:
                self.problems.append((_exp_path(i, exp), f"profile {self.profile}: {e}"))
        return [r for _, r in sorted(runs, key=lambda x: x[0])]  # stable: seed by seed, then unseeded

    def _experiment_runs(self, exp: Experiment) -> list[tuple[tuple[int, int], PlannedRun]]:
        from .train_config import migrate_keys, valid_run_id

        training = exp.notebook in TRAINING_NOTEBOOKS
        key = self.block_key(exp)
        block = migrate_keys(dict(self.prof.model_extra.get(key) or {}), f"profile {self.profile}, {key}")
        seeds = block.pop("seeds", self.prof.seeds) if training else None
        defaults = block
        if training:
            common = migrate_keys(self.prof.common, f"profile {self.profile}")
            defaults = _training_defaults(self.params[exp.notebook]) | common | block
        out = []
        for name, params in _grid_runs(exp.name, migrate_keys(exp.grid, f"experiment {exp.name}")):
            params = defaults | (_resolve_refs(params, defaults, f"run {name}") if training else params)
            if training:
                params["runs_dir"] = str(self.out_dir)
            needs = [v[1:] for v in params.values() if isinstance(v, str) and v.startswith("@")]
            params = {k: str(self.out_dir / v[1:]) if isinstance(v, str) and v.startswith("@") else v
                      for k, v in params.items()}
            for i, seed in enumerate(seeds or [None]):
                p, run_name = dict(params), name
                if seed is not None:
                    p["seed"] = seed
                    run_name = name if i == 0 else f"{name}-seed{seed}"
                if training and valid_run_id(run_name):  # a bad name is reported with its key path, below
                    p["run_id"] = run_name
                    try:
                        _check_training_params(p, self.params[exp.notebook])
                    except ValueError as e:
                        raise ValueError(f"run {run_name} ({exp.notebook}): {e}") from None
                out.append(((0, i) if seeds else (1, 0), PlannedRun(
                    run_name, exp.notebook, p, exp.table, exp.row, exp.column, needs=needs, experiment=exp.name,
                    compare_to=exp.compare_to, expect_failure=exp.expect_failure)))
        return out


def _grid_runs(name: str, grid: dict) -> list[tuple[str, dict]]:
    """(run name, parameters) per combination of a grid's list values: the name is the experiment's,
    then each varied value."""
    varied = [k for k, v in grid.items() if isinstance(v, list)]
    return [("-".join([name] + [str(v) for v in combo]), dict(grid) | dict(zip(varied, combo)))
            for combo in itertools.product(*(grid[k] for k in varied))]


def _notebook_file(nb_dir: Path, name: str) -> Path | None:
    """`nb_dir/<name>.ipynb` where `name` is a plain file stem of a notebook inside nb_dir; else None."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        return None
    path = nb_dir / f"{name}.ipynb"
    if not path.is_file() or path.resolve().parent != nb_dir.resolve():
        return None
    return path


# `minbert study` writes these into the study folder beside the run folders
RESERVED_NAMES = ("report", "study.json")


def _reference_problems(runs: list[PlannedRun], plan: Plan) -> list[tuple[str, str]]:
    """Run names are plain folder names (the --run-id rule), unique and not the study's own files;
    every same_as, compare_to and @run names something in the plan."""
    from .train_config import valid_run_id

    index = {e.name: i for i, e in enumerate(plan.experiments)}
    where = lambda r: _exp_path(index[r.experiment], plan.experiments[index[r.experiment]])  # noqa: E731
    problems = []
    names = [r.name for r in runs]
    for r in runs:
        if not valid_run_id(r.name) or r.name in RESERVED_NAMES:
            problems.append((where(r) + ".name", f"run name {r.name!r} must be one folder name of letters, digits, "
                             f"'.', '_' or '-' inside --out (the --run-id rule), not {' or '.join(RESERVED_NAMES)}"))
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("experiments", f"several runs are named {n!r}; run names must be unique"))
    experiments = {r.experiment for r in runs}
    for r in runs:
        for key in ("same_as", "compare_to"):
            if getattr(r, key) is not None and getattr(r, key) not in experiments:
                problems.append((f"{where(r)}.{key}", f"names no experiment: {getattr(r, key)!r}"))
        unknown = [n for n in r.needs if n not in names]
        if unknown:
            problems.append((f"{where(r)}.grid", f"run {r.name} reads unknown run(s) (@name): {', '.join(unknown)}"))
    return problems


def _select_tables(runs: list[PlannedRun], tables: list[int] | None) -> list[PlannedRun]:
    """The runs of a profile's `tables` (every table when it has none); a run outside any table (the
    explorer) stays when every run it reads stays."""
    if tables is None:
        return runs
    kept = [r for r in runs if r.table in tables or r.table is None]
    names = {r.name for r in kept if r.table is not None}
    return [r for r in kept if r.table is not None or all(n in names for n in r.needs)]


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
