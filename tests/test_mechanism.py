"""Table 5's mechanism (gradient-norm dominance, conflict rate, when a task learned) and the paper's
did-not-learn cells, computed from records and data files."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from minbert_core import claims, mechanism


def _telemetry(rows):
    """rows: (step, a, b, cosine, norm_a, norm_b) on the shared encoder, plus a layer row to ignore."""
    out = [{"step": s, "group": "overall", "task_a": a, "task_b": b, "cosine": c, "norm_a": na, "norm_b": nb}
           for s, a, b, c, na, nb in rows]
    out.append({"step": 1, "group": "layer_0", "task_a": "sst", "task_b": "sts", "cosine": -1.0,
                "norm_a": 100.0, "norm_b": 100.0})
    return pd.DataFrame(out)


TELE = _telemetry([(1, "sst", "para", 0.5, 1.0, 1.0), (1, "sst", "sts", -0.2, 1.0, 8.0),
                   (1, "para", "sts", -0.1, 1.0, 8.0),
                   (2, "sst", "para", -0.3, 2.0, 1.0), (2, "sst", "sts", 0.1, 2.0, 1.0),
                   (2, "para", "sts", 0.2, 1.0, 1.0)])


def test_dominance_is_the_largest_tasks_share_of_the_summed_norms():
    shares = mechanism.norm_shares(TELE)
    assert shares.loc[1].to_dict() == pytest.approx({"para": 0.1, "sst": 0.1, "sts": 0.8})
    assert shares.loc[2].to_dict() == pytest.approx({"para": 0.25, "sst": 0.5, "sts": 0.25})
    assert mechanism.dominance(TELE) == pytest.approx((0.8 + 0.5) / 2)  # the layer_0 row is not counted


def test_conflict_rate_counts_negative_cosines_per_pair_and_overall():
    assert mechanism.conflict_rates(TELE) == {"para-sts": 0.5, "sst-para": 0.5, "sst-sts": 0.5}
    assert mechanism.conflict_rate(_telemetry([(1, "sst", "para", -0.5, 1, 1), (2, "sst", "para", 0.5, 1, 1),
                                               (3, "sst", "para", -0.1, 1, 1)])) == pytest.approx(2 / 3)


def test_learned_at_is_the_first_dev_step_above_baseline_plus_margin():
    hist = pd.DataFrame({"step": [10, 50, 100, 150], "kind": ["train", "dev", "dev", "dev"],
                         "dev_sst": [None, 0.25, 0.31, 0.40], "dev_para": [None, 0.62, 0.62, 0.61]})
    base = {"sst": {"baseline": 0.26, "margin": 0.03, "trained": True},
            "para": {"baseline": 0.62, "margin": 0.01, "trained": True},
            "sts": {"baseline": 0.0, "margin": 0.05, "trained": False}}
    assert mechanism.learned_at(hist, base) == {"sst": 100, "para": None}


def test_points_pair_each_strategy_with_the_sum_of_its_condition_and_seed():
    def run(overall, learned=True, tele=TELE):
        return SimpleNamespace(metrics={"best_dev": {"overall": overall}, "learned": learned}, telemetry=tele)

    entries = [("a-sum", "A", "Sum", 1), ("a-pc", "A", "PCGrad", 1), ("a-sum-2", "A", "Sum", 2),
               ("a-pc-2", "A", "PCGrad", 2), ("b-pc", "B", "PCGrad", 1)]  # B has no sum run: no point
    study = {"runs": [{"name": n, "table": 5, "row": r, "column": c, "params": {"seed": s}}
                      for n, r, c, s in entries]}
    runs = {"a-sum": run(0.60), "a-pc": run(0.65), "a-sum-2": run(0.70, learned=False), "a-pc-2": run(0.68),
            "b-pc": run(0.9)}
    pts = mechanism.points(study, runs)
    assert pts[["condition", "seed", "strategy"]].values.tolist() == [["A", 1, "PCGrad"], ["A", 2, "PCGrad"]]
    assert pts["gain"].tolist() == pytest.approx([0.05, -0.02])
    assert pts["ref_learned"].tolist() == [True, False]
    summary = mechanism.predictor_summary(pts, "PCGrad", {"A": True})
    assert summary["dominance"]["n"] == 1 and not summary["dominance"]["predicts"]  # one condition: too few


def test_paper_cells_at_a_trivial_baseline_are_marked_from_the_dev_files(data_root):
    marks = {(m["table"], m["column"], m["row"]): m["mark"] for m in claims.paper_marks(data_root)}
    # Table 2: Combined Loss's PD 0.625 is Quora dev's majority share; Original's 0.385 is below it
    assert "class 0's share 0.6247: one class predicted" in marks[(2, "Combined Loss", "PD dev Acc.")]
    assert "nearest: class 1's share 0.3753" in marks[(2, "Original", "PD dev Acc.")]
    assert (2, "Combined Loss w. Gradient Surgery", "PD dev Acc.") not in marks
    assert (1, "Finetune-SST", "lr=1e-5 (pretrain), 1e-3 (finetune)") in marks
    assert (1, "Finetune-SST", "Default") not in marks


def test_claims_of_the_committed_cpu_study_get_their_verdicts_from_the_records():
    from pathlib import Path

    from minbert_core.runs import load_study

    records = load_study(Path(__file__).resolve().parents[1] / "results" / "study-cpu")
    got = {c["claim"]: c for c in claims.claims(records)}
    assert got["Table 1: fine-tuning at lr 1e-3 (the flipped rates) fails"]["verdict"] == "reproduced"
    pc = got["Table 2: PCGrad improves on the summed loss"]
    assert pc["verdict"].startswith("not reproduced") or pc["verdict"].startswith("reproduced only under")
    assert "within the seed spread" in pc["ours"] and "3 vs 3 seeds" in pc["ours"]
    assert got["Table 2: training on all three tasks (summed loss) lifts Quora and STS over SST-only"][
        "verdict"] == "reproduced"
    assert len(got) == 5


def _frame(dom, conf, gain, condition=None):
    """One seed point per condition (the mean is what counts), PCGrad against the sum."""
    return pd.DataFrame({"strategy": "PCGrad", "condition": condition or [f"c{i}" for i in range(len(dom))],
                         "dominance": dom, "conflict_rate": conf, "gain": gain})


def test_a_predictor_counts_only_where_its_correlation_is_significant():
    """scipy's exact Pearson test: a clear linear relation over 6 conditions counts, a perfect one over 3
    does not reach p < 0.05 unless it is exact, and a predictor that does not vary says nothing."""
    from scipy.stats import pearsonr

    dom = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    gain = [0.00, 0.011, 0.019, 0.031, 0.04, 0.046]
    conf = [0.4, 0.3, 0.45, 0.35, 0.42, 0.38]
    found = {f"c{i}": i > 0 for i in range(6)}  # c0's gain of 0 is within its spread
    s = mechanism.predictor_summary(_frame(dom, conf, gain), "PCGrad", found)
    assert s["dominance"]["predicts"] and not s["conflict_rate"]["predicts"]
    assert s["dominance"]["n"] == 6 and s["findings"] == 5 and s["no_verdict"] == 0
    assert s["dominance"]["p"] == pytest.approx(pearsonr(dom, gain).pvalue)
    few = mechanism.predictor_summary(_frame(dom[:3], conf[:3], [0.0, 0.02, 0.01]), "PCGrad", found)
    assert few["dominance"]["n"] == 3 and few["dominance"]["p"] > 0.05 and not few["dominance"]["predicts"]
    flat = mechanism.predictor_summary(_frame([0.7] * 4, conf[:4], gain[:4]), "PCGrad", found)
    assert math.isnan(flat["dominance"]["r"]) and not flat["dominance"]["predicts"]
    # the unit is a condition: two seeds each of three conditions are three points, each the seeds' mean
    seeds = _frame([0.5, 0.52, 0.7, 0.72, 0.9, 0.92], conf, [0.0, 0.02, 0.02, 0.04, 0.04, 0.06],
                   ["a", "a", "b", "b", "c", "c"])
    s = mechanism.predictor_summary(seeds, "PCGrad", {"a": True, "b": True, "c": True})
    assert s["dominance"]["n"] == 3
    assert s["dominance"]["r"] == pytest.approx(pearsonr([0.51, 0.71, 0.91], [0.01, 0.03, 0.05]).statistic)


def test_a_correlation_among_gains_that_are_not_findings_predicts_nothing():
    """The same clear relation, but no condition's gain is a finding (within the spread, or without a
    verdict): significant r, and still no predictor counts."""
    dom = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    gain = [0.00, 0.011, 0.019, 0.031, 0.04, 0.046]
    none_found = {f"c{i}": (False if i % 2 else None) for i in range(6)}
    s = mechanism.predictor_summary(_frame(dom, [0.4] * 6, gain), "PCGrad", none_found)
    assert s["dominance"]["p"] < mechanism.ALPHA and not s["dominance"]["predicts"]
    assert s["findings"] == 0 and s["no_verdict"] == 3


def test_gain_verdicts_follow_the_reports_cells():
    """A gain is a finding where the report's test says it exceeds the seed spread (every seed of each
    column), or where the strategy learned and the sum did not (a rescued collapse); not where it is
    within the spread or the strategy did not learn; no verdict with fewer than 2 seeds."""
    from minbert_core.report_cells import diff_verdict

    def cell(cond, col, mean, std, n, learned=True):
        return {"condition": cond, "row": "overall", "metric": "overall", "column": col, "ours": mean, "std": std,
                "n": n, "learned": learned}

    summary = pd.DataFrame([
        cell("beyond", "Sum", 0.60, 0.005, 3), cell("beyond", "IMTL-G", 0.65, 0.005, 2),
        cell("within", "Sum", 0.60, 0.02, 3), cell("within", "IMTL-G", 0.61, 0.02, 3),
        cell("rescued", "Sum", 0.55, 0.01, 3, learned=False), cell("rescued", "IMTL-G", 0.65, 0.01, 2),
        cell("both-collapsed", "Sum", 0.55, 0.01, 3, False), cell("both-collapsed", "IMTL-G", 0.56, 0.01, 3, False),
        cell("one-seed", "Sum", 0.60, 0.01, 2), cell("one-seed", "IMTL-G", 0.70, float("nan"), 1),
        cell("no-sum", "IMTL-G", 0.7, 0.01, 3)])
    got = mechanism.gain_verdicts(summary, "IMTL-G")
    assert got == {"beyond": True, "within": False, "rescued": True, "both-collapsed": False, "one-seed": None}
    a, b = (summary[(summary["condition"] == "beyond") & (summary["column"] == c)].iloc[0] for c in ("IMTL-G", "Sum"))
    assert diff_verdict(a, b)[2] == "exceeds the seed spread"  # the same test as the report's
