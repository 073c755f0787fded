"""The report's text: a cell's format and marks, Markdown tables, and the notes that say where the
numbers come from (settings, data sizes, targets, the paper's own slips)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .runs import RunRecord

# Marks written into the tables; LEGEND says what each means on the page itself.
NOT_LEARNED = "✗"  # a trained task whose dev metric did not beat its trivial baseline by the margin
UNTRAINED = "°"  # a task the run did not train on (strategy single): expected not to learn
WITHIN_SPREAD = "†"  # Table 1: differs from the profile's Default by less than the seed spread
EXPECTED = "⊘"  # did not learn, and the plan says why that is expected (a row reproducing a failure)
INCONSISTENT = "‡"  # the paper's printed overall does not follow from its printed metrics
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


def fmt(v: float | None) -> str:
    """A score with 3 decimals; NA where there is none."""
    return "NA" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def cell_text(ours: float, paper_v: float | None, learned: bool, trained: bool, std: float | None = None,
              n: int = 1, with_paper: bool = True, of: int | None = None, count: bool = False) -> str:
    """'mean ± std [n of N seeds] mark (paper)': the seed count where the cell averages fewer seeds than
    its column has (a value left out of a record), or always with `count`."""
    mark = "" if learned else (f" {UNTRAINED}" if not trained else f" {NOT_LEARNED} did not learn")
    val = fmt(ours) + (f" ± {std:.3f}" if n > 1 and std is not None and not np.isnan(std) else "")
    val += f" [{n} of {of} seeds]" if of is not None and (count or n < of) else ""
    return f"{val}{mark} ({fmt(paper_v)})" if with_paper else f"{val}{mark}"


def grid_rows(df: pd.DataFrame, rows: list[str], cols: list[str],
              cell: Callable[[str, pd.DataFrame], str]) -> list[str]:
    """Markdown rows of a long table: `cell(row, records)` for each (row, column) present, else blank."""
    out = []
    for r in rows:
        cells = []
        for c in cols:
            hit = df[(df["row"] == r) & (df["column"] == c)]
            cells.append("" if hit.empty else cell(r, hit))
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    return out


def ordered_columns(present: pd.Series, columns: list[str]) -> list[str]:
    """The columns a table shows: those of `columns` present, in its order (a column split by a setting,
    'Sum (lr_finetune 1e-05)', where its 'Sum' is), then the others as they come."""
    have = list(dict.fromkeys(present))
    cols = list(dict.fromkeys(h for c in columns for h in have if h == c or h.startswith(f"{c} (")))
    return cols + [h for h in have if h not in cols]


def _header(caption: str, what: str, cols: list[str]) -> list[str]:
    return [f"**{caption}** — each cell: {what}", "", "| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]


def _table1_cell(r: str, hit: pd.DataFrame) -> str:
    """A Table 1 cell: one run's value with its marks; a cell of several seeds, their mean ± std and count."""
    h = hit.iloc[0]
    if r.startswith("Default, mean"):
        return f"{h['ours']:.3f} ± {h['seed_std']:.3f}"
    if len(hit) > 1:  # a setting run at several seeds (a profile giving Table 1 seeds)
        ok = hit["ours"].dropna()
        return cell_text(ok.mean(), h["paper"], bool(hit["learned"].all()), True, ok.std(), len(ok), of=len(hit),
                         count=True)
    text = cell_text(h["ours"], h["paper"], bool(h["learned"]), True)
    if not bool(h["learned"]) and bool(h.get("expected_failure", False)):
        text = f"{fmt(h['ours'])} {EXPECTED} ({fmt(h['paper'])})"
    if bool(h.get("within_seed_spread", False)) and bool(h["learned"]):
        text = text.replace(" (", f" {WITHIN_SPREAD} (", 1)
    return text


def table1_markdown(df: pd.DataFrame, columns: list[str], caption: str, notes: list[str]) -> str:
    """Table 1 as Markdown: cells 'ours (paper)', with the marks of LEGEND."""
    cols = ordered_columns(df["column"], columns)
    out = _header(caption, "ours (paper)", cols) + grid_rows(df, list(dict.fromkeys(df["row"])), cols, _table1_cell)
    return "\n".join(out + [""] + [f"- {n}" for n in notes]) + "\n"


def metrics_grid(summary: pd.DataFrame, cols: list[str], seeds: dict[str, int], inconsistent: tuple[str, ...] = (),
                 with_paper: bool = True) -> list[str]:
    """The rows of a multi-task table (a metric a row, 'mean ± std over seeds (paper)' a cell) and its
    seeds row: how many runs each column holds."""
    def cell(r: str, hit: pd.DataFrame) -> str:
        h = hit.iloc[0]
        text = cell_text(h["ours"], h["paper"], bool(h["learned"]), bool(h["trained"]), h["std"], int(h["n"]),
                         with_paper, seeds.get(h["column"]))
        if h["metric"] == "overall" and h["column"] in inconsistent:
            text = text[:-1] + f"{INCONSISTENT})"
        return text

    out = grid_rows(summary, list(dict.fromkeys(summary["row"])), cols, cell)
    return out + ["| seeds | " + " | ".join(str(seeds.get(c, 0)) for c in cols) + " |"]


def metrics_markdown(summary: pd.DataFrame, columns: list[str], caption: str, notes: list[str],
                     seeds: dict[str, int], inconsistent: tuple[str, ...] = (), with_paper: bool = True) -> str:
    """Tables 2-4 as Markdown: cells 'mean ± std over seeds (paper)', with the marks of LEGEND; without
    the paper's value where it has none (Table 4)."""
    cols = ordered_columns(summary["column"], columns)
    out = _header(caption, "ours, mean ± std over seeds" + (" (paper)" if with_paper else ""), cols)
    out += metrics_grid(summary, cols, seeds, inconsistent, with_paper)
    return "\n".join(out + [""] + [f"- {x}" for x in notes]) + "\n"


SETTINGS = [("checkpoint", "encoder"), ("mode", "mode"), ("lr_finetune", "lr fine-tune"),
            ("lr_pretrain", "lr frozen"), ("lr_head", "lr heads (0: lr fine-tune)"),
            ("lr_task_weights", "lr task weights (0: lr heads)"), ("batch_size", "batch"), ("epochs", "epochs"),
            ("epoch_rule", "epoch rule"), ("steps_per_epoch", "steps/epoch"), ("head_dropout", "head dropout"),
            ("pooling", "pooling"), ("pair_encoding", "pair encoding"), ("max_length", "max length"),
            ("loss_weights", "loss weights"), ("lstm", "bi-LSTM"), ("task_layers", "task layers"),
            ("precision", "precision")]


def _resolved(r: RunRecord, key: str) -> str:
    """A setting as the run resolved it: steps per epoch from the epoch rule ('?' in a record without it),
    `auto` precision to fp32 or bf16 (a record from before `auto` gives its configured precision)."""
    fallback = r.cfg.get(key, "?") if key == "precision" else "?"
    return str(r.config.get("resolved", {}).get(key, fallback))


def settings_text(recs: list[RunRecord]) -> str:
    """What every run of a table used, and the processor it ran on; a setting that varies lists its values."""
    parts = []
    for key, label in SETTINGS:
        vals = list(dict.fromkeys(str(r.cfg.get(key, "")) for r in recs))
        if key in ("steps_per_epoch", "precision"):
            vals = list(dict.fromkeys(_resolved(r, key) for r in recs))
        if key == "loss_weights":
            vals = [v or "none (plain sum)" for v in vals]
        parts.append(f"{label} {'/'.join(vals)}" + (" (varies)" if len(vals) > 1 else ""))
    drawn = list(dict.fromkeys(str(r.metrics.get("steps", 0) * r.cfg.get("batch_size", 0)) for r in recs))
    parts.append(f"training examples drawn per task (steps × batch) {'/'.join(drawn)}")
    envs = [r.config.get("environment", {}) for r in recs]  # older GPU records named theirs `gpu`
    devices = dict.fromkeys(e.get("device_name") or e.get("gpu") or "not recorded" for e in envs)
    parts.append(f"processor {'/'.join(devices)}" + (" (varies)" if len(devices) > 1 else ""))
    return ", ".join(parts)


def data_text(recs: list[RunRecord]) -> str:
    """Training and dev rows used of each task's file, and the seeds, over a table's runs."""
    train_sizes: dict[str, str] = {}
    dev_sizes: dict[str, set] = {}
    for r in recs:
        for task, splits in (r.config.get("data") or {}).items():
            if "train" in splits:
                train_sizes[task] = f"{task} {splits['train']['used']}/{splits['train']['rows_read']}"
            if "dev" in splits:
                dev_sizes.setdefault(task, set()).add(f"{splits['dev']['used']}/{splits['dev']['rows_read']}")
    seeds = sorted({r.cfg.get("seed") for r in recs}, key=str)
    return (f"training rows used/in the file: {', '.join(train_sizes.values())}; dev rows evaluated/in the file: "
            + ", ".join(f"{t} {'/'.join(sorted(v))}" for t, v in dev_sizes.items()) + f"; seeds: {seeds}")


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


def _targets(study: dict) -> list[dict]:
    """The profile's targets: recorded in study.json, or (a study recorded before targets were) the
    packaged plan's for that profile."""
    if "targets" in study:
        return study["targets"] or []
    from .study import load_plan

    return load_plan()["profiles"].get(study.get("profile"), {}).get("targets") or []


def target_notes(study: dict, summary: pd.DataFrame, table: int, seeds: dict[str, int] | None = None) -> list[str]:
    """Each target of the profile for this table: the measured mean per column (with its seed count where
    it averages fewer than the column's `seeds`), met or missed by how much, and what the plan says was tried."""
    notes = []
    for t in _targets(study):
        if t.get("table") != table:
            continue
        parts, missed = [], False
        for key, floor in t["min"].items():
            got = []
            for col in t["columns"]:
                row = summary[(summary["metric"] == key) & (summary["column"] == col)]
                if row.empty or pd.isna(row.iloc[0]["ours"]):
                    got.append(f"{col}: not run")
                    continue
                mean, n = float(row.iloc[0]["ours"]), int(row.iloc[0].get("n", 0))
                of = (seeds or {}).get(col, n)
                ok = mean >= floor
                missed |= not ok
                got.append(f"{col} {mean:.4f} " + (f"[{n} of {of} seeds] " if n < of else "")
                           + ("met" if ok else f"missed by {floor - mean:.4f}"))
            parts.append(f"{key} ≥ {floor}: " + ", ".join(got))
        notes.append(f"targets of profile `{study.get('profile')}` (mean over seeds): " + "; ".join(parts))
        if missed and t.get("tried"):
            notes.append(f"tried for the missed target: {t['tried']}")
    return notes
