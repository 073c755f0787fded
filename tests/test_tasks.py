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


def test_positive_control_task_is_sst_with_every_label_reversed(data_root):
    """Table 5's sst_rev: SST's own sentences and ids, each label y read as 4 - y, scored like SST."""
    from minbert_core.data import load_split
    from minbert_core.tasks import get_task

    sst, rev = load_split("sst", "dev", root=data_root), load_split("sst_rev", "dev", root=data_root)
    assert [e.id for e in rev.examples] == [e.id for e in sst.examples] and len(rev) == 1101
    assert [e.text_a for e in rev.examples] == [e.text_a for e in sst.examples]
    assert [e.label for e in rev.examples] == [4 - e.label for e in sst.examples]
    assert get_task("sst_rev").out_dim == 5 and get_task("sst_rev").metric_name == "acc"
