"""Task knowledge lives in its TaskSpec: a new task is one registry entry (plus its data description)."""
from __future__ import annotations

import dataclasses

import torch

from minbert_core import tasks
from minbert_core.heads import CosineHead, MLPHead, PairDiffHead, build_head


def test_heads_and_labels_come_from_the_spec(monkeypatch):
    assert isinstance(build_head("sts", "bi", 8, 1, 0, 16, 0.0), CosineHead)
    assert isinstance(build_head("para", "bi", 8, 1, 0, 16, 0.0), PairDiffHead)
    assert isinstance(build_head("para", "cross", 8, 1, 0, 16, 0.0), MLPHead)
    # a new pair task: one entry, and the head, labels and prediction format follow
    nli = dataclasses.replace(tasks.TASKS["para"], key="nli", out_dim=3, label="SNLI", short="NLI",
                              format_pred=lambda v: f"<{int(v)}>", bi_head="pair_diff")
    monkeypatch.setitem(tasks.TASKS, "nli", nli)
    head = build_head("nli", "bi", 8, 3, 0, 16, 0.0)
    assert isinstance(head, PairDiffHead) and head(torch.randn(2, 16)).shape == (2, 3)
    assert tasks.display_label("nli") == "SNLI\n(accuracy)" and tasks.display_label("overall") == "overall\nscore"
    assert tasks.get_task("nli").format_pred(2.0) == "<2>"
    assert tasks.get_task("sts").format_pred(3.14159) == "3.1416" and tasks.get_task("sst").format_pred(4.0) == "4"
