"""The report's numbers: which runs fill a table cell, what a cell may average (seeds, nothing else),
mean ± std over seeds with their count, and differences weighed against the seed spread."""
from __future__ import annotations

from typing import Callable, Hashable, Iterator

import numpy as np
import pandas as pd

from . import paper
from .runs import RunRecord
from .tasks import TASKS

Cell = tuple[dict, RunRecord]  # (the run's plan entry in study.json, its record)

# Config fields that do not change what a run computes: runs that differ only in these (and the seed)
# are replicates a cell may average. Any other difference splits the cell (variant_labels).
NOT_A_SETTING = frozenset({"seed", "run_id", "runs_dir", "data_dir", "device", "checkpoint_every",
                           "cache_features", "telemetry_every", "predict_test", "resume", "keep_last"})


def table_cells(study: dict, runs: dict[str, RunRecord], table: int) -> list[Cell]:
    """(plan entry, run) for every completed run of a table; `same_as` cells take the other entry's runs."""
    entries = study["runs"]
    out = []
    for e in entries:
        if e.get("table") != table:
            continue
        if e.get("same_as"):
            out += [(e, runs[o["name"]]) for o in entries
                    if o.get("experiment") == e["same_as"] and not o.get("same_as") and o["name"] in runs]
        elif e["name"] in runs:
            out.append((e, runs[e["name"]]))
    return out


def variant_labels(cells: list[Cell], cell_key: Callable[[dict, RunRecord], Hashable]) -> dict[str, str]:
    """Per run name: '' where the runs of its cell differ in nothing but the seed; otherwise what this run
    sets of the fields they differ in ('lr_finetune 1e-05'), so that it gets a cell of its own.

    A cell only averages over seeds: a plan column with a list of learning rates is not a spread."""
    groups: dict[Hashable, list[RunRecord]] = {}
    for e, r in cells:
        groups.setdefault(cell_key(e, r), []).append(r)
    labels = {}
    for recs in groups.values():
        settings = [{k: v for k, v in r.cfg.items() if k not in NOT_A_SETTING} for r in recs]
        varied = sorted({k for s in settings for k in s if any(s.get(k) != t.get(k) for t in settings)})
        for r, s in zip(recs, settings):
            labels[r.path.name] = ", ".join(f"{k} {s.get(k)}" for k in varied)
    return labels


def with_variant(label: str, variant: str) -> str:
    """A row or column label with the setting that sets its runs apart, if any."""
    return f"{label} ({variant})" if variant else label


def variant_notes(labels: dict[str, str], axis: str) -> list[str]:
    """A line saying which runs a table split because they differ in more than the seed."""
    split = {name: v for name, v in labels.items() if v}
    if not split:
        return []
    return [f"runs planned in one cell differ in more than the seed, so each setting is its own {axis} (a cell "
            "only averages over seeds): " + ", ".join(f"{n} ({v})" for n, v in split.items())]


def learned(rec: RunRecord, task: str) -> tuple[bool, bool]:
    """(trained, learned) of a task in a run; runs recorded before baselines count as learned."""
    b = (rec.metrics.get("baselines") or {}).get(task)
    if not isinstance(b, dict):
        return True, True
    return bool(b.get("trained", True)), bool(b.get("learned", True))


def metric_keys(cells: list[Cell]) -> list[str]:
    """The metric rows of a multi-task table: SST, PD, STS, then any other task its runs score (e.g.
    sst_rev), then overall."""
    fixed = [k for k in paper.METRIC_ROWS if k != "overall"]
    extra = dict.fromkeys(k for _, r in cells for k in r.cfg.get("tasks", []) if k not in fixed)
    return fixed + list(extra) + ["overall"]


def metric_label(key: str) -> str:
    """A metric row's label: the paper's ('SST dev Acc.'), or one in its style for another task."""
    if key in paper.METRIC_ROWS:
        return paper.METRIC_ROWS[key]
    spec = TASKS.get(key)
    if spec is None:
        return f"{key} dev"
    return f"{spec.short} dev {'Acc.' if spec.metric_name == 'acc' else 'Cor.'}"


def metric_rows(cells: list[Cell], ref: dict, condition: bool = False) -> pd.DataFrame:
    """Long table of a multi-task table: one row per (metric, column, run): ours (NaN where the record's
    value was left out), the paper's, baseline, trained, learned. Runs of one cell that differ in more
    than the seed get a column each; with `condition`, the plan's row is a condition column too."""
    keys = metric_keys(cells)
    cell_of = (lambda e, r: (e.get("row"), e["column"])) if condition else (lambda e, r: e["column"])
    variants = variant_labels(cells, cell_of)
    rows = []
    for e, r in cells:
        own = [k for k in keys if k in paper.METRIC_ROWS or k in r.cfg.get("tasks", [])]  # sst_rev: its runs only
        status = {t: learned(r, t) for t in own if t != "overall"}
        for key in own:
            if key == "overall":  # comparable only where every trained task learned
                trained, ok = True, all(lr for tr, lr in status.values() if tr)
            else:
                trained, ok = status[key]
            rows.append({**({"condition": e.get("row")} if condition else {}), "row": metric_label(key),
                         "metric": key, "column": with_variant(e["column"], variants[r.path.name]),
                         "experiment": e.get("experiment"), "ours": r.scores.get(key),
                         "paper": ref.get(e["column"], {}).get(key), "run": r.path.name, "seed": r.cfg.get("seed"),
                         "trained": trained, "learned": ok,
                         "baseline": ((r.metrics.get("baselines") or {}).get(key) or {}).get("baseline")})
    cols = (["condition"] if condition else []) + ["row", "metric", "column", "experiment", "ours", "paper", "run",
                                                   "seed", "trained", "learned", "baseline"]
    out = pd.DataFrame(rows, columns=cols)
    out["ours"] = out["ours"].astype(float)  # None (a value left out) -> NaN, even where every one is
    return out


def summarize(df: pd.DataFrame, by: tuple[str, ...] = ("row", "metric", "column")) -> pd.DataFrame:
    """Per cell: mean, std and count (n) of the seeds' values that are there, and whether every seed with
    a value learned. A run whose value was left out counts in its column's seeds, not in the cell's n."""
    valid = df.assign(trained=df["trained"] | df["ours"].isna(), learned=df["learned"] | df["ours"].isna())
    g = valid.groupby(list(by), sort=False)
    return g.agg(ours=("ours", "mean"), std=("ours", "std"), n=("ours", "count"), paper=("paper", "first"),
                 trained=("trained", "all"), learned=("learned", "all"), baseline=("baseline", "mean"),
                 experiment=("experiment", "first")).reset_index()


def seeds_per_column(df: pd.DataFrame) -> dict[str, int]:
    """How many runs (seeds) each column of a long table holds, values left out or not."""
    return {c: int(n) for c, n in df.groupby("column", sort=False)["run"].nunique().items()}


def diff_verdict(a: pd.Series, b: pd.Series) -> tuple[float, float | None, str]:
    """(mean difference a - b, the 2-standard-error spread of that difference, verdict)."""
    diff = float(a["ours"] - b["ours"])
    if not (a["learned"] and b["learned"]):
        return diff, None, "not compared: a run did not learn"
    if a["n"] < 2 or b["n"] < 2:
        return diff, None, "no verdict: fewer than 2 seeds"
    spread = 2.0 * float(np.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"]))
    return diff, spread, ("exceeds the seed spread" if abs(diff) > spread else "within the seed spread")


def _column_pairs(df: pd.DataFrame, a: dict, b: dict) -> list[tuple[str, str]]:
    """(column of a, column of b) to compare: where a side has one column, every column of the other;
    where both are split by a setting, the columns with the same setting."""
    def cols(e: dict) -> dict[str, str]:  # column -> its variant suffix
        return {c: c[len(e["column"]):] for c in dict.fromkeys(df[df["experiment"] == e["experiment"]]["column"])}

    a_cols, b_cols = cols(a), cols(b)
    single = len(a_cols) == 1 or len(b_cols) == 1
    return [(ca, cb) for ca, sa in a_cols.items() for cb, sb in b_cols.items() if single or sa == sb]


def compared_cells(entries: list[dict], df: pd.DataFrame,
                   summary: pd.DataFrame) -> Iterator[tuple[str, str, list[tuple[str, pd.Series, pd.Series]]]]:
    """Per compared pair of columns (an entry's compare_to), its summary rows metric by metric: yields
    (a_col, b_col, [(metric, a's summary row, b's), ...]); the report's text and figures both read it."""
    by_exp = {e["experiment"]: e for e in entries if e.get("experiment")}
    for exp, e in by_exp.items():
        other = by_exp.get(e.get("compare_to") or "")
        for a_col, b_col in (_column_pairs(df, e, other) if other else []):
            cells = []
            for key in dict.fromkeys(summary["metric"]):
                a = summary[(summary["metric"] == key) & (summary["column"] == a_col)]
                b = summary[(summary["metric"] == key) & (summary["column"] == b_col)]
                if not (a.empty or b.empty):
                    cells.append((key, a.iloc[0], b.iloc[0]))
            yield a_col, b_col, cells


def comparisons(entries: list[dict], df: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """One line per compared pair (an entry's compare_to), a part per metric: the difference, the seed
    spread, the verdict, and the seeds behind each side where a cell has fewer than its column."""
    seeds = seeds_per_column(df)
    lines = []
    for a_col, b_col, cells in compared_cells(entries, df, summary):
        parts = []
        for key, a, b in cells:
            diff, spread, verdict = diff_verdict(a, b)
            sp = f", spread ±{spread:.3f}" if spread is not None else ""
            few = (f" ({int(a['n'])} vs {int(b['n'])} seeds)"
                   if a["n"] < seeds[a_col] or b["n"] < seeds[b_col] else "")
            parts.append(f"{key} {diff:+.3f}{few}{sp}: {verdict}")
        if parts:
            lines.append(f"**{a_col}** vs **{b_col}**: " + "; ".join(parts))
    return lines
