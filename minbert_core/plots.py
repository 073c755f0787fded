"""Every figure of the study; each function returns a matplotlib Figure and draws nothing else.

What every figure shares: each seed is a point; a bar or point of a run that did not learn a task is
hatched or hollow (and says so in the legend); scales centred on 0 (cosines, differences) are symmetric
and reach the largest |value| in the data, so a ±0.01 story is not drawn on a ±1 axis.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .tasks import display_label

NOT_LEARNED_HATCH = "///"  # a trained task that did not beat its trivial baseline (report: ✗)
UNTRAINED_HATCH = "..."  # a task the run did not train (report: °)
SEED_MARK = dict(s=22, zorder=4, linewidths=0.9)  # one seed's value
SPREAD_TEXT = "seed spread 2·sqrt(std_a²/n_a + std_b²/n_b)"


def style() -> None:
    """The study's seaborn look."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def symmetric_limit(values, floor: float = 1e-3) -> float:
    """The largest |value| (NaN and inf ignored), at least `floor`: the half-width of a scale centred on 0."""
    v = np.abs(np.asarray(pd.Series(np.ravel(values), dtype=float)))
    v = v[np.isfinite(v)]
    return float(max(v.max(), floor)) if v.size else 1.0


def _flags(d: pd.DataFrame) -> pd.DataFrame:
    """`learned` and `trained` columns, True where a frame has none (a record from before baselines)."""
    return d.assign(**{c: d[c].astype(bool) if c in d else True for c in ("learned", "trained")})


def _hatch(d: pd.DataFrame) -> str | None:
    """A cell's hatch: not trained (every seed), did not learn (any trained seed), or none."""
    if not d["trained"].any():
        return UNTRAINED_HATCH
    return NOT_LEARNED_HATCH if (~d["learned"] & d["trained"]).any() else None


def _seed_offsets(n: int, width: float) -> np.ndarray:
    """Where n seed points sit across a bar of `width`: spread evenly, the same every time."""
    return np.zeros(1) if n <= 1 else np.linspace(-0.3 * width, 0.3 * width, n)


def bar_with_seeds(ax: plt.Axes, pos: float, width: float, d: pd.DataFrame, color, horizontal: bool = False) -> None:
    """One cell: a bar at the mean of its seeds (`value`), whiskers at their std (2 seeds or more), each
    seed a point (hollow where that seed did not learn), the bar hatched where a seed did not learn or
    the task was not trained. `d` has value and optionally learned/trained, a row per seed."""
    d = _flags(d[d["value"].notna()])
    if d.empty:
        return
    mean, std, hatch = d["value"].mean(), d["value"].std(), _hatch(d)
    bar = ax.barh if horizontal else ax.bar
    bar(pos, mean, width, color=color, hatch=hatch, edgecolor="black" if hatch else color, linewidth=0.6,
        alpha=0.55 if hatch else 0.9, gid="bar")
    if len(d) >= 2:
        err = {"xerr" if horizontal else "yerr": std}
        xy = (mean, pos) if horizontal else (pos, mean)
        ax.errorbar(*xy, **err, color="black", capsize=3, lw=1.2, zorder=3, gid="seed_std")
    at = pos + _seed_offsets(len(d), width)
    xy = (d["value"], at) if horizontal else (at, d["value"])
    face = [color if ok else "none" for ok in d["learned"] & d["trained"]]
    ax.scatter(*xy, facecolors=face, edgecolors="black", gid="seeds", **SEED_MARK)


def _mark_handles(d: pd.DataFrame, cell: list[str]) -> list:
    """Legend entries for the seed points, the whiskers (where a cell, rows alike in `cell`, has 2 seeds
    or more) and the marks the drawn cells carry."""
    d = _flags(d)
    out = [Line2D([], [], marker="o", ls="", color="black", markerfacecolor="grey", label="one seed")]
    if len(d) and d.groupby(cell)["value"].count().max() >= 2:
        out.append(Line2D([], [], color="black", lw=1.2, label="std over seeds"))
    if (~d["learned"] & d["trained"]).any():
        out.append(Patch(facecolor="white", edgecolor="black", hatch=NOT_LEARNED_HATCH, label="did not learn"))
    if (~d["learned"]).any():
        out.append(Line2D([], [], marker="o", ls="", color="black", markerfacecolor="none",
                          label="a seed that did not learn"))
    if (~d["trained"]).any():
        out.append(Patch(facecolor="white", edgecolor="black", hatch=UNTRAINED_HATCH, label="task not trained"))
    return out


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


def _baseline_handle() -> Line2D:
    return Line2D([], [], color="grey", ls="--", lw=1.2, label="trivial baseline")


def dev_metrics(scores: pd.DataFrame, paper: pd.DataFrame | None = None) -> plt.Figure:
    """Dev metric per task for each model: a bar at the mean over seeds, each seed a point, the std as
    whiskers, hatched where a seed did not learn; the trivial baseline dashed, the paper's number a black
    tick. `scores`: a row per (metric, model, seed) with `value` and optionally learned, trained, baseline;
    `paper`: metric, model, value."""
    style()
    metrics, models = list(dict.fromkeys(scores["metric"])), list(dict.fromkeys(scores["model"]))
    width = 0.8 / max(len(models), 1)
    colors = dict(zip(models, sns.color_palette(n_colors=len(models))))
    fig, ax = plt.subplots(figsize=(max(9.0, 0.25 * len(metrics) * len(models) + 4), 4))

    def x_of(metric: str, model: str) -> float:
        return metrics.index(metric) - 0.4 + width * (models.index(model) + 0.5)

    for (metric, model), d in scores.groupby(["metric", "model"], sort=False):
        bar_with_seeds(ax, x_of(metric, model), width, d, colors[model])
    handles = [Patch(color=colors[m], label=m) for m in models] + _mark_handles(scores, ["metric", "model"])
    base = scores.groupby("metric", sort=False)["baseline"].mean().dropna() if "baseline" in scores else {}
    for metric, v in dict(base).items():
        i = metrics.index(metric)
        ax.plot([i - 0.45, i + 0.45], [v, v], color="grey", ls="--", lw=1.2, gid="baseline")
    handles += [_baseline_handle()] if len(base) else []
    if paper is not None:
        ref = paper[paper["model"].isin(models) & paper["metric"].isin(metrics) & paper["value"].notna()]
        if len(ref):
            ax.scatter([x_of(m, c) for m, c in zip(ref["metric"], ref["model"])], ref["value"], marker="_",
                       color="black", s=200, linewidths=2.5, zorder=5, gid="paper")
            handles.append(Line2D([], [], marker="_", color="black", ls="", markersize=14, mew=2.5,
                                  label="paper (bert-base)"))
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set(xlabel="", ylabel="dev score (accuracy or Pearson r)",
           ylim=(min(0.0, scores["value"].min() - 0.03), 1))
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def hyperparameter_effects(t1: pd.DataFrame) -> plt.Figure:
    """Table 1 as a picture: dev accuracy per setting, a panel per {mode}-{task}; each run a point on its
    bar (a row holds one run per panel), hatched where it did not learn, the trivial baseline dashed and
    the paper's number a black tick."""
    style()
    cols = list(dict.fromkeys(t1["column"]))
    rows = list(dict.fromkeys(t1["row"]))
    pos = {r: i for i, r in enumerate(rows)}
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols) + 2.5, 0.45 * len(rows) + 1.5), squeeze=False,
                             sharey=True)
    color = sns.color_palette()[0]
    for ax, col in zip(axes[0], cols):
        d = t1[t1["column"] == col].rename(columns={"ours": "value"})
        for row, cell in d.groupby("row", sort=False):
            bar_with_seeds(ax, pos[row], 0.8, cell, color, horizontal=True)
        ax.scatter(d["paper"], d["row"].map(pos), color="black", marker="|", s=150, zorder=5, gid="paper")
        if "baseline" in d and d["baseline"].notna().any():
            ax.axvline(d["baseline"].mean(), color="grey", ls="--", lw=1.2, gid="baseline")
        ax.set(title=col, xlabel="dev accuracy", xlim=(0, 1))
    axes[0][0].set_yticks(range(len(rows)), rows)
    axes[0][0].invert_yaxis()
    marks = _mark_handles(t1.rename(columns={"ours": "value"}), ["column", "row"])
    handles = [Patch(color=color, label="ours"), *marks,
               Line2D([], [], marker="|", ls="", color="black", markersize=12, label="paper (bert-base)")]
    if "baseline" in t1 and t1["baseline"].notna().any():
        handles.append(_baseline_handle())
    axes[0][-1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def _baseline_in_view(ax: plt.Axes, baseline: float) -> None:
    """The trivial baseline dashed where it lies within the data's range; otherwise said in a corner, so
    that a baseline far off (r = 0 under curves near 0.8) does not squash the curves."""
    lo, hi = ax.get_ylim()
    if lo <= baseline <= hi:
        ax.axhline(baseline, color="grey", ls="--", lw=1.2, gid="baseline")
    else:
        where = "below" if baseline < lo else "above"
        ax.text(0.02, 0.03 if where == "below" else 0.93, f"trivial baseline {baseline:.3f} ({where})",
                transform=ax.transAxes, fontsize=7, color="dimgrey", gid="baseline",
                bbox=dict(facecolor="white", alpha=0.7, lw=0, pad=1))


def dev_curves(dev: pd.DataFrame) -> plt.Figure:
    """Dev score against training step: a panel per metric (and a row of panels per `group`, e.g. a
    condition), a colour per column, a line per run (seed), hollow markers where that run's final score
    did not learn; the trivial baseline dashed. Columns are dodged sideways by 0.8% of the last step each,
    so runs scored at the same step stay visible. `dev`: group (optional), column, run, step, metric,
    value and optionally learned, trained, baseline (history.csv's dev rows)."""
    style()
    dev = _flags(dev.assign(group=dev["group"].fillna("")) if "group" in dev else dev.assign(group=""))
    groups, metrics = list(dict.fromkeys(dev["group"])), list(dict.fromkeys(dev["metric"]))
    columns = list(dict.fromkeys(dev["column"]))
    colors = dict(zip(columns, sns.color_palette(n_colors=len(columns))))
    dodge = {c: (i - (len(columns) - 1) / 2) * 0.008 * dev["step"].max() for i, c in enumerate(columns)}
    fig, axes = plt.subplots(len(groups), len(metrics), figsize=(3.8 * len(metrics) + 2.5, 3.0 * len(groups)),
                             squeeze=False)
    for (gi, group), (mi, metric) in ((g, m) for g in enumerate(groups) for m in enumerate(metrics)):
        ax, d = axes[gi][mi], dev[(dev["group"] == group) & (dev["metric"] == metric)]
        for (col, _), run in d.groupby(["column", "run"], sort=False, dropna=False):
            run = run.sort_values("step")
            ok = bool((run["learned"] & run["trained"]).all())
            ax.plot(run["step"] + dodge[col], run["value"], color=colors[col], lw=1.2, marker="o", ms=5,
                    mfc=colors[col] if ok else "none", mec=colors[col], gid="seed_curve")
        ax.set_xlim(0, dev["step"].max() * 1.06)  # from the start of training: when each was scored
        if "baseline" in d and d["baseline"].notna().any():
            _baseline_in_view(ax, d["baseline"].mean())
        ax.set(title=display_label(metric).replace("\n", " ") if gi == 0 else "", xlabel="training step",
               ylabel=textwrap.fill(group, 28) + "\n\ndev score" if group and mi == 0 else "dev score")
    handles = [Line2D([], [], color=colors[c], marker="o", label=c) for c in columns]
    handles.append(Line2D([], [], color="black", lw=0, label="a line per seed"))
    if (~(dev["learned"] & dev["trained"])).any():
        handles.append(Line2D([], [], color="black", marker="o", mfc="none", ls="",
                              label="a seed that did not learn (or not trained)"))
    if "baseline" in dev and dev["baseline"].notna().any():
        handles.append(_baseline_handle())
    axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


VERDICT_COLORS = {"exceeds the seed spread": "tab:red", "within the seed spread": "tab:blue"}  # other: grey


def _difference_handles(diffs: pd.DataFrame) -> list:
    """Legend entries for what a differences figure draws."""
    out = [Line2D([], [], marker="o", color=c, label=f"mean difference, {v}")
           for v, c in VERDICT_COLORS.items() if (diffs["verdict"] == v).any()]
    if diffs["spread"].notna().any():
        out.append(Line2D([], [], marker="|", ms=10, color="black", label=f"error bar: {SPREAD_TEXT}"))
    if (~diffs["verdict"].isin(list(VERDICT_COLORS))).any():
        out.append(Line2D([], [], marker="o", ls="", color="grey", label="no verdict (fewer than 2 seeds a side)"))
    if (~diffs["compared"]).any():
        out.append(Line2D([], [], marker="o", ls="", color="grey", mfc="none",
                          label="a run did not learn: not compared"))
    out.append(Line2D([], [], marker="o", ls="", ms=4, color="black", label="one seed minus the reference's mean"))
    return out


def differences(diffs: pd.DataFrame, points: pd.DataFrame | None = None) -> plt.Figure:
    """Each compared column's difference from its reference (a strategy minus the summed loss), a panel
    per metric: the mean difference as a dot with the seed spread, 2·sqrt(std_a²/n_a + std_b²/n_b), as its
    error bar (red where the difference exceeds it, blue within, grey without a verdict; hollow where a
    run did not learn), each seed of the column minus the reference's mean as a small point. Each x axis
    is symmetric around 0 and reaches the largest |difference| ± spread or seed point.

    `diffs`: group (e.g. a condition; optional), label, metric, diff, spread (NaN: none), verdict,
    compared; `points`: group, label, metric, value (and optionally learned)."""
    style()
    diffs = diffs.assign(group=diffs["group"].fillna("") if "group" in diffs else "")
    points = pd.DataFrame(columns=["group", "label", "metric", "value"]) if points is None else points
    points = _flags(points.assign(group=points["group"].fillna("") if "group" in points else ""))
    rows = list(dict.fromkeys(zip(diffs["group"], diffs["label"])))
    ypos = {k: i for i, k in enumerate(rows)}
    metrics = list(dict.fromkeys(diffs["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 3.5, 0.55 * len(rows) + 1.8),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        d, p = diffs[diffs["metric"] == metric], points[points["metric"] == metric]
        for _, r in d.iterrows():
            color = VERDICT_COLORS.get(r["verdict"], "grey")
            spread = r["spread"] if np.isfinite(r["spread"]) else None
            ax.errorbar(r["diff"], ypos[(r["group"], r["label"])], xerr=spread, fmt="o", ms=7, color=color,
                        mfc=color if r["compared"] else "none", capsize=4, lw=1.5, zorder=4, gid="difference")
        p = p[[k in ypos for k in zip(p["group"], p["label"])]]
        ax.scatter(p["value"], [ypos[k] + 0.2 for k in zip(p["group"], p["label"])], s=14, edgecolors="black",
                   facecolors=["black" if ok else "none" for ok in p["learned"]], zorder=3, gid="seeds")
        reach = pd.concat([d["diff"].abs() + d["spread"].fillna(0), p["value"]])
        lim = symmetric_limit(reach) * 1.15
        ax.set_xlim(-lim, lim)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))
        ax.axvline(0, color="grey", lw=1)
        ax.set(title=display_label(metric).replace("\n", " "), xlabel="difference from the reference")
    axes[0][0].set_yticks(range(len(rows)), [f"{textwrap.fill(g, 30)}:\n{lab}" if g else lab for g, lab in rows])
    axes[0][0].set_ylim(len(rows) - 0.5, -0.5)
    axes[0][-1].legend(handles=_difference_handles(diffs), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
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

    Points whose summed-loss run did not learn every task are ringed (a hollow circle, in the legend).
    """
    style()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    xs = {"dominance": "largest task's share of the\nsummed gradient norms\n(sum run, median over steps)",
          "conflict_rate": "share of steps with a negative\ntask-gradient cosine\n(sum run, every pair)"}
    hollow = points[~points["ref_learned"].astype(bool)] if len(points) else points
    for ax, (col, label) in zip(axes, xs.items()):
        sns.scatterplot(data=points, x=col, y="gain", hue="condition", style="strategy", ax=ax, s=60,
                        legend=ax is axes[-1])
        ax.scatter(hollow[col], hollow["gain"], s=140, facecolors="none", edgecolors="black", linewidths=0.8,
                   gid="not_learned")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set(xlabel=label, ylabel="overall gain over the summed loss")
    if len(points):
        handles, labels = axes[-1].get_legend_handles_labels()
        if len(hollow):
            handles.append(Line2D([], [], marker="o", ls="", ms=11, mfc="none", mec="black"))
            labels.append("its summed-loss run did not learn a task")
        axes[-1].legend(handles, labels, fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
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


def race_curves(race: dict) -> plt.Figure:
    """`minbert bench --race` (format 2): report-half dev overall against cumulative training seconds, every
    seed drawn. Side (b) a line per seed (one point per evaluation); side (a) fp32 and bf16 a point per seed
    at its training time and overall (defined only once its three models exist), a dotted line at each
    side's mean; an x where (b) first reached each (a) side's overall on the selection half."""
    style()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = dict(zip(("b", "fp32", "bf16"), sns.color_palette("colorblind", 3)))
    for i, b in enumerate(race["b"]):
        ax.plot([p["train_time_s"] for p in b["curve"]], [p["report"]["overall"] for p in b["curve"]],
                marker=".", lw=1.2, alpha=0.8, color=colors["b"],
                label=f"(b) minbert multi-task, {b['precision']}" if i == 0 else None)
    for side, mark in (("fp32", "o"), ("bf16", "s")):
        hits = [h for b in race["b"] if (h := b["reached"].get(side))]
        ax.scatter([h["time_s"] for h in hits], [h["report"]["overall"] for h in hits], marker="x", s=40, zorder=5,
                   color=colors[side], label=f"(b) first reaches (a) {side}'s selection-half overall" if hits else None)
        runs = race["a"][side]
        ax.scatter([a["time_s"] for a in runs], [a["report"]["overall"] for a in runs], marker=mark,
                   color=colors[side], label=f"(a) three transformers models, {side}", **SEED_MARK)
        ax.axhline(float(np.mean([a["report"]["overall"] for a in runs])), color=colors[side], ls=":", lw=1)
    ax.set_xlabel("cumulative training time, s")
    ax.set_ylabel("dev overall, report half")
    ax.set_title(f"Time to accuracy, seeds {', '.join(map(str, race['seeds']))} on every side")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small")  # below: no point hidden
    fig.tight_layout()
    return fig
