"""The study's tables (CSV, Markdown) and figures (PNG, PDF), built from its run folders.

A table is one entry of TABLES: its caption, its layout (how its runs become cells, and what it writes),
the paper's numbers, its notes and its figures. Nothing here branches on a table's number; a new table
is a new entry. The runs are read by minbert_core.runs (`load_run`, `load_study`, re-exported here).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import paper
from .atomic import atomic_write_text
from .report_cells import (Cell, compared_cells, comparisons, diff_verdict, learned, metric_rows, seeds_per_column,
                           summarize, table_cells)
from .report_cells import diff_verdict as _diff_verdict  # noqa: F401  (the tests' name for it)
from .report_cells import variant_labels, variant_notes, with_variant
from .report_text import (EXPECTED, LEGEND, NOT_LEARNED, SETTINGS, UNTRAINED, WITHIN_SPREAD, data_text,
                          metrics_grid, metrics_markdown, ordered_columns, paper_inconsistencies, settings_text,
                          table1_markdown, target_notes)
from .runs import RunRecord, StudyRecords, load_run, load_study  # noqa: F401  (notebooks read runs from here)
from .tasks import display_label, get_task

log = logging.getLogger("minbert.report")
DIFF_NOTE = "differences (mean over seeds) against the seed spread, 2·sqrt(std_a²/n_a + std_b²/n_b): "


@dataclass
class TableContext:
    """One table being built: its number, the study's records, and the (plan entry, run) of its cells."""

    number: int
    records: StudyRecords
    cells: list[Cell]
    paper: dict  # the paper's numbers for the table (its TableSpec's; {} where it has none)
    _frames: dict = field(default_factory=dict, repr=False, compare=False)

    def frames(self, condition: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(metric_rows' long frame of the cells, its summary over seeds), per condition (the plan's row)
        where `condition`: built once per table, read by its layout, notes and figures (not to be changed)."""
        if condition not in self._frames:
            df = metric_rows(self.cells, self.paper, condition=condition)
            by = ("condition", "row", "metric", "column") if condition else ("row", "metric", "column")
            self._frames[condition] = (df, summarize(df, by))
        return self._frames[condition]

    @property
    def study(self) -> dict:
        return self.records.study

    @property
    def entries(self) -> list[dict]:
        """The plan entries (study.json) placed in this table."""
        return [e for e in self.study["runs"] if e.get("table") == self.number]

    @property
    def recs(self) -> list[RunRecord]:
        """Each run of the table once (a `same_as` cell shares another's runs)."""
        return list({id(r): r for _, r in self.cells}.values())


@dataclass(frozen=True)
class TableSpec:
    """A table of the report: its caption, how its runs are laid out, and what is said under it."""

    caption: str
    layout: Callable[[TableContext, "TableSpec", Path], str]  # writes the table's CSVs, returns its Markdown
    paper: dict = field(default_factory=dict)  # the paper's numbers by column (Table 1: by row, then column)
    paper_other: dict = field(default_factory=dict)  # the paper's other multi-task table, to explain its slips
    columns: tuple[str, ...] = ()  # column order; a column not in it follows in plan order
    notes: tuple[Callable[[TableContext], list[str]], ...] = ()  # said after the settings and data sizes
    marks: frozenset[str] = frozenset()  # marks its legend always explains
    figures: tuple[Callable[[TableContext, "TableSpec"], dict], ...] = ()  # name -> matplotlib Figure
    needs: tuple[str, ...] = ("column",)  # the plan-entry keys its layout places a run by


# --- notes every table carries --------------------------------------------------------------------------------

def _marks_used(ctx: TableContext, spec: TableSpec) -> set[str]:
    """The marks a table's cells can carry, for its legend."""
    used = set(spec.marks)
    for e, r in ctx.cells:
        for t in r.cfg.get("tasks", []):
            trained, ok = learned(r, t)
            if not trained:
                used.add(UNTRAINED)
            elif not ok:
                used.add(EXPECTED if e.get("expect_failure") else NOT_LEARNED)
    return used


def _left_out_notes(ctx: TableContext) -> list[str]:
    """The table's runs whose records are damaged (left out) and the values left out of the others."""
    names = {e["name"] for e in ctx.entries} | {e["name"] for e in ctx.study["runs"]
                                                if e.get("experiment") in {x.get("same_as") for x in ctx.entries}}
    skipped = [f"{n} ({why})" for n, why in ctx.records.skipped.items() if n in names]
    problems = [p for r in ctx.recs for p in r.problems]
    return ([f"runs left out (a damaged record): {'; '.join(skipped)}"] if skipped else []) + \
        ([f"left out of the records read (the run stays): {'; '.join(problems)}"] if problems else [])


def table_notes(ctx: TableContext, spec: TableSpec, extra: list[str] = ()) -> list[str]:
    """Where a table's numbers come from (profile, settings, data, seeds), its own notes, its legend, the
    runs missing or left out; then `extra`."""
    if not ctx.cells:
        return ["no completed runs"] + _left_out_notes(ctx)
    recs = ctx.recs
    notes = [f"ours: profile `{ctx.study.get('profile')}`; {settings_text(recs)}", data_text(recs)]
    for f in spec.notes:
        notes += f(ctx)
    used = _marks_used(ctx, spec)
    notes += [f"{m} : {LEGEND[m]}" for m in LEGEND if m in used]
    missing = [e["name"] for e in ctx.entries if not e.get("same_as") and e["name"] not in ctx.records.runs
               and e["name"] not in ctx.records.skipped]
    if missing:
        notes.append(f"missing (not complete): {', '.join(missing)}")
    return notes + _left_out_notes(ctx) + list(extra)


def paper_note(ctx: TableContext) -> list[str]:
    """Which model the paper's numbers come from."""
    return [f"paper: {paper.PAPER_MODEL}"]


def same_as_notes(ctx: TableContext) -> list[str]:
    """Columns that read another experiment's runs."""
    return [f"'{e['column']}' is the same configuration as the runs of `{e['same_as']}` and reads their records"
            for e in ctx.entries if e.get("same_as")]


def expected_failure_notes(ctx: TableContext) -> list[str]:
    """Rows the plan expects not to learn, and why."""
    return list(dict.fromkeys(f"'{e['row']}' is expected not to learn: {e['expect_failure']}"
                              for e, _ in ctx.cells if e.get("expect_failure")))


def changes_from(reference: str | None,
                 same: Callable[[dict, RunRecord], tuple]) -> Callable[[TableContext], list[str]]:
    """A note function: per row, which settings differ from the `reference` row's run that is `same`
    (same column, ...); the reference is the table's first row where None."""
    def notes(ctx: TableContext) -> list[str]:
        ref_row = reference or next((e.get("row") for e in ctx.entries), None)
        keys = [k for k, _ in SETTINGS] + ["seed", "tasks"]
        ref = {same(e, r): r for e, r in ctx.cells if e.get("row") == ref_row}
        changes: dict[str, set] = {}
        for e, r in ctx.cells:
            d = ref.get(same(e, r))
            if d is None or e.get("row") == ref_row:
                continue
            diff = [f"{k} {d.cfg.get(k)!s} → {r.cfg.get(k)!s}" for k in keys if d.cfg.get(k) != r.cfg.get(k)]
            changes.setdefault(e["row"], set()).add(", ".join(diff) or f"nothing (same as {ref_row})")
        return [f"'{row}' changes from {ref_row}: {'; '.join(sorted(c))}" for row, c in changes.items()]
    return notes


def fixed_note(text: str) -> Callable[[TableContext], list[str]]:
    """A note function that says `text`."""
    return lambda ctx: [text]


# --- layouts: how a table's runs become cells -----------------------------------------------------------------

def _table1_column(r: RunRecord) -> str:
    return f"{r.cfg['mode'].title()}-{get_task(r.cfg['tasks'][0]).short}"


def table1_frame(ctx: TableContext, spec: TableSpec) -> pd.DataFrame:
    """Long table: setting (row) x {mode}-{task} (column): ours, the paper's, seed spread, baseline."""
    variants = variant_labels(ctx.cells, lambda e, r: (e["row"], _table1_column(r)))
    rows = []
    for e, r in ctx.cells:
        task, col = r.cfg["tasks"][0], _table1_column(r)
        rows.append({"row": with_variant(e["row"], variants[r.path.name]), "column": col, "ours": r.scores.get(task),
                     "paper": spec.paper.get(e["row"], {}).get(col), "seed": r.cfg["seed"], "run": e["name"],
                     "learned": learned(r, task)[1], "expected_failure": bool(e.get("expect_failure")),
                     "baseline": ((r.metrics.get("baselines") or {}).get(task) or {}).get("baseline")})
    df = pd.DataFrame(rows, columns=["row", "column", "ours", "paper", "seed", "run", "learned", "expected_failure",
                                     "baseline"]).astype({"ours": float})
    # Seed spread per column: the default setting and the rows that only change the seed.
    seed_rows = ["Default"] + [r for r in df["row"].unique() if str(r).startswith("seed=")]
    ok = df[df["row"].isin(seed_rows) & df["learned"].astype(bool)]
    spread = ok.groupby("column")["ours"].agg(["mean", "std", "count"])
    df["seed_std"] = df["column"].map(spread["std"])
    default = df[df["row"] == "Default"].groupby("column")["ours"].mean()
    df["diff_vs_default"] = df["ours"] - df["column"].map(default)
    df["within_seed_spread"] = ~df["row"].isin(seed_rows) & (df["diff_vs_default"].abs() < df["seed_std"])
    for col, s in spread.iterrows():
        if s["count"] >= 2:
            rows_mean = {"row": f"Default, mean ± std over {int(s['count'])} seeds", "column": col,
                         "ours": s["mean"], "paper": None, "seed": None, "run": "", "learned": True,
                         "baseline": None, "seed_std": s["std"], "diff_vs_default": None,
                         "within_seed_spread": False}
            df = pd.concat([df, pd.DataFrame([rows_mean])], ignore_index=True)
    return df


def settings_layout(ctx: TableContext, spec: TableSpec, tables_dir: Path) -> str:
    """Table 1's layout: a row per setting, a column per mode and task, one run a cell, ours (paper)."""
    df = table1_frame(ctx, spec)
    atomic_write_text(tables_dir / f"table{ctx.number}.csv", df.to_csv(index=False))
    variants = variant_notes(variant_labels(ctx.cells, lambda e, r: (e["row"], _table1_column(r))), "row")
    return table1_markdown(df, list(spec.columns), spec.caption, table_notes(ctx, spec, variants))


def metrics_layout(ctx: TableContext, spec: TableSpec, tables_dir: Path) -> str:
    """Tables 2-4's layout: a column per model, a row per metric, mean ± std over seeds (paper); each
    compare_to weighed against the seed spread."""
    df, summary = ctx.frames()
    atomic_write_text(tables_dir / f"table{ctx.number}.csv", df.to_csv(index=False))
    atomic_write_text(tables_dir / f"table{ctx.number}_summary.csv", summary.to_csv(index=False))
    variants = variant_notes(variant_labels(ctx.cells, lambda e, r: e["column"]), "column")
    notes = table_notes(ctx, spec, variants) + target_notes(ctx.study, summary, ctx.number, seeds_per_column(df))
    comp = comparisons(ctx.entries, df, summary)
    if comp:
        notes.append(DIFF_NOTE + " | ".join(comp))
    bad = tuple(paper_inconsistencies(spec.paper, spec.paper_other)) if spec.paper else ()
    columns = list(spec.columns) or list(dict.fromkeys(e["column"] for e in ctx.entries))
    return metrics_markdown(summary, columns, spec.caption, notes, seeds_per_column(df), bad, bool(spec.paper))


def _condition_block(ctx: TableContext, cond: str, df: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """One condition of a conditions table: its strategies x tasks, seeds, and its differences."""
    d, s = df[df["condition"] == cond], summary[summary["condition"] == cond]
    if s.empty:
        return [f"*{cond}*: no completed runs", ""]
    cols = ordered_columns(s["column"], list(dict.fromkeys(e["column"] for e in ctx.entries)))
    out = [f"*{cond}*", "", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    out += metrics_grid(s, cols, seeds_per_column(d), with_paper=False)
    comp = comparisons([e for e in ctx.entries if e.get("row") == cond], d, s)
    return out + [""] + [f"- {DIFF_NOTE if i == 0 else ''}{c}" for i, c in enumerate(comp)] + ([""] if comp else [])


def conditions_layout(ctx: TableContext, spec: TableSpec, tables_dir: Path) -> str:
    """Table 5's layout: per condition (the plan's row) a block of strategies (columns) x tasks, overall
    and seeds (rows), mean ± std over seeds, and each compare_to weighed against the seed spread."""
    df, summary = ctx.frames(condition=True)
    atomic_write_text(tables_dir / f"table{ctx.number}.csv", df.to_csv(index=False))
    atomic_write_text(tables_dir / f"table{ctx.number}_summary.csv", summary.to_csv(index=False))
    out = [f"**{spec.caption}** — per condition, each cell: ours, mean ± std over seeds", ""]
    for cond in dict.fromkeys(e.get("row") for e in ctx.entries):
        out += _condition_block(ctx, cond, df, summary)
    variants = variant_notes(variant_labels(ctx.cells, lambda e, r: (e.get("row"), e["column"])), "column")
    return "\n".join(out + [f"- {x}" for x in table_notes(ctx, spec, variants)]) + "\n"


# --- figures ----------------------------------------------------------------------------------------------------

def hyperparameter_figure(ctx: TableContext, spec: TableSpec) -> dict:
    """Table 1 as a picture."""
    from . import plots

    t1 = table1_frame(ctx, spec)
    t1_runs = t1[t1["run"] != ""]
    return {"hyperparameter_effects": plots.hyperparameter_effects(t1_runs)} if len(t1_runs) else {}


def multitask_figures(ctx: TableContext, spec: TableSpec) -> dict:
    """Learning curves and gradient conflicts of one seed per column (the runs with the plan's plain
    names keep the figures readable)."""
    from . import plots

    figs = {}
    first = [(e["column"], r) for e, r in ctx.cells if r.path.name == e.get("experiment", e["name"])]
    if first:
        hist = pd.concat([r.history.assign(run=label) for label, r in first], ignore_index=True)
        figs["learning_curves"] = plots.learning_curves(hist)
    tele = [r.telemetry.assign(run=label) for label, r in first if r.telemetry is not None]
    if tele:
        figs["gradient_conflict_summary"] = plots.conflict_summary(pd.concat(tele, ignore_index=True))
    return figs


def metrics_figure(name: str) -> Callable[[TableContext, TableSpec], dict]:
    """A figure function: every column's dev metrics, each seed a point, beside the paper's numbers where
    the table has them; saved as `name` ({n}: the table's number)."""
    def draw(ctx: TableContext, spec: TableSpec) -> dict:
        from . import plots

        df, summary = ctx.frames()
        ours = df[df["ours"].notna()].rename(columns={"column": "model", "ours": "value"})
        if not len(ours):
            return {}
        ref = summary.rename(columns={"column": "model", "paper": "value"}) if spec.paper else None
        return {name.format(n=ctx.number): plots.dev_metrics(_displayed(ours), ref if ref is None else _displayed(ref))}
    return draw


def _displayed(d: pd.DataFrame) -> pd.DataFrame:
    """A long frame with its metric keys as the figures' labels ('SST-5\n(accuracy)')."""
    return d.assign(metric=d["metric"].map(display_label))


def dev_frame(ctx: TableContext, df: pd.DataFrame) -> pd.DataFrame:
    """history.csv's dev rows of a table's runs, long: (group, column, run, seed, step, metric, value) with
    the cell's learned, trained and baseline; `df` is metric_rows' frame (group: its condition, if any)."""
    recs = {r.path.name: r for _, r in ctx.cells}
    parts = []
    for _, row in df.iterrows():  # one per (metric, column, run)
        h, col = recs[row["run"]].history, f"dev_{row['metric']}"
        if col not in h or "kind" not in h:
            continue
        dev = h[(h["kind"] == "dev") & h[col].notna()]
        parts.append(pd.DataFrame({"step": dev["step"].to_numpy(), "value": dev[col].to_numpy()}).assign(
            group=row.get("condition") or "", column=row["column"], run=row["run"], seed=row["seed"],
            metric=row["metric"], learned=row["learned"], trained=row["trained"], baseline=row["baseline"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def dev_curves_figure(by_condition: bool = False) -> Callable[[TableContext, TableSpec], dict]:
    """A figure function: dev score against training step, every seed a line, a colour per column (and a
    row of panels per condition, the plan's row, where `by_condition`)."""
    def draw(ctx: TableContext, spec: TableSpec) -> dict:
        from . import plots

        dev = dev_frame(ctx, ctx.frames(by_condition)[0])
        return {f"table{ctx.number}_dev_curves": plots.dev_curves(dev)} if len(dev) else {}
    return draw


def difference_frames(entries: list[dict], df: pd.DataFrame, summary: pd.DataFrame,
                      group: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(differences, seed points) of every compared pair: per metric the mean difference, the seed spread
    2·sqrt(std_a²/n_a + std_b²/n_b) (NaN without one), the verdict, whether both sides learned; and each
    seed of the compared column minus the reference's mean. The same numbers as the table's notes."""
    diffs, points = [], []
    for a_col, b_col, cells in compared_cells(entries, df, summary):
        label = f"{a_col} − {b_col}"
        for key, a, b in cells:
            diff, spread, verdict = diff_verdict(a, b)
            diffs.append({"group": group, "label": label, "metric": key, "diff": diff,
                          "spread": np.nan if spread is None else spread, "verdict": verdict,
                          "compared": bool(a["learned"] and b["learned"])})
            seeds = df[(df["metric"] == key) & (df["column"] == a_col) & df["ours"].notna()]
            points += [{"group": group, "label": label, "metric": key, "value": v - b["ours"], "learned": ok}
                       for v, ok in zip(seeds["ours"], seeds["learned"] & seeds["trained"])]
    return pd.DataFrame(diffs), pd.DataFrame(points, columns=["group", "label", "metric", "value", "learned"])


def differences_figure(by_condition: bool = False) -> Callable[[TableContext, TableSpec], dict]:
    """A figure function: each compared column's difference from its reference (compare_to) with the seed
    spread, per task and overall (per condition, the plan's row, where `by_condition`)."""
    def draw(ctx: TableContext, spec: TableSpec) -> dict:
        from . import plots

        df, summary = ctx.frames(by_condition)
        if not len(df):
            return {}
        if not by_condition:
            diffs, points = difference_frames(ctx.entries, df, summary)
        else:
            frames = [difference_frames([e for e in ctx.entries if e.get("row") == c], df[df["condition"] == c],
                                        summary[summary["condition"] == c], c) for c in dict.fromkeys(df["condition"])]
            diffs, points = (pd.concat([f[i] for f in frames], ignore_index=True) for i in (0, 1))
        return {f"table{ctx.number}_differences": plots.differences(diffs, points)} if len(diffs) else {}
    return draw


def mechanism_figure(ctx: TableContext, spec: TableSpec) -> dict:
    """Each strategy's gain over the summed loss against the sum run's dominance and conflict rate."""
    from . import mechanism, plots

    pts = mechanism.points(ctx.study, ctx.records.runs, ctx.number)
    return {f"table{ctx.number}_mechanism": plots.mechanism(pts)} if len(pts) else {}


def mechanism_notes(ctx: TableContext) -> list[str]:
    """Per condition, the telemetry of its summed-loss runs, and which explanation predicts the gains."""
    from . import mechanism

    return mechanism.condition_notes(ctx.study, ctx.records.runs, ctx.frames(condition=True)[1], ctx.number)


# --- the registry -----------------------------------------------------------------------------------------------

TABLES: dict[int, TableSpec] = {
    1: TableSpec("Table 1: sentiment dev accuracy", settings_layout, paper.TABLE1, columns=tuple(paper.TABLE1_COLUMNS),
                 notes=(paper_note, changes_from("Default", lambda e, r: (r.cfg["mode"], r.cfg["tasks"][0])),
                        expected_failure_notes),
                 marks=frozenset({WITHIN_SPREAD}), figures=(hyperparameter_figure,), needs=("row",)),
    2: TableSpec("Table 2: multi-task before and after the multi-task optimisation", metrics_layout, paper.TABLE2,
                 paper.TABLE3, tuple(paper.TABLE2),
                 notes=(paper_note, same_as_notes, lambda ctx: list(paper_inconsistencies(paper.TABLE2,
                                                                                          paper.TABLE3).values())),
                 figures=(multitask_figures, metrics_figure("dev_metrics"), dev_curves_figure(),
                          differences_figure())),
    3: TableSpec("Table 3: structure optimisations", metrics_layout, paper.TABLE3, paper.TABLE2, tuple(paper.TABLE3),
                 notes=(paper_note, same_as_notes, lambda ctx: list(paper_inconsistencies(paper.TABLE3,
                                                                                          paper.TABLE2).values())),
                 figures=(metrics_figure("table{n}_dev_metrics"), dev_curves_figure(), differences_figure())),
    4: TableSpec("Table 4: every gradient strategy (not in the paper)", metrics_layout,
                 notes=(fixed_note("not in the paper: every gradient strategy on the Table 2 setting, or the part of "
                                   "it the profile's `table4` block says (the settings above); each compared with the "
                                   "summed loss"),),
                 figures=(metrics_figure("table{n}_strategies"), dev_curves_figure(), differences_figure())),
    5: TableSpec("Table 5: gradient strategies under conditions (not in the paper)", conditions_layout,
                 notes=(fixed_note("not in the paper: each condition (a block) changes the setting of the first one "
                                   "as said below; in each, the strategies are compared with its summed loss"),
                        changes_from(None, lambda e, r: (e["column"], r.cfg.get("seed"))), mechanism_notes),
                 figures=(mechanism_figure, dev_curves_figure(True), differences_figure(True)),
                 needs=("row", "column")),
    6: TableSpec("Table 6: bf16 autocast against fp32 (not in the paper)", metrics_layout,
                 notes=(fixed_note("not in the paper: Table 2's summed loss and PCGrad at bf16 autocast (the profile's "
                                   "`table6` block), each against the same column's fp32 runs from Table 2; a task "
                                   "whose difference exceeds the seed spread means bf16 changes what the study "
                                   "finds, and no profile may use it"),),
                 figures=(differences_figure(),)),
}


def planned_tables(study: dict) -> list[int]:
    """The tables the study's plan places runs in and the registry knows, in order; others are logged."""
    planned = sorted({e.get("table") for e in study["runs"] if e.get("table") is not None},
                     key=lambda n: (str(type(n)), n))
    for n in planned:
        if n not in TABLES:
            log.warning("table %s: no entry in minbert_core.report.TABLES; its runs are not reported", n)
    return [n for n in planned if n in TABLES]


def _check_placed(ctx: TableContext, spec: TableSpec) -> None:
    """Every plan entry of the table names what its layout places it by (a row, a column)."""
    for e in ctx.entries:
        missing = [k for k in spec.needs if not isinstance(e.get(k), str)]
        if missing:
            raise ValueError(f"{ctx.records.folder / 'study.json'}: run {e['name']} of table {ctx.number} has no "
                             f"{' or '.join(missing)}; "
                             f"its plan entry must give one (the table places its runs by {', '.join(spec.needs)})")


def table_contexts(records: StudyRecords) -> dict[int, TableContext]:
    """Each planned table's context, by number. A plan entry without the row or column its table needs is
    a ValueError naming it."""
    contexts = {}
    for n in planned_tables(records.study):
        contexts[n] = TableContext(n, records, table_cells(records.study, records.runs, n), TABLES[n].paper)
        _check_placed(contexts[n], TABLES[n])
    return contexts


def build_tables(records: StudyRecords, tables_dir: Path,
                 contexts: dict[int, TableContext] | None = None) -> dict[int, str]:
    """Write every planned table's CSVs and Markdown (and report.md, all of them); returns the Markdown.
    `contexts`: table_contexts(records), if the caller has them. A plan entry without the row or column
    its table needs is a ValueError naming it."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    md = {}
    for n, ctx in (table_contexts(records) if contexts is None else contexts).items():
        md[n] = TABLES[n].layout(ctx, TABLES[n], tables_dir)
        atomic_write_text(tables_dir / f"table{n}.md", md[n])
    claims = _claims_section(records)
    atomic_write_text(tables_dir / "claims.md", claims)
    atomic_write_text(tables_dir / "report.md", "\n".join([*md.values(), claims]))
    return md


def _claims_section(records: StudyRecords) -> str:
    """The paper's claims checked against the study; without the data files, the paper's marks are skipped."""
    from . import claims

    try:
        return claims.claims_markdown(records)
    except FileNotFoundError as err:
        log.warning("claims: %s", err)
        return claims.claims_markdown(records, marks=False) + f"\n(the paper's marks need the data files: {err})\n"


def build_report(study_dir: str | Path, report_dir: str | Path) -> dict[str, list[str]]:
    """Write tables (CSV + Markdown) and figures (PNG + PDF) for a study; returns the paths. A run whose
    record is damaged is left out (logged, and listed under its table)."""
    import matplotlib.pyplot as plt

    from . import plots

    records = load_study(study_dir)
    report_dir = Path(report_dir)
    tables_dir = report_dir / "tables"
    contexts = table_contexts(records)
    build_tables(records, tables_dir, contexts)
    written: dict[str, list[str]] = {"tables": [], "figures": []}
    for n, ctx in contexts.items():
        written["tables"] += [str(tables_dir / f"table{n}.csv"), str(tables_dir / f"table{n}.md")]
        for draw in TABLES[n].figures:
            for name, fig in draw(ctx, TABLES[n]).items():
                written["figures"] += plots.save(fig, report_dir, name)
                plt.close(fig)
    return written
