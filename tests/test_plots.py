"""The study's figures draw what they say: every seed a point, runs that did not learn marked, scales
centred on 0 fitted to the data. Each figure on small fabricated frames (no training, no records)."""
from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_core import explorer, plots

matplotlib.use("Agg")


def by_gid(fig, gid: str, kind: str = "collections") -> list:
    """The artists of a figure with a gid, across its axes (collections, lines, patches, texts); for
    containers (error bars), those whose data line has it."""
    def gid_of(a):
        return a.lines[0].get_gid() if isinstance(a, ErrorbarContainer) else getattr(a, "get_gid", lambda: None)()
    return [a for ax in fig.axes for a in getattr(ax, kind) if gid_of(a) == gid]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def hollow(collection) -> int:
    """How many of a scatter's points have no fill."""
    face = collection.get_facecolors()
    return int((face[:, 3] == 0).sum()) if len(face) > 1 else len(collection.get_offsets()) * int(face[0, 3] == 0)


def scores() -> pd.DataFrame:
    """2 metrics x 2 models x 3 seeds; model B did not train 'para', and one seed of A did not learn 'sst'."""
    rows = []
    for model in ("A", "B"):
        for metric in ("sst", "para"):
            for i, seed in enumerate((1, 2, 3)):
                untrained = model == "B" and metric == "para"
                rows.append({"model": model, "metric": metric, "seed": seed, "value": 0.4 + 0.01 * i,
                             "trained": not untrained,
                             "learned": not untrained and not (model == "A" and metric == "sst" and i == 0),
                             "baseline": 0.3})
    return pd.DataFrame(rows)


def test_dev_metrics_draws_every_seed_and_marks_what_did_not_learn():
    df = scores()
    fig = plots.dev_metrics(df)
    seeds = by_gid(fig, "seeds")
    assert sum(len(c.get_offsets()) for c in seeds) == len(df)  # every seed a point
    assert sum(hollow(c) for c in seeds) == int((~df["learned"]).sum())  # 1 not learned + 3 not trained
    hatches = [p.get_hatch() for p in by_gid(fig, "bar", "patches")]
    assert len(hatches) == 4 and hatches.count(plots.NOT_LEARNED_HATCH) == 1
    assert hatches.count(plots.UNTRAINED_HATCH) == 1
    assert len(by_gid(fig, "seed_std", "containers")) == 4  # 3 seeds a cell: a whisker each
    assert {"did not learn", "task not trained", "a seed that did not learn", "one seed"} <= set(legend_texts(fig))


def test_dev_metrics_without_marks_draws_no_mark_legend():
    df = scores().assign(learned=True, trained=True)
    fig = plots.dev_metrics(df, pd.DataFrame({"metric": ["sst"], "model": ["A"], "value": [0.5]}))
    assert all(p.get_hatch() is None for p in by_gid(fig, "bar", "patches"))
    assert "did not learn" not in legend_texts(fig) and "paper (bert-base)" in legend_texts(fig)
    assert len(by_gid(fig, "paper")[0].get_offsets()) == 1


def test_hyperparameter_effects_draws_each_run_and_hatches_a_failed_one():
    t1 = pd.DataFrame({"row": ["Default", "lr", "Default", "lr"], "column": ["F-SST", "F-SST", "F-IMDB", "F-IMDB"],
                       "ours": [0.45, 0.26, 0.9, 0.5], "paper": [0.5, 0.26, 0.97, 0.5], "learned": [True, False, True, False],
                       "baseline": [0.26, 0.26, 0.5, 0.5]})
    fig = plots.hyperparameter_effects(t1)
    assert sum(len(c.get_offsets()) for c in by_gid(fig, "seeds")) == 4
    assert sum(hollow(c) for c in by_gid(fig, "seeds")) == 2
    assert [p.get_hatch() for p in by_gid(fig, "bar", "patches")].count(plots.NOT_LEARNED_HATCH) == 2
    assert len(by_gid(fig, "baseline", "lines")) == 2 and "did not learn" in legend_texts(fig)
    assert "std over seeds" not in legend_texts(fig)  # one run a cell: no whisker drawn, none explained


def test_dev_curves_draw_a_line_per_seed_per_group_and_hollow_for_not_learned():
    rows = []
    for group in ("base", "cls"):
        for col in ("Sum", "PCGrad"):
            for run in ("r1", "r2"):
                for step in (50, 100, 150):
                    rows.append({"group": group, "column": col, "run": f"{group}-{col}-{run}", "step": step,
                                 "metric": "sts", "value": 0.70 + step / 10_000, "baseline": 0.0,
                                 "learned": not (group == "cls" and col == "Sum"), "trained": True})
    fig = plots.dev_curves(pd.DataFrame(rows))
    curves = by_gid(fig, "seed_curve", "lines")
    assert len(curves) == 8 and all(len(c.get_xdata()) == 3 for c in curves)
    assert sum(c.get_markerfacecolor() == "none" for c in curves) == 2
    assert all(ax.get_xlim()[0] == 0 for ax in fig.axes)
    # r = 0 lies far below curves near 0.7: said in text, not drawn as a line squashing them
    assert not by_gid(fig, "baseline", "lines") and len(by_gid(fig, "baseline", "texts")) == 2
    assert all(ax.get_ylim()[0] > 0.6 for ax in fig.axes)


def diffs() -> tuple[pd.DataFrame, pd.DataFrame]:
    d = pd.DataFrame({"label": ["P − S", "I − S", "M − S"], "metric": "overall", "diff": [0.002, -0.004, 0.009],
                      "spread": [0.006, np.nan, 0.003], "compared": [True, True, False],
                      "verdict": ["within the seed spread", "no verdict: fewer than 2 seeds",
                                  "not compared: a run did not learn"]})
    p = pd.DataFrame({"label": ["P − S"] * 3 + ["M − S"] * 2, "metric": "overall",
                      "value": [-0.001, 0.002, 0.011, 0.008, 0.010], "learned": [True] * 3 + [False, True]})
    return d, p


def test_differences_are_drawn_on_a_symmetric_axis_fitted_to_the_data():
    d, p = diffs()
    fig = plots.differences(d, p)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(-hi) and hi == pytest.approx(0.012 * 1.15)  # M: 0.009 + 0.003; not ±1
    bars = by_gid(fig, "difference", "containers")
    assert len(bars) == 3 and [b.has_xerr for b in bars] == [True, False, True]
    marks = [b.lines[0] for b in bars]
    assert [m.get_markerfacecolor() == "none" for m in marks] == [False, False, True]  # not compared: hollow
    assert len(by_gid(fig, "seeds")[0].get_offsets()) == 5 and hollow(by_gid(fig, "seeds")[0]) == 1
    assert "a run did not learn: not compared" in legend_texts(fig)
    assert any("2·sqrt(std_a²/n_a + std_b²/n_b)" in t for t in legend_texts(fig))


def test_differences_of_conditions_label_each_row_with_its_condition():
    d, p = diffs()
    two = pd.concat([d.assign(group="base"), d.assign(group="cls pooling")], ignore_index=True)
    fig = plots.differences(two, pd.concat([p.assign(group="base"), p.assign(group="cls pooling")]))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 6 and labels[3] == "cls pooling:\nP − S"
    assert len(by_gid(fig, "seeds")[0].get_offsets()) == 10


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2, allow_nan=False), min_size=1, max_size=20))
def test_symmetric_limit_reaches_the_largest_magnitude(values):
    lim = plots.symmetric_limit(values + [float("nan")])
    assert lim == pytest.approx(max(max(abs(v) for v in values), 1e-3))


def test_explorer_heatmap_and_histogram_are_scaled_to_the_cosines():
    steps = np.arange(0, 40, 2)
    rows = [{"step": s, "task_a": "sst", "task_b": "sts", "group": g, "cosine": 0.12 * np.sin(s / 5 + k),
             "norm_a": 1.0, "norm_b": 2.0, "projected_a": False, "projected_b": False, "strategy": "sum"}
            for s in steps for k, g in enumerate(("overall", "embeddings", "layer_0"))]
    tele = pd.DataFrame(rows)
    fig, data = explorer.figure({"sum": tele}, "sst / sts")
    top = float(np.abs(data["heatmap"].to_numpy()).max())
    heat = next(ax for ax in fig.axes if ax.get_title().startswith("layer group"))
    mesh = heat.collections[0]
    assert mesh.norm.vmin == pytest.approx(-top) and mesh.norm.vmax == pytest.approx(top) and top < 0.13
    hist = next(ax for ax in fig.axes if ax.get_title() == "distribution of cosines")
    lim = np.abs(tele[tele["group"] == "overall"]["cosine"]).max()
    assert hist.get_xlim() == pytest.approx((-lim, lim))
    assert min(p.get_x() for p in hist.patches) == pytest.approx(-lim)  # the bins span the data, not ±1
