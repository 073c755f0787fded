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
