"""The report's judgements: the paper's own slips, differences against the seed spread, stable files."""
from __future__ import annotations

import hashlib
import time

import matplotlib
import pandas as pd
import pytest

from minbert_core import paper, plots
from minbert_core.report import _diff_verdict, paper_inconsistencies
from minbert_core.tasks import beats_trivial

matplotlib.use("Agg")


def test_paper_overall_inconsistency_is_computed_not_typed():
    t2 = paper_inconsistencies(paper.TABLE2, paper.TABLE3)
    assert list(t2) == ["Combined Loss w. Gradient Surgery"]  # the only printed overall that does not add up
    note = t2["Combined Loss w. Gradient Surgery"]
    assert "prints overall 0.759" in note and "= 0.7775" in note
    assert "SST 0.517, which gives 0.7595" in note  # Table 3's Original: same PD and STS
    assert paper_inconsistencies(paper.TABLE3, paper.TABLE2) == {}


def _row(mean, std, n, learned=True):
    return pd.Series({"ours": mean, "std": std, "n": n, "learned": learned})


@pytest.mark.parametrize("a,b,verdict", [
    (_row(0.80, 0.01, 3), _row(0.70, 0.01, 3), "exceeds the seed spread"),
    (_row(0.71, 0.02, 3), _row(0.70, 0.02, 3), "within the seed spread"),
    (_row(0.80, 0.01, 3), _row(0.25, 0.0, 3, learned=False), "not compared: a run did not learn"),
    (_row(0.80, float("nan"), 1), _row(0.70, float("nan"), 1), "no verdict: fewer than 2 seeds"),
])
def test_differences_are_weighed_against_the_seed_spread(a, b, verdict):
    diff, spread, v = _diff_verdict(a, b)
    assert v == verdict and diff == pytest.approx(a["ours"] - b["ours"])
    if spread is not None:  # 2 standard errors of the difference of two means
        assert spread == pytest.approx(2 * (a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"]) ** 0.5)


def test_trivial_baselines_and_margins():
    import torch

    gold = torch.tensor([0, 0, 0, 1] * 25, dtype=torch.float32)  # 75% majority, 100 rows
    b = beats_trivial("para", 0.80, gold)
    assert b["baseline"] == pytest.approx(0.75) and b["margin"] == pytest.approx(2 * (0.75 * 0.25 / 100) ** 0.5)
    assert not b["learned"]  # 0.80 < 0.75 + 0.0866
    assert beats_trivial("para", 0.84, gold)["learned"]
    s = beats_trivial("sts", 0.25, torch.linspace(0, 5, 101))
    assert s["baseline"] == 0.0 and s["margin"] == pytest.approx(0.2) and s["learned"]


def test_an_unchanged_figure_gives_unchanged_files(tmp_path):
    """No creation date in the PDF: re-running a study leaves `git status` clean."""
    digests = []
    for name in ("a", "b"):
        fig = plots.dev_metrics(pd.DataFrame({"metric": ["sst", "para"], "value": [0.4, 0.7], "model": ["m", "m"]}))
        paths = plots.save(fig, tmp_path, name)
        digests.append([hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths])
        time.sleep(1.1)  # a timestamp would differ by now
    assert digests[0] == digests[1]


def test_targets_are_stated_met_or_missed_with_what_was_tried():
    from minbert_core.report import target_notes

    summary = pd.DataFrame([
        {"metric": "overall", "column": "A", "ours": 0.718}, {"metric": "overall", "column": "B", "ours": 0.73},
        {"metric": "sst", "column": "A", "ours": 0.45}])
    study = {"profile": "p", "targets": [{"table": 2, "columns": ["A", "B"], "min": {"overall": 0.72, "sst": 0.4},
                                          "tried": "one setting"}]}
    notes = target_notes(study, summary, 2)
    assert notes[0] == ("targets of profile `p` (mean over seeds): overall ≥ 0.72: A 0.7180 missed by 0.0020, "
                        "B 0.7300 met; sst ≥ 0.4: A 0.4500 met, B: not run")
    assert notes[1] == "tried for the missed target: one setting"
    assert target_notes(study, summary, 3) == []
    study["targets"][0]["min"] = {"sst": 0.4}
    assert len(target_notes(study, summary.iloc[2:], 2)) == 1  # all met: no 'tried' line
    # a study recorded before targets were: the packaged plan's, for its profile
    cpu = target_notes({"profile": "cpu"}, summary.assign(column="Combined Loss"), 2)
    assert cpu and "overall ≥ 0.72: Combined Loss 0.7180 missed by 0.0020" in cpu[0]
