"""Reading run folders and building the study's tables (CSV, Markdown) and figures (PNG, PDF)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import paper
from .atomic import atomic_write_text
from .tasks import display_label, get_task



@dataclass
class RunRecord:
    """Everything a finished run folder holds, loaded."""

    path: Path
    config: dict
    metrics: dict
    history: pd.DataFrame
    telemetry: pd.DataFrame | None

    @property
    def cfg(self) -> dict:
        from .train import migrate_keys

        return migrate_keys(self.config["config"], str(self.path), warn=False)  # records from before a rename


def load_run(path: str | Path) -> RunRecord:
    """Load a run folder; a missing file is an error naming it."""
    path = Path(path)
    for f in ("config.json", "metrics.json", "history.csv"):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f}: not found; is {path} a finished run folder?")
    tele = path / "telemetry.csv"
    return RunRecord(path, json.loads((path / "config.json").read_text()),
                     json.loads((path / "metrics.json").read_text()), pd.read_csv(path / "history.csv"),
                     pd.read_csv(tele) if tele.is_file() else None)


def load_study(study_dir: str | Path) -> tuple[dict, dict[str, RunRecord]]:
    """The study's plan record (study.json) and every completed run in it, by name."""
    study_dir = Path(study_dir)
    f = study_dir / "study.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: not found; run `minbert study` first")
    study = json.loads(f.read_text())
    runs = {}
    for e in study["runs"]:
        p = study_dir / e["name"]
        if (p / "metrics.json").is_file() and (p / "config.json").is_file() and (p / "history.csv").is_file():
            rec = load_run(p)
            if rec.metrics.get("status") == "complete":
                runs[e["name"]] = rec
    return study, runs


def _fmt(v) -> str:
    return "NA" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


# Marks written into the tables; LEGEND says what each means on the page itself.
NOT_LEARNED = "✗"  # a trained task whose dev metric did not beat its trivial baseline by the margin
UNTRAINED = "°"  # a task the run did not train on (strategy single): expected not to learn
WITHIN_SPREAD = "†"  # Table 1: differs from the profile's Default by less than the seed spread
EXPECTED = "⊘"  # did not learn, and the plan says why that is expected (a row reproducing a failure)
LEGEND = {
    NOT_LEARNED: "did not learn: a trained task whose dev metric does not beat its trivial baseline (majority "
                 "class; r = 0 for STS) by 2 standard errors of that baseline on the evaluated rows. Not a number "
                 "to compare; no comparison is drawn from it",
    UNTRAINED: "task not trained by this run (strategy `single` trains SST only): expected not to learn",
    WITHIN_SPREAD: "differs from this profile's Default by less than the seed spread (std over Default and "
                   "the seed rows): not a finding",
    EXPECTED: "expected not to learn, and it did not: the row reproduces a failure (the plan's reason is in "
              "the notes)",
}


def _learned(rec: RunRecord, task: str) -> tuple[bool, bool]:
    """(trained, learned) of a task in a run; runs recorded before baselines count as learned."""
    b = rec.metrics.get("baselines", {}).get(task)
    if b is None:
        return True, True
    return bool(b["trained"]), bool(b["learned"])


def _cells(study: dict, runs: dict[str, RunRecord], table: int) -> list[tuple[dict, RunRecord]]:
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


def table1(study: dict, runs: dict[str, RunRecord]) -> pd.DataFrame:
    """Long table: setting (row) x {mode}-{task} (column): ours, the paper's, seed spread, baseline."""
    rows = []
    for e, r in _cells(study, runs, 1):
        task = r.cfg["tasks"][0]
        col = f"{r.cfg['mode'].title()}-{get_task(task).short}"
        trained, learned = _learned(r, task)
        rows.append({"row": e["row"], "column": col, "ours": r.metrics["best_dev"][task],
                     "paper": paper.TABLE1.get(e["row"], {}).get(col), "seed": r.cfg["seed"], "run": e["name"],
                     "learned": learned, "expected_failure": bool(e.get("expect_failure")),
                     "baseline": r.metrics.get("baselines", {}).get(task, {}).get("baseline")})
    df = pd.DataFrame(rows, columns=["row", "column", "ours", "paper", "seed", "run", "learned", "expected_failure",
                                     "baseline"])
    # Seed spread per column: the default setting and the rows that only change the seed.
    seed_rows = ["Default"] + [r for r in df["row"].unique() if str(r).startswith("seed=")]
    ok = df[df["row"].isin(seed_rows) & df["learned"].astype(bool)]
    spread = ok.groupby("column")["ours"].agg(["mean", "std", "count"])
    df["seed_std"] = df["column"].map(spread["std"])
    default = df[df["row"] == "Default"].set_index("column")["ours"]
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


def table_metrics(number: int, study: dict, runs: dict[str, RunRecord]) -> pd.DataFrame:
    """Tables 2-4, long: one row per (metric, model column, run): ours, the paper's, baseline, learned."""
    ref = paper.MULTITASK_TABLES.get(number, {})
    rows = []
    for e, r in _cells(study, runs, number):
        best = r.metrics["best_dev"]
        status = {t: _learned(r, t) for t in ("sst", "para", "sts")}
        for key, label in paper.METRIC_ROWS.items():
            if key == "overall":  # comparable only where every trained task learned
                trained, learned = True, all(lr for tr, lr in status.values() if tr)
            else:
                trained, learned = status[key]
            rows.append({"row": label, "metric": key, "column": e["column"], "experiment": e.get("experiment"),
                         "ours": best.get(key), "paper": ref.get(e["column"], {}).get(key), "run": r.path.name,
                         "seed": r.cfg["seed"], "trained": trained, "learned": learned,
                         "baseline": r.metrics.get("baselines", {}).get(key, {}).get("baseline")})
    return pd.DataFrame(rows, columns=["row", "metric", "column", "experiment", "ours", "paper", "run", "seed",
                                       "trained", "learned", "baseline"])


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Tables 2/3 per (metric, column): mean, std and count over seeds, and whether every seed learned."""
    g = df.groupby(["row", "metric", "column"], sort=False)
    out = g.agg(ours=("ours", "mean"), std=("ours", "std"), n=("ours", "count"), paper=("paper", "first"),
                trained=("trained", "all"), learned=("learned", "all"), baseline=("baseline", "mean"),
                experiment=("experiment", "first")).reset_index()
    return out


def _diff_verdict(a: pd.Series, b: pd.Series) -> tuple[float, float | None, str]:
    """(mean difference a - b, the 2-standard-error spread of that difference, verdict)."""
    diff = float(a["ours"] - b["ours"])
    if not (a["learned"] and b["learned"]):
        return diff, None, "not compared: a run did not learn"
    if a["n"] < 2 or b["n"] < 2:
        return diff, None, "no verdict: fewer than 2 seeds"
    spread = 2.0 * float(np.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"]))
    return diff, spread, ("exceeds the seed spread" if abs(diff) > spread else "within the seed spread")


def comparisons(study: dict, summary: pd.DataFrame, table: int) -> list[str]:
    """One line per (compared pair, metric): the difference, the seed spread, and the verdict."""
    lines = []
    by_exp = {e["experiment"]: e for e in study["runs"] if e.get("table") == table and e.get("experiment")}
    for exp, e in by_exp.items():
        other = e.get("compare_to")
        if not other or other not in by_exp:
            continue
        a_col, b_col = e["column"], by_exp[other]["column"]
        parts = []
        for key in paper.METRIC_ROWS:
            a = summary[(summary["metric"] == key) & (summary["column"] == a_col)]
            b = summary[(summary["metric"] == key) & (summary["column"] == b_col)]
            if a.empty or b.empty:
                continue
            diff, spread, verdict = _diff_verdict(a.iloc[0], b.iloc[0])
            sp = f", spread ±{spread:.3f}" if spread is not None else ""
            parts.append(f"{key} {diff:+.3f}{sp}: {verdict}")
        if parts:
            lines.append(f"**{a_col}** vs **{b_col}**: " + "; ".join(parts))
    return lines


def _targets(study: dict) -> list[dict]:
    """The profile's targets: recorded in study.json, or (a study recorded before targets were) the
    packaged plan's for that profile."""
    if "targets" in study:
        return study["targets"] or []
    from .study import load_plan

    return load_plan()["profiles"].get(study.get("profile"), {}).get("targets") or []


def target_notes(study: dict, summary: pd.DataFrame, table: int) -> list[str]:
    """Each target of the profile for this table: the measured mean per column, met or missed by how much,
    and what the plan says was tried."""
    notes = []
    for t in _targets(study):
        if t.get("table") != table:
            continue
        parts, missed = [], False
        for key, floor in t["min"].items():
            got = []
            for col in t["columns"]:
                row = summary[(summary["metric"] == key) & (summary["column"] == col)]
                if row.empty:
                    got.append(f"{col}: not run")
                    continue
                mean = float(row.iloc[0]["ours"])
                ok = mean >= floor
                missed |= not ok
                got.append(f"{col} {mean:.4f} " + ("met" if ok else f"missed by {floor - mean:.4f}"))
            parts.append(f"{key} ≥ {floor}: " + ", ".join(got))
        notes.append(f"targets of profile `{study.get('profile')}` (mean over seeds): " + "; ".join(parts))
        if missed and t.get("tried"):
            notes.append(f"tried for the missed target: {t['tried']}")
    return notes


INCONSISTENT = "‡"  # the paper's printed overall does not follow from its printed metrics


def _paper_overall(m: dict[str, float]) -> float:
    return (m["sst"] + m["para"] + (m["sts"] + 1) / 2) / 3


def paper_inconsistencies(ref: dict[str, dict[str, float]],
                          other: dict[str, dict[str, float]] | None = None) -> dict[str, str]:
    """Columns of the paper whose printed overall score does not follow from its three metrics, with a note.

    `other` (the other multi-task table) is searched for a column with the same PD and STS whose SST
    does give the printed overall: the likely intended value.
    """
    out = {}
    for col, m in ref.items():
        computed = _paper_overall(m)
        if abs(computed - m["overall"]) <= 0.0015:
            continue
        note = (f"{INCONSISTENT} the paper's '{col}' prints overall {m['overall']:.3f}, but its own SST "
                f"{m['sst']:.3f}, PD {m['para']:.3f} and STS {m['sts']:.3f} give (sst + pd + (sts + 1) / 2) / 3 "
                f"= {computed:.4f}")
        for ocol, o in (other or {}).items():
            if (o["para"], o["sts"]) == (m["para"], m["sts"]) and abs(_paper_overall(o) - m["overall"]) <= 0.0015:
                note += (f"; its other table's '{ocol}' has the same PD and STS with SST {o['sst']:.3f}, which gives "
                         f"{_paper_overall(o):.4f}: the SST value is likely transposed")
        out[col] = note + ". Copied as printed."
    return out


def _cell_text(ours: float, paper_v, learned: bool, trained: bool, std=None, n: int = 1, with_paper: bool = True) -> str:
    mark = "" if learned else (f" {UNTRAINED}" if not trained else f" {NOT_LEARNED} did not learn")
    val = _fmt(ours) + (f" ± {std:.3f}" if n > 1 and std is not None and not np.isnan(std) else "")
    return f"{val}{mark} ({_fmt(paper_v)})" if with_paper else f"{val}{mark}"


def _grid_rows(df: pd.DataFrame, rows: list[str], cols: list[str], cell) -> list[str]:
    """Markdown rows of a long table: `cell(row, record)` for each (row, column) present, else blank."""
    out = []
    for r in rows:
        cells = []
        for c in cols:
            hit = df[(df["row"] == r) & (df["column"] == c)]
            cells.append("" if hit.empty else cell(r, hit.iloc[0]))
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    return out


def to_markdown(df: pd.DataFrame, columns: list[str], caption: str, notes: list[str]) -> str:
    """Table 1 as Markdown: cells 'ours (paper)', with the marks of LEGEND."""
    rows = list(dict.fromkeys(df["row"]))
    cols = [c for c in columns if c in set(df["column"])] + [c for c in dict.fromkeys(df["column"]) if c not in columns]
    out = [f"**{caption}** — each cell: ours (paper)", "", "| | " + " | ".join(cols) + " |",
           "|---|" + "---|" * len(cols)]
    def cell(r: str, h: pd.Series) -> str:
        if r.startswith("Default, mean"):
            return f"{h['ours']:.3f} ± {h['seed_std']:.3f}"
        text = _cell_text(h["ours"], h["paper"], bool(h["learned"]), True)
        if not bool(h["learned"]) and bool(h.get("expected_failure", False)):
            text = f"{_fmt(h['ours'])} {EXPECTED} ({_fmt(h['paper'])})"
        if bool(h.get("within_seed_spread", False)) and bool(h["learned"]):
            text = text.replace(" (", f" {WITHIN_SPREAD} (", 1)
        return text

    out += _grid_rows(df, rows, cols, cell)
    out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def metrics_markdown(summary: pd.DataFrame, columns: list[str], caption: str, notes: list[str],
                     inconsistent: tuple[str, ...] = (), with_paper: bool = True) -> str:
    """Tables 2-4 as Markdown: cells 'mean ± std over seeds (paper)', with the marks of LEGEND; without
    the paper's value where it has none (Table 4)."""
    rows = list(dict.fromkeys(summary["row"]))
    cols = [c for c in columns if c in set(summary["column"])]
    cols += [c for c in dict.fromkeys(summary["column"]) if c not in cols]
    out = [f"**{caption}** — each cell: ours, mean ± std over seeds" + (" (paper)" if with_paper else ""), "",
           "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    def cell(r: str, h: pd.Series) -> str:
        text = _cell_text(h["ours"], h["paper"], bool(h["learned"]), bool(h["trained"]), h["std"], int(h["n"]),
                          with_paper)
        if h["metric"] == "overall" and h["column"] in inconsistent:
            text = text[:-1] + f"{INCONSISTENT})"
        return text

    out += _grid_rows(summary, rows, cols, cell)
    n = summary.groupby("column")["n"].max()
    out.append("| seeds | " + " | ".join(str(int(n.get(c, 0))) for c in cols) + " |")
    out += [""] + [f"- {x}" for x in notes]
    return "\n".join(out) + "\n"


SETTINGS = [("checkpoint", "encoder"), ("mode", "mode"), ("lr_finetune", "lr fine-tune"),
            ("lr_pretrain", "lr frozen"), ("batch_size", "batch"), ("epochs", "epochs"),
            ("epoch_rule", "epoch rule"), ("steps_per_epoch", "steps/epoch"), ("head_dropout", "head dropout"),
            ("pooling", "pooling"), ("pair_encoding", "pair encoding"), ("max_length", "max length"),
            ("loss_weights", "loss weights"), ("lstm", "bi-LSTM"), ("task_layers", "task layers")]


def _settings(recs: list[RunRecord]) -> str:
    """What every run of a table used; a setting that varies lists its values."""
    parts = []
    for key, label in SETTINGS:
        vals = list(dict.fromkeys(str(r.cfg.get(key, "")) for r in recs))
        if key == "steps_per_epoch":
            vals = list(dict.fromkeys(str(r.config.get("resolved", {}).get("steps_per_epoch", "?")) for r in recs))
        if key == "loss_weights":
            vals = [v or "none (plain sum)" for v in vals]
        parts.append(f"{label} {'/'.join(vals)}" + (" (varies)" if len(vals) > 1 else ""))
    drawn = list(dict.fromkeys(str(r.metrics.get("steps", 0) * r.cfg["batch_size"]) for r in recs))
    parts.append(f"training examples drawn per task (steps × batch) {'/'.join(drawn)}")
    return ", ".join(parts)


def _notes(study: dict, runs: dict[str, RunRecord], table: int) -> list[str]:
    cells = _cells(study, runs, table)
    if not cells:
        return ["no completed runs"]
    recs = list({id(r): r for _, r in cells}.values())
    train_sizes: dict[str, str] = {}
    dev_sizes: dict[str, set] = {}
    for r in recs:
        for task, splits in r.config["data"].items():
            if "train" in splits:
                train_sizes[task] = f"{task} {splits['train']['used']}/{splits['train']['rows_read']}"
            if "dev" in splits:
                dev_sizes.setdefault(task, set()).add(f"{splits['dev']['used']}/{splits['dev']['rows_read']}")
    seeds = sorted({r.cfg["seed"] for r in recs})
    notes = [f"ours: profile `{study['profile']}`; {_settings(recs)}",
             f"training rows used/in the file: {', '.join(train_sizes.values())}; dev rows evaluated/in the file: "
             + ", ".join(f"{t} {'/'.join(sorted(v))}" for t, v in dev_sizes.items()) + f"; seeds: {seeds}",
             *([f"paper: {paper.PAPER_MODEL}"] if table in (1, 2, 3) else [])]
    if table == 1:
        notes += _table1_changes(cells)
        notes += list(dict.fromkeys(f"'{e['row']}' is expected not to learn: {e['expect_failure']}"
                                    for e, _ in cells if e.get("expect_failure")))
    if table == 4:
        notes.append("not in the paper: every gradient strategy on the Table 2 setting, or the part of it the "
                     "profile's `table4` block says (the settings above); each compared with the summed loss")
    if table in (2, 3):
        for e in study["runs"]:
            if e.get("table") == table and e.get("same_as"):
                notes.append(f"'{e['column']}' is the same configuration as the runs of `{e['same_as']}` "
                             "and reads their records")
        ref, other = (paper.TABLE2, paper.TABLE3) if table == 2 else (paper.TABLE3, paper.TABLE2)
        notes += list(paper_inconsistencies(ref, other).values())
    notes += [f"{m} : {LEGEND[m]}" for m in LEGEND if m in _marks_used(cells, table)]
    missing = [e["name"] for e in study["runs"]
               if e.get("table") == table and not e.get("same_as") and e["name"] not in runs]
    if missing:
        notes.append(f"missing (not complete): {', '.join(missing)}")
    return notes


def _marks_used(cells: list[tuple[dict, RunRecord]], table: int) -> set[str]:
    """The marks a table's cells can carry, for its legend."""
    used = set()
    for e, r in cells:
        for t in r.cfg["tasks"]:
            trained, learned = _learned(r, t)
            if not trained:
                used.add(UNTRAINED)
            elif not learned:
                used.add(EXPECTED if e.get("expect_failure") else NOT_LEARNED)
    return used | ({WITHIN_SPREAD} if table == 1 else set())


def _table1_changes(cells: list[tuple[dict, RunRecord]]) -> list[str]:
    """Per Table 1 row: which settings differ from the Default run of the same column."""
    keys = [k for k, _ in SETTINGS] + ["seed"]
    default = {(r.cfg["mode"], r.cfg["tasks"][0]): r for e, r in cells if e["row"] == "Default"}
    changes: dict[str, set] = {}
    for e, r in cells:
        d = default.get((r.cfg["mode"], r.cfg["tasks"][0]))
        if d is None or e["row"] == "Default":
            continue
        diff = [f"{k} {d.cfg.get(k)!s} → {r.cfg.get(k)!s}" for k in keys if d.cfg.get(k) != r.cfg.get(k)]
        changes.setdefault(e["row"], set()).add(", ".join(diff) or "nothing (same as Default)")
    return [f"'{row}' changes from Default: {'; '.join(sorted(c))}" for row, c in changes.items()]


CAPTIONS = {2: "Table 2: multi-task before and after the multi-task optimisation",
            3: "Table 3: structure optimisations",
            4: "Table 4: every gradient strategy (not in the paper)"}


def _metrics_table(number: int, df: pd.DataFrame, study: dict, runs: dict[str, RunRecord], tables_dir: Path) -> str:
    """Write Table 2, 3 or 4 (long CSV, summary CSV) and return its Markdown, notes included."""
    ref = paper.MULTITASK_TABLES.get(number, {})
    summary = summarize(df)
    atomic_write_text(tables_dir / f"table{number}.csv", df.to_csv(index=False))
    atomic_write_text(tables_dir / f"table{number}_summary.csv", summary.to_csv(index=False))
    notes = _notes(study, runs, number) + target_notes(study, summary, number)
    comp = comparisons(study, summary, number)
    if comp:
        notes.append("differences (mean over seeds) against the seed spread, 2·sqrt(std_a²/n_a + std_b²/n_b): "
                     + " | ".join(comp))
    bad = tuple(paper_inconsistencies(ref, paper.TABLE3 if number == 2 else paper.TABLE2)) if ref else ()
    columns = list(ref) or [e["column"] for e in study["runs"] if e.get("table") == number]
    return metrics_markdown(summary, list(dict.fromkeys(columns)), CAPTIONS[number], notes, bad, bool(ref))


def build_report(study_dir: str | Path, report_dir: str | Path) -> dict[str, list[str]]:
    """Write tables (CSV + Markdown) and figures (PNG + PDF) for a study; returns the paths."""
    import matplotlib.pyplot as plt

    from . import plots

    study, runs = load_study(study_dir)
    report_dir = Path(report_dir)
    tables_dir = report_dir / "tables"
    written: dict[str, list[str]] = {"tables": [], "figures": []}

    def fig(name, f):
        written["figures"] += plots.save(f, report_dir, name)
        plt.close(f)

    planned = {e.get("table") for e in study["runs"]}  # a profile may run some tables only
    t1 = table1(study, runs)
    t2 = table_metrics(2, study, runs)
    tables_dir.mkdir(parents=True, exist_ok=True)
    md: dict[int, str] = {}
    if 1 in planned:
        atomic_write_text(tables_dir / "table1.csv", t1.to_csv(index=False))
        md[1] = to_markdown(t1, paper.TABLE1_COLUMNS, "Table 1: sentiment dev accuracy", _notes(study, runs, 1))
    for number in sorted(planned & {2, 3, 4}):
        df = t2 if number == 2 else table_metrics(number, study, runs)
        md[number] = _metrics_table(number, df, study, runs, tables_dir)
        if number == 4 and len(df):
            t4 = df[df["ours"].notna()].rename(columns={"column": "model", "ours": "value"})
            fig("table4_strategies", plots.dev_metrics(t4.assign(metric=t4["metric"].map(display_label))))
    for number, text in md.items():
        atomic_write_text(tables_dir / f"table{number}.md", text)
        written["tables"] += [str(tables_dir / f"table{number}.csv"), str(tables_dir / f"table{number}.md")]
    atomic_write_text(tables_dir / "report.md", "\n".join(md.values()))

    # curves of one seed per column (the runs with the plan's plain names) keep the figures readable
    t2_runs = [(e["column"], r) for e, r in _cells(study, runs, 2) if r.path.name == e.get("experiment", e["name"])]
    if t2_runs:
        hist = pd.concat([r.history.assign(run=label) for label, r in t2_runs], ignore_index=True)
        fig("learning_curves", plots.learning_curves(hist))
    if len(t2):
        ours = t2[t2["ours"].notna()].rename(columns={"column": "model", "ours": "value"})
        ref = summarize(t2).rename(columns={"column": "model", "paper": "value"})
        fig("dev_metrics", plots.dev_metrics(ours.assign(metric=ours["metric"].map(display_label)),
                                             ref.assign(metric=ref["metric"].map(display_label))))
    t1_runs = t1[t1["run"] != ""]
    if len(t1_runs):
        fig("hyperparameter_effects", plots.hyperparameter_effects(t1_runs))
    tele = [r.telemetry.assign(run=label) for label, r in t2_runs if r.telemetry is not None]
    if tele:
        fig("gradient_conflict_summary", plots.conflict_summary(pd.concat(tele, ignore_index=True)))
    return written
