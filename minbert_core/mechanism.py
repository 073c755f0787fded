"""Why a gradient strategy helps or not, from the telemetry each run records (Table 5's mechanism).

Two candidate explanations of a gain over the summed loss (issue 20):
- gradient-norm dominance: one task's gradient on the shared encoder is much larger than the others', so
  the sum follows it (a scale-invariant method such as IMTL-G, or GradNorm, rebalances it);
- conflict: task gradients point against each other (negative cosine), which PCGrad's projection removes.
Both are measured on the summed-loss run of the same condition and seed, on the telemetry group
"overall" (every shared encoder parameter).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

GROUP = "overall"  # telemetry group of every shared encoder parameter


def task_norms(telemetry: pd.DataFrame, group: str = GROUP) -> pd.DataFrame:
    """Each task's gradient norm on the shared encoder per recorded step: a (steps, tasks) frame.

    The telemetry has one row per task pair and step; a task's norm is the same in all its pairs.
    """
    t = telemetry[telemetry["group"] == group]
    long = pd.concat([t[["step", "task_a", "norm_a"]].set_axis(["step", "task", "norm"], axis=1),
                      t[["step", "task_b", "norm_b"]].set_axis(["step", "task", "norm"], axis=1)])
    return long.groupby(["step", "task"])["norm"].first().unstack("task")


def norm_shares(telemetry: pd.DataFrame, group: str = GROUP) -> pd.DataFrame:
    """Each task's share of the summed gradient norms per recorded step (rows sum to 1)."""
    n = task_norms(telemetry, group)
    return n.div(n.sum(axis=1), axis=0)


def dominance(telemetry: pd.DataFrame, group: str = GROUP) -> float:
    """Median over recorded steps of the largest task's share of the summed gradient norms.

    1/T when every task's gradient is as large as the others', near 1 when one task's dominates.
    """
    return float(norm_shares(telemetry, group).max(axis=1).median())


def conflict_rates(telemetry: pd.DataFrame, group: str = GROUP) -> dict[str, float]:
    """Per task pair ('a-b'), the share of recorded steps whose task gradients have a negative cosine."""
    t = telemetry[telemetry["group"] == group]
    return {f"{a}-{b}": float((g["cosine"] < 0).mean()) for (a, b), g in t.groupby(["task_a", "task_b"])}


def conflict_rate(telemetry: pd.DataFrame, group: str = GROUP) -> float:
    """The share of (step, task pair) records with a negative cosine, over every pair."""
    t = telemetry[telemetry["group"] == group]
    return float((t["cosine"] < 0).mean())


def learned_at(history: pd.DataFrame, baselines: Mapping[str, Mapping]) -> dict[str, int | None]:
    """Per task, the first training step at whose dev scoring the task beat its trivial baseline by its
    margin (the report's learned test), or None if it never did."""
    dev = history[history["kind"] == "dev"] if "kind" in history else history
    out = {}
    for task, b in baselines.items():
        col = f"dev_{task}"
        if col not in dev or not b.get("trained", True):
            continue
        above = dev[dev[col] > b["baseline"] + b["margin"]]
        out[task] = int(above["step"].iloc[0]) if len(above) else None
    return out


def points(study: Mapping, runs: Mapping, table: int = 5, reference: str = "Sum") -> pd.DataFrame:
    """One row per (condition, seed, strategy) of `table` whose run and reference-column run both exist.

    Columns: condition, seed, strategy, overall and ref_overall (the two runs' best dev overall scores),
    gain (overall minus ref_overall: same condition and seed), dominance and conflict_rate (of the reference
    run), ref_learned (every task of the reference run learned). `runs` maps run names to records with
    .metrics and .telemetry.
    """
    entries = [e for e in study["runs"] if e.get("table") == table and e["name"] in runs]

    def seed(e):  # the plan's seed, else the run's own record of it
        return (e.get("params") or {}).get("seed", (getattr(runs[e["name"]], "cfg", None) or {}).get("seed"))

    ref = {(e["row"], seed(e)): runs[e["name"]] for e in entries if e["column"] == reference}
    rows = []
    for e in entries:
        key = (e["row"], seed(e))
        if e["column"] == reference or key not in ref or ref[key].telemetry is None:
            continue
        r, s = runs[e["name"]], ref[key]
        gain = r.metrics["best_dev"].get("overall"), s.metrics["best_dev"].get("overall")
        if None in gain:
            continue
        rows.append({"condition": e["row"], "seed": key[1], "strategy": e["column"], "overall": gain[0],
                     "ref_overall": gain[1], "gain": gain[0] - gain[1], "dominance": dominance(s.telemetry),
                     "conflict_rate": conflict_rate(s.telemetry),
                     "ref_learned": bool(s.metrics.get("learned", False))})
    return pd.DataFrame(rows, columns=["condition", "seed", "strategy", "overall", "ref_overall", "gain",
                                       "dominance", "conflict_rate", "ref_learned"])


ALPHA = 0.05  # a predictor counts where its correlation with the gain is significant at this level


def gain_verdicts(summary: pd.DataFrame, strategy: str, reference: str = "Sum",
                  metric: str = "overall") -> dict[str, bool | None]:
    """Per condition, whether the strategy's gain over the reference on `metric` is a finding, by the
    report's own cells (report_cells.summarize by condition, row, metric and column: every seed of each
    column) and its own test (report_cells.diff_verdict, 2 standard errors of the difference of means):

    - True: the difference exceeds the seed spread, or the reference did not learn and the strategy did
      (a rescued collapse, which the report does not weigh with a +-, but which is the clearest gain);
    - False: within the spread, or the strategy did not learn;
    - None: no verdict (fewer than 2 seeds on a side).
    Conditions without both cells are left out."""
    from .report_cells import diff_verdict

    out = {}
    m = summary[summary["metric"] == metric]
    for cond, g in m.groupby("condition", sort=False):
        a, b = g[g["column"] == strategy], g[g["column"] == reference]
        if a.empty or b.empty:
            continue
        a, b = a.iloc[0], b.iloc[0]
        if a["learned"] and not b["learned"]:
            out[cond] = True
        elif not a["learned"]:
            out[cond] = False
        else:
            _, spread, verdict = diff_verdict(a, b)
            out[cond] = None if spread is None else verdict.startswith("exceeds")
    return out


PREDICTORS = ("dominance", "conflict_rate")


def predictor_summary(pts: pd.DataFrame, strategy: str, gains: Mapping[str, bool | None]) -> dict:
    """Pearson r, its two-sided p-value (scipy.stats.pearsonr: the exact test of no correlation under
    normality) and n, between a strategy's gain and each candidate predictor (PREDICTORS), over the
    conditions: each condition's mean over its seeds. A condition, not a seed, is the unit: the predictors
    are properties of a condition, and its seeds' points scatter along the gain axis at almost one x, so
    counting each seed would overstate n.

    `gains` is gain_verdicts' answer for the strategy. A predictor `predicts` the gain where n >= 3
    conditions, p < ALPHA, and at least one condition's gain is a finding: a correlation among
    differences that are all within the seed noise explains nothing. With fewer conditions, or a predictor
    or gain that does not vary, r and p are nan and nothing predicts.

    Returns {predictor: {"r", "p", "n", "predicts"}, "findings": conditions whose gain is a finding,
    "no_verdict": conditions with too few seeds for a verdict}."""
    from scipy.stats import pearsonr

    p = pts[pts["strategy"] == strategy].groupby("condition", sort=False)[["gain", *PREDICTORS]].mean()
    found = sum(1 for c in p.index if gains.get(c) is True)
    out: dict = {"findings": found, "no_verdict": sum(1 for c in p.index if gains.get(c) is None)}
    for col in PREDICTORS:
        n = len(p)
        ok = n >= 3 and p[col].std() > 0 and p["gain"].std() > 0
        r, pv = (float(v) for v in pearsonr(p[col], p["gain"])) if ok else (float("nan"), float("nan"))
        out[col] = {"r": r, "p": pv, "n": n, "predicts": bool(ok and pv < ALPHA and found)}
    return out


def condition_notes(study: Mapping, runs: Mapping, summary: pd.DataFrame, table: int = 5,
                    reference: str = "Sum") -> list[str]:
    """Per condition, what its summed-loss runs' telemetry says (dominance, conflict rate, when each task
    learned, medians over seeds); then which of the two predicts each strategy's gain, with r and n.
    `summary`: the table's cells (report_cells.summarize by condition, row, metric and column), whose
    verdicts decide which gains are findings (gain_verdicts)."""
    ref = [e for e in study["runs"] if e.get("table") == table and e.get("column") == reference
           and e["name"] in runs and runs[e["name"]].telemetry is not None]
    out = []
    for cond in dict.fromkeys(e["row"] for e in ref):
        recs = [runs[e["name"]] for e in ref if e["row"] == cond]
        when = [learned_at(r.history, r.metrics.get("baselines") or {}) for r in recs]
        tasks = list(dict.fromkeys(t for w in when for t in w))
        said = ", ".join(f"{t} {'/'.join('never' if w.get(t) is None else f'at step {w[t]}' for w in when)}"
                         for t in tasks)
        out.append(f"mechanism, {cond} ({reference}, {len(recs)} seed{'s' * (len(recs) > 1)}): the largest task's share of the summed "
                   f"gradient norm {np.median([dominance(r.telemetry) for r in recs]):.2f}, negative cosines on "
                   f"{np.median([conflict_rate(r.telemetry) for r in recs]):.0%} of recorded steps; "
                   f"learned (first dev scoring above baseline + margin, per seed): {said}")
    pts = points(study, runs, table, reference)
    for strategy in dict.fromkeys(pts["strategy"]):
        s = predictor_summary(pts, strategy, gain_verdicts(summary, strategy, reference))
        d, c = s["dominance"], s["conflict_rate"]
        if d["n"] < 3:
            out.append(f"{strategy}'s gain over {reference}: {d['n']} condition(s), too few to say which "
                       "explanation predicts it (3 needed)")
            continue
        found = (f"{s['findings']} with a gain that is a finding (beyond the seed spread, or a rescued collapse)"
                 + (f", {s['no_verdict']} with too few seeds for a verdict" if s["no_verdict"] else ""))
        verdict = (", ".join(k.replace("_", " ") for k in PREDICTORS if s[k]["predicts"]) + " predicts it"
                   if any(s[k]["predicts"] for k in PREDICTORS)
                   else "no gain is a finding, so there is nothing to predict" if not s["findings"]
                   else "neither predicts it")
        out.append(f"{strategy}'s gain over {reference} against the {reference} run's dominance: r = {d['r']:.2f} "
                   f"(p = {d['p']:.2g}), against its conflict rate: r = {c['r']:.2f} (p = {c['p']:.2g}); n = "
                   f"{d['n']} conditions (each the mean over its seeds), {found}; a predictor counts at "
                   f"p < {ALPHA:g} where some gain is a finding: {verdict}")
    return out
