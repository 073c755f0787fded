"""The report of a `minbert tune` search: the best configuration, each hyperparameter's importance, every
trial as a table, and Optuna's plots as PNG and PDF, all read back from the study's storage."""
from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import optuna

from .atomic import atomic_write_text
from .runs import write_json

COMPLETE = optuna.trial.TrialState.COMPLETE


def importances(study: optuna.Study) -> tuple[dict[str, float], str]:
    """fANOVA importance of each searched hyperparameter on the complete trials' scores (Hutter et al.
    2014, as optuna.importance computes it, seeded), and why there are none where there are none: fewer
    than 2 complete trials, or every one scored the same (nothing to attribute)."""
    import warnings

    scores = [t.value for t in study.trials if t.state == COMPLETE]
    if len(scores) < 2:
        return {}, "needs 2 complete trials"
    if len(set(scores)) == 1:
        return {}, f"every complete trial scored {scores[0]:.4f}: nothing to attribute"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ev = optuna.importance.FanovaImportanceEvaluator(seed=0)
        imp = optuna.importance.get_param_importances(study, evaluator=ev)
    return {k: float(v) for k, v in imp.items()}, ""


def best_record(study: optuna.Study) -> dict[str, Any] | None:
    """The best complete trial: its score, parameters, full TrainConfig and the command that trains it."""
    from .tune import get_preset, trial_config

    if not any(t.state == COMPLETE for t in study.trials):
        return None
    best = study.best_trial
    preset = get_preset(study.user_attrs["profile"])
    cfg = trial_config(preset, best.params, Path("runs"), f"tuned-{best.user_attrs.get('run', best.number)}")
    flags = {**dict(preset.base), **best.params}
    return {"trial": best.number, "run": best.user_attrs.get("run"), "dev_score": best.value,
            "params": best.params, "epochs_reported": {str(k): v for k, v in best.intermediate_values.items()},
            "config": dataclasses.asdict(cfg), "command": train_command(flags)}


def train_command(flags: dict[str, Any]) -> str:
    """The `minbert multitask` command line that trains this configuration."""
    parts = ["minbert", "multitask"]
    for k, v in flags.items():
        v = ",".join(v) if isinstance(v, (tuple, list)) else f"{v:.4g}" if isinstance(v, float) else v
        parts += [f"--{k.replace('_', '-')}", shlex.quote(str(v).lower() if isinstance(v, bool) else str(v))]
    return " ".join(parts)


def write_report(study: optuna.Study, out: Path) -> dict[str, list[str]]:
    """Write best.json, importance.json, trials.csv, report.md and the figures into `out`; their paths
    by kind."""
    import matplotlib.pyplot as plt

    from .plots import save, tune_figures

    out.mkdir(parents=True, exist_ok=True)
    best, (imp, why) = best_record(study), importances(study)
    write_json(out / "best.json", best or {"note": "no complete trial yet"})
    write_json(out / "importance.json", imp or {"note": why})
    atomic_write_text(out / "trials.csv", study.trials_dataframe().to_csv(index=False))
    figures = []
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0) if imp else None
    for name, fig in tune_figures(study, evaluator).items():
        figures += save(fig, out, name)
        plt.close(fig)
    atomic_write_text(out / "report.md", report_text(study, best, imp or why, figures))
    return {"records": [str(out / n) for n in ("best.json", "importance.json", "trials.csv", "report.md")],
            "figures": figures}


def report_text(study: optuna.Study, best: dict | None, imp: dict[str, float] | str, figures: list[str]) -> str:
    """The search in Markdown: trials by state, the best configuration, the importances (or why there are
    none), the figures."""
    states = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    lines = [f"# Hyperparameter search: profile `{study.user_attrs.get('profile')}`", "",
             "Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ".", ""]
    if best is None:
        lines += ["No trial has completed yet.", ""]
    else:
        lines += [f"Best: trial {best['trial']} (`trials/{best['run']}`), dev score {best['dev_score']:.4f} "
                  "(its best epoch's: the overall score, or the mean task metric without one).", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in best["params"].items()]
        lines += ["", "Train it: `" + best["command"] + "`", ""]
    if isinstance(imp, dict):
        lines += ["Importance (fANOVA over the complete trials' scores):", "", "| parameter | importance |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in imp.items()] + [""]
    else:
        lines += [f"Importance: none ({imp}).", ""]
    lines += [f"![{Path(f).stem}]({Path(f).name})" for f in figures if f.endswith(".png")]
    return "\n".join(lines) + "\n"
