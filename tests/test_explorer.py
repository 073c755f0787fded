"""The gradient-conflict explorer: figures from telemetry, widget callbacks driven headless."""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import pytest

from minbert_core import explorer
from minbert_core.train import smoke_config, train


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("conflict")
    common = dict(runs_dir=str(root), data_dir=str(data_root), lr_finetune=1e-3,
                  pooling="cls")  # cls: the pooler is a layer group too
    return str(train(smoke_config(strategy="sum", run_id="sum", **common))), \
        str(train(smoke_config(strategy="pcgrad", run_id="pcgrad", **common)))


def test_plane_vectors_reproduce_cosine_and_projection():
    v = explorer.plane_vectors(2.0, 3.0, -0.4)
    ga, gb = v["g_a"], v["g_b"]
    assert np.linalg.norm(ga) == pytest.approx(2) and np.linalg.norm(gb) == pytest.approx(3)
    assert ga @ gb / 6 == pytest.approx(-0.4)
    assert v["g_a_proj"] @ gb == pytest.approx(0, abs=1e-9) and v["g_b_proj"] @ ga == pytest.approx(0, abs=1e-9)
    same = explorer.plane_vectors(1.0, 1.0, 0.5)
    assert np.allclose(same["sum_proj"], same["sum"])  # no conflict, no projection


def test_figure_data_equals_telemetry(two_runs):
    a, b = two_runs
    runs = {"sum": explorer.telemetry(a), "pcgrad": explorer.telemetry(b)}
    fig, data = explorer.figure(runs, "sst / sts", "layer_1")
    for name, tele in runs.items():
        exp = tele[(tele.task_a == "sst") & (tele.task_b == "sts") & (tele.group == "layer_1")].sort_values("step")
        assert data["curves"][name]["cosine"].tolist() == exp["cosine"].tolist()
    assert list(data["heatmap"].index) == ["overall", "embeddings", "layer_0", "layer_1", "pooler"]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "gradient cosine, sst / sts, layer_1" and "distribution of cosines" in titles
    assert "gradient norm ratio |g_sst| / |g_sts|" in titles and "layer group x step (sum)" in titles
    # the cosine curves drawn are the telemetry's, run by run
    drawn = [line.get_ydata().tolist() for line in fig.axes[0].get_lines() if line.get_label() in runs]
    assert drawn == [data["curves"][n]["cosine"].tolist() for n in runs]


def test_widget_callbacks_headless(two_runs):
    a, b = two_runs
    ex = explorer.Explorer([a, b])
    tele = explorer.telemetry(a)
    for pair in ex.pair.options:
        ex.pair.value = pair
        for group in ("embeddings", "layer_0", "overall"):
            ex.group.value = group
            got = ex.last["curves"]["sum"]["cosine"].tolist()
            assert got == explorer.select(tele, pair, group)["cosine"].tolist()
    ex.steps.value = (3, 6)
    assert ex.last["curves"]["sum"]["step"].between(3, 6).all()
    ex.step.value = 4
    assert ex.last["plane_step"] == 4
    row = explorer.select(tele, ex.pair.value, ex.group.value)
    cos = float(row[row.step == 4]["cosine"].iloc[0])
    ga, gb = ex.last["plane"]["g_a"], ex.last["plane"]["g_b"]
    assert ga @ gb / (np.linalg.norm(ga) * np.linalg.norm(gb)) == pytest.approx(cos, abs=1e-9)
    ex.run_b.value = "(none)"
    assert set(ex.last["curves"]) == {"sum"}
    ex.steps.value = (3, 6)  # narrowed, so the run change below must widen it again
    drawn = ex.redraws
    ex.run_a.value = "pcgrad"
    assert set(ex.last["curves"]) == {"pcgrad"}
    assert ex.redraws == drawn + 1  # one figure for the change, not one per control it resets
    assert ex.steps.value == (ex.steps.min, ex.steps.max) and ex.step.value == ex.steps.max
    assert not ex.errors, ex.errors
    # the summed loss only measures conflicts; PCGrad's projections show up in its own run
    assert not tele[["projected_a", "projected_b"]].astype(bool).any().any()
    pc = explorer.telemetry(b)
    assert pc[["projected_a", "projected_b"]].astype(bool).any().any()


def test_static_figures_saved(two_runs, tmp_path):
    a, b = two_runs
    paths = explorer.save_static(a, b, [tmp_path / "x", tmp_path / "y"])
    assert len(paths) == 3 * 2 * 2  # 3 pairs, PNG + PDF, two folders
    assert all(p.stat().st_size > 5_000 for p in map(Path, paths))
    with pytest.raises(FileNotFoundError, match="not found"):
        explorer.telemetry(tmp_path)  # not a run folder


def test_plane_shows_a_weighting_strategy_s_weights(tmp_path, data_root):
    run = str(train(smoke_config(strategy="mgda-ub", run_id="mgda", runs_dir=str(tmp_path), data_dir=str(data_root))))
    tele = explorer.telemetry(run)
    fig, data = explorer.figure({"mgda": tele}, "sst / para", "overall", step=3)
    row = explorer.select(tele, "sst / para", "overall").set_index("step").loc[data["plane_step"]]
    v = data["plane"]
    assert np.allclose(v["weighted"], row["weight_a"] * v["g_a"] + row["weight_b"] * v["g_b"])
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "mgda-ub: w_sst g_sst + w_para g_para" in labels and "sum after PCGrad" not in labels
    ex = explorer.Explorer([run])
    ex.step.value = 2
    assert not ex.errors, ex.errors


# --- Telemetry read back: any group name, any damage named (fabricated from a committed record; no training) ---

CPU_RUN = Path(__file__).resolve().parent.parent / "results" / "study-cpu" / "t2-sum"


def _run_with_telemetry(folder: Path, edit=lambda text: text) -> Path:
    folder.mkdir(parents=True)
    for f in ("config.json", "metrics.json", "history.csv"):
        shutil.copy(CPU_RUN / f, folder / f)
    head = "".join((CPU_RUN / "telemetry.csv").read_text().splitlines(keepends=True)[:1 + 24 * 4])  # 4 steps
    (folder / "telemetry.csv").write_text(edit(head))
    return folder


def test_any_layer_group_name_is_ordered_not_parsed(tmp_path):
    """Groups the explorer does not know (a new model part, a sub-layer) sort after the layers."""
    renamed = {",embeddings,": ",layer_top,", ",layer_0,": ",layer_10,", ",layer_1,": ",decoder_3,",
               ",layer_2,": ",layer_2,", ",layer_3,": ",lstm,"}

    def edit(text: str) -> str:
        for old, new in renamed.items():
            text = text.replace(old, new)
        return text

    run = _run_with_telemetry(tmp_path / "r", edit)
    tele = explorer.telemetry(run)
    assert explorer.groups(tele) == ["overall", "layer_2", "layer_4", "layer_5", "layer_10", "decoder_3",
                                     "layer_top", "lstm"]
    data = explorer.panel_data({"r": tele}, "sst / sts", "layer_top", (1, 40), 30)  # what the figure draws
    assert list(data["heatmap"].index) == explorer.groups(tele)
    assert data["curves"]["r"]["cosine"].tolist() == explorer.select(tele, "sst / sts", "layer_top")["cosine"].tolist()


def test_a_run_without_an_overall_group_opens_on_its_first(tmp_path):
    run = _run_with_telemetry(tmp_path / "r", lambda t: t.replace(",overall,", ",all_shared,"))
    ex = explorer.Explorer([run])
    assert ex.group.value == "embeddings" and not ex.errors


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.replace(",cosine,", ",cos,", 1), r"telemetry.csv: no column cosine"),
    (lambda t: t.replace(",False,False\n", ",False,False,1\n", 1), r"telemetry.csv: line 2 has 12 fields"),
    (lambda t: "", r"telemetry.csv: no header line"),
])
def test_damaged_telemetry_is_an_error_naming_the_file(tmp_path, edit, match):
    run = _run_with_telemetry(tmp_path / "r", edit)
    with pytest.raises(ValueError, match=match):
        explorer.telemetry(run)


def test_telemetry_cut_mid_line_loses_the_cut_line(tmp_path, caplog):
    run = _run_with_telemetry(tmp_path / "r", lambda t: t[:-9])
    tele = explorer.telemetry(run)
    full = explorer.telemetry(_run_with_telemetry(tmp_path / "whole"))
    assert len(tele) == len(full) - 1
    assert tele["cosine"].tolist() == full["cosine"].tolist()[:-1]  # the cut value is not read as a number
    assert f"{run / 'telemetry.csv'}: line {len(full) + 1} is cut mid-line" in caplog.text


def test_the_explorer_reads_runs_without_the_report_builder():
    tree = ast.parse((Path(explorer.__file__)).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and "report" in m}, imported
