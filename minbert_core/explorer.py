"""The gradient-conflict explorer: figures from a run's telemetry, and the widgets that drive them.

Everything here reads telemetry.csv (cosines and norms per task pair, layer group and step); no
full gradients are stored. The 2-D picture places the two gradients in their own plane from
their norms and cosine, before and after the pairwise PCGrad projection.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .plots import style, symmetric_limit
from .runs import read_telemetry
from .strategies import STRATEGIES

log = logging.getLogger("minbert.explorer")


def telemetry(run: str | Path) -> pd.DataFrame:
    """A run's telemetry table (runs.read_telemetry: a line cut mid-line is left out and logged). A run
    without one is a FileNotFoundError, a damaged one a ValueError, each naming the file."""
    f = Path(run) / "telemetry.csv"
    if not f.is_file():
        why = "not a run folder" if not (Path(run) / "config.json").is_file() else \
            "single-task run, or telemetry_every=0"
        raise FileNotFoundError(f"{f}: not found ({why})")
    tele, problems = read_telemetry(f)
    for p in problems:
        log.warning(p)
    if tele.empty:
        raise ValueError(f"{f}: no telemetry rows; the run recorded none (telemetry_every=0?) or the file is damaged")
    return tele.assign(run=Path(run).name)


def pairs(tele: pd.DataFrame) -> list[str]:
    """Task pairs as 'a / b'."""
    return list(dict.fromkeys(tele["task_a"] + " / " + tele["task_b"]))


_LAYER = re.compile(r"layer_(\d+)")


def _group_order(name: str) -> tuple[int, int, str]:
    """Sort key of a layer group: overall, embeddings, layer_0, layer_1, ..., then any other name
    (pooler, lstm, or one this version does not know) alphabetically. Never fails on a name."""
    layer = _LAYER.fullmatch(name)
    if layer:
        return (2, int(layer.group(1)), name)
    return ({"overall": 0, "embeddings": 1}.get(name, 3), 0, name)


def groups(tele: pd.DataFrame) -> list[str]:
    """Layer groups: overall first, then embeddings, layers in order, then the rest (pooler/lstm, ...)."""
    return sorted(dict.fromkeys(tele["group"].astype(str)), key=_group_order)


def select(tele: pd.DataFrame, pair: str, group: str | None = None, steps: tuple[int, int] | None = None) -> pd.DataFrame:
    """Rows of one task pair (and group, and step range), ordered by step."""
    a, b = pair.split(" / ")
    d = tele[(tele["task_a"] == a) & (tele["task_b"] == b)]
    if group is not None:
        d = d[d["group"] == group]
    if steps is not None:
        d = d[(d["step"] >= steps[0]) & (d["step"] <= steps[1])]
    return d.sort_values("step")


def plane_vectors(norm_a: float, norm_b: float, cosine: float,
                  weights: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """g_a, g_b in their own plane, and the pairwise PCGrad projections (only where cos < 0); with a
    weighting strategy's weights, also w_a g_a + w_b g_b, the pair's part of its step."""
    c = max(-1.0, min(1.0, cosine))
    ga = np.array([norm_a, 0.0])
    gb = np.array([norm_b * c, norm_b * math.sqrt(max(0.0, 1 - c * c))])
    pa, pb = ga.copy(), gb.copy()
    if c < 0:
        pa = ga - (ga @ gb) / (gb @ gb) * gb
        pb = gb - (gb @ ga) / (ga @ ga) * ga
    out = {"g_a": ga, "g_b": gb, "g_a_proj": pa, "g_b_proj": pb, "sum": ga + gb, "sum_proj": pa + pb}
    if weights is not None:
        out["weighted"] = weights[0] * ga + weights[1] * gb
    return out


def _weights(row) -> tuple[float, float] | None:
    """A telemetry row's task weights, where its strategy re-weights the tasks (the registry says
    which: `reweights`; 'single' is a training rule, not a strategy)."""
    cls = STRATEGIES.get(row.get("strategy")) if row is not None else None
    if cls is None or not cls.reweights or "weight_a" not in row:
        return None
    w = (float(row["weight_a"]), float(row["weight_b"]))
    return w if all(math.isfinite(x) for x in w) else None


def panel_data(runs: dict[str, pd.DataFrame], pair: str, group: str, steps: tuple[int, int], step: int) -> dict:
    """Exactly what each panel plots, so it can be checked against the telemetry."""
    curves = {name: select(t, pair, group, steps) for name, t in runs.items()}
    first = next(iter(runs.values()))
    heat = select(first, pair, None, steps).pivot_table(index="group", columns="step", values="cosine")
    heat = heat.reindex([g for g in groups(first) if g in heat.index])
    at = select(first, pair, group)
    at = at.iloc[(at["step"] - step).abs().argsort()[:1]]
    row = at.iloc[0] if len(at) else None
    weights = _weights(row)
    plane = plane_vectors(row["norm_a"], row["norm_b"], row["cosine"], weights) if row is not None else None
    return {"curves": curves, "heatmap": heat, "plane": plane, "plane_strategy": row.get("strategy") if row is not None else None,
            "plane_step": int(row["step"]) if row is not None else None,
            "plane_cosine": float(row["cosine"]) if row is not None else None}


def figure(runs: dict[str, pd.DataFrame], pair: str, group: str = "overall",
           steps: tuple[int, int] | None = None, step: int | None = None) -> tuple[plt.Figure, dict]:
    """The explorer's five panels for one pair and group; returns the figure and its data."""
    style()
    first = next(iter(runs.values()))
    lo, hi = int(first["step"].min()), int(first["step"].max())
    steps = steps or (lo, hi)
    step = step if step is not None else steps[1]
    data = panel_data(runs, pair, group, steps, step)
    fig = plt.figure(figsize=(15, 8))
    gs = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(gs[0, :2])
    for name, d in data["curves"].items():
        line, = ax.plot(d["step"], d["cosine"], label=name, lw=1.5)
        conf = d[d["cosine"] < 0]
        ax.scatter(conf["step"], conf["cosine"], color=line.get_color(), s=14, zorder=3)
        proj = d[d["projected_a"].astype(bool) | d["projected_b"].astype(bool)]
        ax.scatter(proj["step"], proj["cosine"], marker="x", color="black", s=28, zorder=4)
    ax.axhline(0, color="grey", ls="--", lw=1)
    ax.axvline(data["plane_step"] or step, color="tab:red", lw=0.8, alpha=0.6)
    ax.scatter([], [], color="grey", s=14, label="conflict (cos < 0)")
    ax.scatter([], [], marker="x", color="black", label="PCGrad projected")
    ax.set(title=f"gradient cosine, {pair}, {group}", xlabel="training step", ylabel="cosine similarity")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax2 = fig.add_subplot(gs[0, 2])
    _plane(ax2, data, pair)
    ax3 = fig.add_subplot(gs[1, 0])
    if not data["heatmap"].empty:
        # cosines of whole-encoder gradients sit within about ±0.1: a ±1 scale would leave the map blank
        lim = symmetric_limit(data["heatmap"].to_numpy())
        sns.heatmap(data["heatmap"], ax=ax3, cmap="RdBu", vmin=-lim, vmax=lim, cbar_kws={"label": "cosine"},
                    xticklabels=max(1, data["heatmap"].shape[1] // 8))
    ax3.set(title=f"layer group x step ({next(iter(runs))})", xlabel="training step", ylabel="")
    ax4 = fig.add_subplot(gs[1, 1])
    lim = symmetric_limit(pd.concat([d["cosine"] for d in data["curves"].values()]))
    for name, d in data["curves"].items():
        ax4.hist(d["cosine"], bins=20, range=(-lim, lim), alpha=0.5, label=name)
    ax4.set_xlim(-lim, lim)
    ax4.axvline(0, color="grey", ls="--", lw=1)
    ax4.set(title="distribution of cosines", xlabel="cosine similarity", ylabel="steps")
    ax4.legend(fontsize=8)
    ax5 = fig.add_subplot(gs[1, 2])
    a, b = pair.split(" / ")
    for name, d in data["curves"].items():
        ax5.plot(d["step"], d["norm_a"] / d["norm_b"], label=name)
    ax5.axhline(1, color="grey", ls="--", lw=1)
    ax5.set_yscale("log")
    ax5.set(title=f"gradient norm ratio |g_{a}| / |g_{b}|", xlabel="training step", ylabel="ratio (log scale)")
    ax5.legend(fontsize=8)
    fig.tight_layout()
    return fig, data


def _plane(ax, data: dict, pair: str) -> None:
    a, b = pair.split(" / ")
    v = data["plane"]
    if v is None:
        ax.set_axis_off()
        return
    def arrow(vec, color, ls, label):
        ax.annotate("", xy=vec, xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=color, ls=ls, lw=2))
        ax.plot([], [], color=color, ls=ls, label=label)
    arrow(v["g_a"], "tab:blue", "-", f"g_{a}")
    arrow(v["g_b"], "tab:orange", "-", f"g_{b}")
    if data["plane_cosine"] < 0:
        arrow(v["g_a_proj"], "tab:blue", "--", f"g_{a} projected")
        arrow(v["g_b_proj"], "tab:orange", "--", f"g_{b} projected")
    arrow(v["sum"], "grey", "-", "sum")
    if "weighted" in v:  # a re-weighting strategy: its weights on this pair, not PCGrad's surgery
        arrow(v["weighted"], "tab:green", "-", f"{data['plane_strategy']}: w_{a} g_{a} + w_{b} g_{b}")
    else:
        arrow(v["sum_proj"], "black", "--", "sum after PCGrad")
    pts = np.array([p for p in v.values()] + [[0, 0]])
    span = np.abs(pts).max() * 1.15 or 1.0
    ax.set_xlim(-span, span)
    ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set(title=f"step {data['plane_step']}: cos = {data['plane_cosine']:.2f}", xlabel="", ylabel="")
    ax.legend(fontsize=7, loc="lower left")


def save_static(run_a: str | Path, run_b: str | Path | None, folders: list[str | Path], group: str = "overall") -> list[str]:
    """Render the explorer for every task pair of run_a (vs run_b) into each folder (PNG + PDF)."""
    from .plots import save

    runs = {Path(run_a).name: telemetry(run_a)}
    if run_b:
        runs[Path(run_b).name] = telemetry(run_b)
    written = []
    for pair in pairs(runs[Path(run_a).name]):
        fig, _ = figure(runs, pair, group)
        for folder in folders:
            written += save(fig, folder, f"gradient_conflict_{pair.replace(' / ', '-')}")
        plt.close(fig)
    return written


class Explorer:
    """ipywidgets controls wired to `figure`: runs, task pair, layer group, step range, step."""

    def __init__(self, run_dirs: list[str | Path]):
        import ipywidgets as w

        self.run_dirs = {Path(r).name: Path(r) for r in run_dirs}
        self.cache: dict[str, pd.DataFrame] = {}
        names = list(self.run_dirs)
        first = self._tele(names[0])
        lo, hi = int(first["step"].min()), int(first["step"].max())
        self.run_a = w.Dropdown(options=names, value=names[0], description="run")
        self.run_b = w.Dropdown(options=["(none)"] + names, value=names[1] if len(names) > 1 else "(none)",
                                description="compare")
        self.pair = w.Dropdown(options=pairs(first), description="tasks")
        layer_groups = groups(first)  # "overall" first where the run has it
        self.group = w.Dropdown(options=layer_groups, value=layer_groups[0], description="layers")
        self.steps = w.IntRangeSlider(value=(lo, hi), min=lo, max=hi, description="steps", continuous_update=False)
        self.step = w.IntSlider(value=hi, min=lo, max=hi, description="step", continuous_update=False)
        self.out = w.Output()
        self.last: dict | None = None
        self.errors: list[str] = []
        self._adjusting = False
        self.redraws = 0  # figures drawn so far (a run change draws one, not one per control it resets)
        for c in (self.run_a, self.run_b, self.pair, self.group, self.steps, self.step):
            c.observe(self._changed, names="value")
        self.widget = w.VBox([w.HBox([self.run_a, self.run_b]), w.HBox([self.pair, self.group]),
                              w.HBox([self.steps, self.step]), self.out])
        self.update()

    def _tele(self, name: str) -> pd.DataFrame:
        if name not in self.cache:
            self.cache[name] = telemetry(self.run_dirs[name])
        return self.cache[name]

    def _changed(self, change) -> None:
        if self._adjusting:  # the controls being fitted to a new run: one redraw at the end
            return
        if change["owner"] is self.run_a:  # a new run may have other pairs, groups and steps
            t = self._tele(self.run_a.value)
            self._adjusting = True
            try:
                self.pair.options, self.group.options = pairs(t), groups(t)
                lo, hi = int(t["step"].min()), int(t["step"].max())
                self.steps.min, self.steps.max, self.steps.value = lo, hi, (lo, hi)
                self.step.min, self.step.max, self.step.value = lo, hi, hi
            finally:
                self._adjusting = False
        self.update()

    def runs(self) -> dict[str, pd.DataFrame]:
        r = {self.run_a.value: self._tele(self.run_a.value)}
        if self.run_b.value != "(none)" and self.run_b.value != self.run_a.value:
            r[self.run_b.value] = self._tele(self.run_b.value)
        return r

    def update(self) -> None:
        """Redraw for the current control values (what every widget callback calls)."""
        step = min(max(self.step.value, self.steps.value[0]), self.steps.value[1])
        try:
            fig, self.last = figure(self.runs(), self.pair.value, self.group.value, tuple(self.steps.value), step)
        except Exception as e:  # shown in the widget and kept for tests; the UI stays usable
            self.errors.append(f"{type(e).__name__}: {e}")
            self.out.outputs = ()
            self.out.append_stdout(self.errors[-1] + "\n")
            return
        # Set the Output widget's state directly instead of capturing display() in its context
        # manager: same picture in JupyterLab, and headless runners (papermill, nbval) have no
        # output-capture round trip to wait on.
        import io

        from IPython.display import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.out.outputs = ()
        self.out.append_display_data(Image(data=buf.getvalue(), format="png"))
        self.redraws += 1
