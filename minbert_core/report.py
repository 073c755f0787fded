"""Reading run folders and building the study's tables (CSV, Markdown) and figures (PNG, PDF)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import paper
from .atomic import atomic_write_text

TASK_NAME = {"sst": "SST", "cfimdb": "CFIMDB"}


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
        return self.config["config"]


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


def table1(study: dict, runs: dict[str, RunRecord]) -> pd.DataFrame:
    """Long table: setting (row) x {mode}-{task} (column): ours, the paper's, seed spread."""
    rows = []
    for e in study["runs"]:
        if e.get("table") != 1 or e["name"] not in runs:
            continue
        r = runs[e["name"]]
        task = r.cfg["tasks"][0]
        col = f"{r.cfg['mode'].title()}-{TASK_NAME[task]}"
        rows.append({"row": e["row"], "column": col, "ours": r.metrics["best_dev"][task],
                     "paper": paper.TABLE1.get(e["row"], {}).get(col), "seed": r.cfg["seed"], "run": e["name"]})
    df = pd.DataFrame(rows, columns=["row", "column", "ours", "paper", "seed", "run"])
    # Seed spread per column: the default setting and the rows that only change the seed.
    seed_rows = ["Default"] + [r for r in df["row"].unique() if str(r).startswith("seed=")]
    spread = df[df["row"].isin(seed_rows)].groupby("column")["ours"].agg(["mean", "std", "count"])
    df["seed_std"] = df["column"].map(spread["std"])
    default = df[df["row"] == "Default"].set_index("column")["ours"]
    df["diff_vs_default"] = df["ours"] - df["column"].map(default)
    df["within_seed_spread"] = ~df["row"].isin(seed_rows) & (df["diff_vs_default"].abs() < df["seed_std"])
    for col, s in spread.iterrows():
        if s["count"] >= 2:
            rows_mean = {"row": f"Default, mean ± std over {int(s['count'])} seeds", "column": col,
                         "ours": s["mean"], "paper": None, "seed": None, "run": "", "seed_std": s["std"],
                         "diff_vs_default": None, "within_seed_spread": False}
            df = pd.concat([df, pd.DataFrame([rows_mean])], ignore_index=True)
    return df


def table_metrics(number: int, study: dict, runs: dict[str, RunRecord]) -> pd.DataFrame:
    """Tables 2/3, long: metric x model column: ours and the paper's."""
    ref = paper.TABLE2 if number == 2 else paper.TABLE3
    rows = []
    for e in study["runs"]:
        if e.get("table") != number or e["name"] not in runs:
            continue
        best = runs[e["name"]].metrics["best_dev"]
        for key, label in paper.METRIC_ROWS.items():
            rows.append({"row": label, "metric": key, "column": e["column"], "ours": best.get(key),
                         "paper": ref.get(e["column"], {}).get(key), "run": e["name"]})
    return pd.DataFrame(rows, columns=["row", "metric", "column", "ours", "paper", "run"])


def to_markdown(df: pd.DataFrame, columns: list[str], caption: str, notes: list[str]) -> str:
    """A Markdown table: cells 'ours (paper)', '≈' where within the seed spread of the default."""
    rows = list(dict.fromkeys(df["row"]))
    cols = [c for c in columns if c in set(df["column"])] + [c for c in dict.fromkeys(df["column"]) if c not in columns]
    out = [f"**{caption}** — each cell: ours (paper)", "", "| | " + " | ".join(cols) + " |",
           "|---|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            hit = df[(df["row"] == r) & (df["column"] == c)]
            if hit.empty:
                cells.append("")
                continue
            h = hit.iloc[0]
            ours = _fmt(h["ours"])
            if r.startswith("Default, mean"):
                ours = f"{h['ours']:.3f} ± {h['seed_std']:.3f}"
            mark = " ≈" if bool(h.get("within_seed_spread", False)) else ""
            ref = "" if r.startswith("Default, mean") else f" ({_fmt(h['paper'])})"
            cells.append(f"{ours}{mark}{ref}")
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    out += [""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def _notes(study: dict, runs: dict[str, RunRecord], table: int) -> list[str]:
    names = [e["name"] for e in study["runs"] if e.get("table") == table and e["name"] in runs]
    if not names:
        return ["no completed runs"]
    r = max((runs[n] for n in names), key=lambda x: len(x.config["data"]))
    sizes: dict[str, str] = {}
    for n in names:
        for task, splits in runs[n].config["data"].items():
            if "train" in splits:
                sizes[task] = f"{task} {splits['train']['used']}/{splits['train']['rows_read']}"
    missing = [e["name"] for e in study["runs"] if e.get("table") == table and e["name"] not in runs]
    notes = [f"ours: profile `{study['profile']}`, encoder `{r.cfg['checkpoint']}`, epochs {r.cfg['epochs']}, "
             f"max length {r.cfg['max_length']}; training rows used/available: {', '.join(sizes.values())}; "
             f"dev rows evaluated: {r.cfg['eval_limit'] or 'all'} per task",
             f"paper: {paper.PAPER_MODEL}"]
    if table == 1:
        notes.append("≈ : differs from Default by less than the seed spread (std over Default and the seed rows)")
    if missing:
        notes.append(f"missing (not complete): {', '.join(missing)}")
    return notes


def build_report(study_dir: str | Path, report_dir: str | Path) -> dict[str, list[str]]:
    """Write tables (CSV + Markdown) and figures (PNG + PDF) for a study; returns the paths."""
    import matplotlib.pyplot as plt

    from . import plots

    study, runs = load_study(study_dir)
    report_dir = Path(report_dir)
    tables_dir = report_dir / "tables"
    written: dict[str, list[str]] = {"tables": [], "figures": []}
    t1 = table1(study, runs)
    t2, t3 = table_metrics(2, study, runs), table_metrics(3, study, runs)
    md = []
    for name, df, cols, caption, table in (
            ("table1", t1, paper.TABLE1_COLUMNS, "Table 1: sentiment dev accuracy", 1),
            ("table2", t2, list(paper.TABLE2), "Table 2: multi-task before and after the multi-task optimisation", 2),
            ("table3", t3, list(paper.TABLE3), "Table 3: structure optimisations", 3)):
        tables_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(tables_dir / f"{name}.csv", df.to_csv(index=False))
        text = to_markdown(df, cols, caption, _notes(study, runs, table))
        atomic_write_text(tables_dir / f"{name}.md", text)
        md.append(text)
        written["tables"] += [str(tables_dir / f"{name}.csv"), str(tables_dir / f"{name}.md")]
    atomic_write_text(tables_dir / "report.md", "\n".join(md))

    def fig(name, f):
        written["figures"] += plots.save(f, report_dir, name)
        plt.close(f)

    t2_runs = [(e["column"], runs[e["name"]]) for e in study["runs"] if e.get("table") == 2 and e["name"] in runs]
    if t2_runs:
        hist = pd.concat([r.history.assign(run=label) for label, r in t2_runs], ignore_index=True)
        fig("learning_curves", plots.learning_curves(hist))
        ours = t2[t2["ours"].notna()].rename(columns={"column": "model", "ours": "value"})
        ref = t2.rename(columns={"column": "model", "paper": "value"})
        fig("dev_metrics", plots.dev_metrics(ours.assign(metric=ours["metric"].map(plots.TASK_LABEL)),
                                             ref.assign(metric=ref["metric"].map(plots.TASK_LABEL))))
    t1_runs = t1[t1["run"] != ""]
    if len(t1_runs):
        fig("hyperparameter_effects", plots.hyperparameter_effects(t1_runs))
    tele = [r.telemetry.assign(run=label) for label, r in t2_runs if r.telemetry is not None]
    if tele:
        fig("gradient_conflict_summary", plots.conflict_summary(pd.concat(tele, ignore_index=True)))
    return written
