"""Every figure of the study; each function returns a matplotlib Figure and draws nothing else."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .tasks import display_label



def style() -> None:
    """The study's seaborn look."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def learning_curves(history: pd.DataFrame, smooth: int = 5) -> plt.Figure:
    """Training loss per task over steps, one panel per task, a line per run (`run` column)."""
    style()
    tr = history[history["kind"] == "train"]
    loss_cols = [c for c in tr.columns if c.startswith("loss_")]
    long = tr.melt(id_vars=["run", "step"], value_vars=loss_cols, var_name="task", value_name="loss").dropna()
    long["task"] = long["task"].str.removeprefix("loss_")
    long["loss"] = long.groupby(["run", "task"])["loss"].transform(
        lambda s: s.rolling(smooth, min_periods=1).mean())
    tasks = list(dict.fromkeys(long["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sns.lineplot(data=long[long["task"] == task], x="step", y="loss", hue="run", ax=ax)
        ax.set(title=display_label(task).split("\n")[0], xlabel="training step",
               ylabel=f"training loss ({smooth}-step mean)")
        ax.legend(fontsize=7, title=None)
    fig.tight_layout()
    return fig


def dev_metrics(scores: pd.DataFrame, paper: pd.DataFrame | None = None) -> plt.Figure:
    """Dev metric per task for each model (bars: ours; black markers: the paper's)."""
    style()
    fig, ax = plt.subplots(figsize=(9, 4))
    # bars: mean over seeds, whiskers: their standard deviation; hatched: a run that did not learn
    sns.barplot(data=scores, x="metric", y="value", hue="model", errorbar="sd", ax=ax)
    if "baseline" in scores and scores["baseline"].notna().any():
        base = scores.groupby("metric", sort=False)["baseline"].mean()
        for i, (_, v) in enumerate(base.items()):
            if v == v:
                ax.plot([i - 0.45, i + 0.45], [v, v], color="grey", ls="--", lw=1.2)
        ax.plot([], [], color="grey", ls="--", lw=1.2, label="trivial baseline")
    if paper is not None and len(paper):
        models = list(dict.fromkeys(scores["model"]))
        metrics = list(dict.fromkeys(scores["metric"]))
        width = 0.8 / len(models)
        for _, r in paper.iterrows():
            if r["model"] in models and r["metric"] in metrics:
                x = metrics.index(r["metric"]) - 0.4 + width * (models.index(r["model"]) + 0.5)
                ax.plot(x, r["value"], marker="_", color="black", markersize=14, mew=2.5)
        ax.plot([], [], marker="_", color="black", ls="", markersize=14, mew=2.5, label="paper (bert-base)")
    ax.set(xlabel="", ylabel="dev score (accuracy or Pearson r)", ylim=(min(0, scores["value"].min()), 1))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def hyperparameter_effects(t1: pd.DataFrame) -> plt.Figure:
    """Table 1 as a picture: dev accuracy per setting, a panel per {mode}-{task}, seeds as points."""
    style()
    cols = list(dict.fromkeys(t1["column"]))
    rows = list(dict.fromkeys(t1["row"]))
    pos = {r: i for i, r in enumerate(rows)}
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols) + 2.5, 0.45 * len(rows) + 1.5), squeeze=False,
                             sharey=True)
    for ax, col in zip(axes[0], cols):
        d = t1[t1["column"] == col]
        y = d["row"].map(pos)
        ax.barh(y, d["ours"], color=sns.color_palette()[0], label="ours")
        ax.scatter(d["paper"], y, color="black", marker="|", s=150, zorder=3, label="paper (bert-base)")
        ax.set(title=col, xlabel="dev accuracy", xlim=(0, 1))
    axes[0][0].set_yticks(range(len(rows)), rows)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def conflict_summary(tele: pd.DataFrame, smooth: int = 5) -> plt.Figure:
    """Cosine similarity of task gradients (shared parameters, overall) over training, per task pair."""
    style()
    d = tele[tele["group"] == "overall"].copy()
    d["pair"] = d["task_a"] + " / " + d["task_b"]
    d["cosine"] = d.groupby(["run", "pair"])["cosine"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
    pairs = list(dict.fromkeys(d["pair"]))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.4), squeeze=False, sharey=True)
    for ax, pair in zip(axes[0], pairs):
        sns.lineplot(data=d[d["pair"] == pair], x="step", y="cosine", hue="run", ax=ax)
        ax.axhline(0, color="grey", lw=1, ls="--")
        ax.set(title=pair, xlabel="training step", ylabel=f"gradient cosine ({smooth}-step mean)")
        ax.legend(fontsize=7, title=None)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, folder: str | Path, name: str) -> list[str]:
    """Write a figure as PNG and PDF; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        p = folder / f"{name}.{ext}"
        # no creation date in the PDF: an unchanged figure gives an unchanged file
        fig.savefig(p, dpi=130, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(str(p))
    return out



def mechanism(points: pd.DataFrame) -> plt.Figure:
    """A strategy's overall gain over the summed loss (y) against the sum run's gradient-norm dominance and
    its conflict rate (x), one point per condition, seed and strategy (mechanism.points' frame).

    Points whose summed-loss run did not learn every task are drawn hollow.
    """
    style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    xs = {"dominance": "largest task's share of the summed gradient norms\n(sum run, median over steps)",
          "conflict_rate": "share of steps with a negative task-gradient cosine\n(sum run, every pair)"}
    for ax, (col, label) in zip(axes, xs.items()):
        sns.scatterplot(data=points, x=col, y="gain", hue="condition", style="strategy", ax=ax, s=60,
                        legend=ax is axes[-1])
        hollow = points[~points["ref_learned"]]
        ax.scatter(hollow[col], hollow["gain"], s=140, facecolors="none", edgecolors="black", linewidths=0.8)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(xlabel=label, ylabel="overall gain over the summed loss")
    if len(points):
        axes[-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def tune_figures(study, evaluator=None) -> dict[str, plt.Figure]:
    """Optuna's own plots of a search (optuna.visualization.matplotlib), by name. Those its trials cannot
    draw yet are left out: contours and parallel coordinates need 2 complete trials, the importances an
    `evaluator` (None where they cannot be computed: see tune_report.importances)."""
    import warnings

    import numpy as np
    import optuna
    import optuna.visualization.matplotlib as ov

    kinds = {"optimization_history": ov.plot_optimization_history, "intermediate_values": ov.plot_intermediate_values,
             **({"param_importances": lambda s: ov.plot_param_importances(s, evaluator=evaluator)} if evaluator else {}),
             "slice": ov.plot_slice, "parallel_coordinate": ov.plot_parallel_coordinate, "contour": ov.plot_contour}
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    figs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # matplotlib's, on an axis where every trial has one value
        for name, plot in kinds.items():
            if complete >= (2 if name in ("contour", "parallel_coordinate") else 1):
                figs[name] = np.asarray(plot(study)).flat[0].figure
    return figs
