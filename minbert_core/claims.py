"""The paper's claims, each checked against this study's records (issue 20 item 3).

Yang & Dange, "Improving minBERT and Its Downstream Tasks" (CS224N): Table 1's flipped learning rates and
fine-tuning against a frozen encoder, Table 2's combined-loss and PCGrad gains, Table 3's structure changes.
The paper's own cells that sit at a trivial baseline are marked from the dev files (class shares of the full
dev sets), not typed in.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import paper
from .data import load_split

# the paper's metric rows / Table 1 columns -> the task whose dev file scores them
_TABLE1_TASK = {"SST": "sst", "CFIMDB": "cfimdb"}


def class_shares(task: str, root: str | Path | None = None) -> tuple[dict[int, float], int]:
    """Each class's share of a task's full dev set, and its row count (what a constant predictor scores)."""
    labels = pd.Series([e.label for e in load_split(task, "dev", root=root).examples])
    return {int(k): float(v) for k, v in labels.value_counts(normalize=True).sort_index().items()}, len(labels)


def paper_cell_mark(value: float, shares: dict[int, float], n: int) -> str | None:
    """Why a paper accuracy did not learn, or None: it does not beat the majority share by 2 standard
    errors (the report's learned test); where it is also within 2 standard errors of one class's share,
    that class was predicted for every row."""
    major = max(shares.values())
    margin = 2.0 * math.sqrt(major * (1.0 - major) / n)
    if value > major + margin:
        return None
    c, s = min(shares.items(), key=lambda cs: abs(value - cs[1]))
    if abs(value - s) <= 2.0 * math.sqrt(s * (1.0 - s) / n):
        what = f"within 2 s.e. of class {c}'s share {s:.4f}: one class predicted for every row"
    else:
        what = f"not above the majority share {major:.4f} + {margin:.3f}; nearest: class {c}'s share {s:.4f}"
    return f"did not learn ({what}; {n:,} dev rows)"


def paper_marks(root: str | Path | None = None) -> list[dict]:
    """Every paper accuracy cell of Tables 1-3 that did not learn, with the reason from the dev files."""
    shares = {t: class_shares(t, root) for t in ("sst", "cfimdb", "para")}
    out = []
    for row, cols in paper.TABLE1.items():
        for col, v in cols.items():
            task = _TABLE1_TASK[col.split("-")[1]]
            mark = None if v is None else paper_cell_mark(v, *shares[task])
            if mark:
                out.append({"table": 1, "column": col, "row": row, "value": v, "mark": mark})
    for number, table in paper.MULTITASK_TABLES.items():
        for col, cells in table.items():
            for task in ("sst", "para"):
                mark = paper_cell_mark(cells[task], *shares[task])
                if mark:
                    out.append({"table": number, "column": col, "row": paper.METRIC_ROWS[task],
                                "value": cells[task], "mark": mark})
    return out


def marks_markdown(marks: list[dict]) -> list[str]:
    """The paper's did-not-learn cells as Markdown list lines."""
    return [f"- Table {m['table']}, {m['column']}, {m['row']}: {m['value']:.3f}, {m['mark']}" for m in marks]


# --- the paper's claims against our records ---------------------------------------------------------------------

def _summary(records, table: int, condition: str | None = None) -> pd.DataFrame:
    """Mean ± std over seeds per (metric, column) of a table (of one condition's block, for Table 5)."""
    from .report_cells import metric_rows, summarize, table_cells

    cells = [c for c in table_cells(records.study, records.runs, table)
             if condition is None or c[0].get("row") == condition]
    return summarize(metric_rows(cells, {}))


def compare(records, table: int, a: str, b: str, metric: str, condition: str | None = None,
            untrained_ok: bool = False) -> dict | None:
    """Column `a` minus column `b` on `metric`: the difference, its seed spread and the verdict (as the
    report's comparisons), with each side's seed count; None where a side has no runs. `untrained_ok`:
    a side that did not train the task (SST-only training's Quora) is compared as it is."""
    from .report_cells import diff_verdict

    s = _summary(records, table, condition)
    pick = [s[(s["metric"] == metric) & (s["column"] == c)] for c in (a, b)]
    if any(p.empty for p in pick):
        return None
    sides = [p.iloc[0].copy() for p in pick]
    for side in sides:
        side["learned"] = side["learned"] or (untrained_ok and not side["trained"])
    diff, spread, verdict = diff_verdict(*sides)
    return {"diff": diff, "spread": spread, "verdict": verdict, "a": float(pick[0].iloc[0]["ours"]),
            "b": float(pick[1].iloc[0]["ours"]), "n": (int(pick[0].iloc[0]["n"]), int(pick[1].iloc[0]["n"]))}


def _said(c: dict | None, metric: str) -> str:
    if c is None:
        return f"{metric}: no runs yet"
    sp = f", spread ±{c['spread']:.3f}" if c["spread"] is not None else ""
    return f"{metric} {c['b']:.3f} → {c['a']:.3f} ({c['diff']:+.3f}{sp}, {c['n'][1]} vs {c['n'][0]} seeds: {c['verdict']})"


def _gain_verdict(cs: list[dict | None], want: str) -> str:
    """'reproduced' where every comparison exceeds the spread in the wanted direction ('up' or 'none')."""
    done = [c for c in cs if c is not None and c["spread"] is not None]
    if not done:
        return "no verdict yet (runs missing or fewer than 2 seeds)"
    beyond = [c for c in done if c["verdict"] == "exceeds the seed spread"]
    if want == "none":
        return "reproduced (no difference beyond the seed spread)" if not beyond else "not reproduced"
    return "reproduced" if len(beyond) == len(done) and all(c["diff"] > 0 for c in done) else "not reproduced"


def _flipped_rates(records) -> dict:
    """Table 1's flipped learning rates: did our fine-tuning runs at lr 1e-3 learn?"""
    from .report_cells import learned, table_cells

    runs = [(e, r) for e, r in table_cells(records.study, records.runs, 1)
            if str(e.get("row", "")).startswith("lr=") and r.cfg.get("mode") == "finetune"]
    ok = {r.path.name: learned(r, r.cfg["tasks"][0])[1] for _, r in runs}
    verdict = ("no verdict yet (runs missing)" if not ok else
               "reproduced" if not any(ok.values()) else "not reproduced")
    ours = ", ".join(f"{n}: {'learned' if v else 'did not learn'}" for n, v in ok.items()) or "no runs yet"
    return {"claim": "Table 1: fine-tuning at lr 1e-3 (the flipped rates) fails", "paper":
            "Finetune-SST 0.262 and Finetune-CFIMDB 0.502, both at a one-class share (see the marks)",
            "ours": ours, "verdict": verdict}


def claims(records) -> list[dict]:
    """Each claim of the paper with the paper's numbers, ours (difference, seed spread, seeds) and a verdict:
    reproduced, not reproduced, or reproduced only under the Table 5 conditions named."""
    out = [_flipped_rates(records)]
    sum_single = [compare(records, 2, "Combined Loss", "Original", m, untrained_ok=True) for m in ("para", "sts")]
    out.append({"claim": "Table 2: training on all three tasks (summed loss) lifts Quora and STS over SST-only",
                "paper": "PD 0.385 → 0.625 (neither learned: see the marks below), STS 0.130 → 0.557",
                "ours": "; ".join(_said(c, m) for c, m in zip(sum_single, ("para", "sts"))),
                "verdict": _gain_verdict(sum_single, "up")})
    pc = compare(records, 2, "Combined Loss w. Gradient Surgery", "Combined Loss", "overall")
    helped = [cond for cond in dict.fromkeys(e.get("row") for e in records.study["runs"] if e.get("table") == 5)
              if _gain_verdict([compare(records, 5, "PCGrad", "Sum", "overall", cond)], "up") == "reproduced"]
    verdict = _gain_verdict([pc], "up")
    if verdict != "reproduced" and helped:
        verdict = "reproduced only under: " + ", ".join(helped) + " (Table 5)"
    out.append({"claim": "Table 2: PCGrad improves on the summed loss", "paper": "overall 0.641 → 0.759",
                "ours": _said(pc, "overall"), "verdict": verdict})
    for a, b, claim, said in [("With bi-LSTM", "Original", "Table 3: a bi-LSTM on the encoder changes little",
                               "overall 0.759 → 0.757"),
                              ("With bi-LSTM and task specific", "With bi-LSTM",
                               "Table 3: task-specific layers (dropout 0.5) change little", "overall 0.757 → 0.758")]:
        c = compare(records, 3, a, b, "overall")
        out.append({"claim": claim, "paper": said, "ours": _said(c, "overall"), "verdict": _gain_verdict([c], "none")})
    return out


def claims_markdown(records, root: str | Path | None = None, marks: bool = True) -> str:
    """The claims section of the report: a table of claims and (`marks`) the paper's cells that did not
    learn, from the dev files under `root` (FileNotFoundError without them)."""
    lines = ["**The paper's claims, checked** (ours: the mean over seeds; a verdict needs 2 seeds a side and a "
             "difference beyond 2·sqrt(std_a²/n_a + std_b²/n_b))", "", "| claim | paper | ours | verdict |",
             "|---|---|---|---|"]
    lines += [f"| {c['claim']} | {c['paper']} | {c['ours']} | {c['verdict']} |" for c in claims(records)]
    if not marks:
        return "\n".join(lines) + "\n"
    return "\n".join(lines + ["", "The paper's cells at a trivial baseline (from the full dev files' class shares):",
                              ""] + marks_markdown(paper_marks(root))) + "\n"
