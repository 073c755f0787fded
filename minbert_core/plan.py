"""The study plan: its YAML read into planned runs, every parameter resolved and checked, and the
config a training notebook builds from its parameters.

Nothing here runs a notebook (minbert_core.notebook_run does; minbert_core.study runs a plan).
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from .notebook_run import NOTEBOOKS_DIR, TRAINING_NOTEBOOKS

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
    from .train import TrainConfig

    check_parameters(namespace, notebook)
    params = notebook_parameters(NOTEBOOKS_DIR / f"{notebook}.ipynb")
    both = sorted(set(fixed) & set(params))
    if both:
        raise ValueError(f"notebook {notebook}: {', '.join(both)} is both a parameter and fixed by the notebook")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig.from_dict({**{k: namespace[k] for k in params if k in fields}, **fixed})


def _training_defaults(nb_params: dict) -> dict:
    """TrainConfig's defaults (the original project's) for the notebook's training parameters."""
    from .train import TrainConfig

    base = TrainConfig()
    return {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig) if f.name in nb_params}


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
