"""The study: notebooks are thin and committed clean; `minbert study` runs, resumes, reports failures."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from minbert_core.cli import main
from minbert_core.study import expand, load_plan, run_study

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
FIGURES = ["learning_curves", "dev_metrics", "hyperparameter_effects", "gradient_conflict_summary",
           "gradient_conflict_sst-para"]


def test_six_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["00_sanity", "01_sentiment", "02_multitask", "03_structure",
                                          "04_gradient_conflict", "05_report"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_thin(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "minbert"
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{path.name}: commit notebooks without outputs"
            assert "class " not in c.source and "!pip" not in c.source
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for stmt in ast.parse(params[0].source).body:  # typed literal assignments only
        assert isinstance(stmt, ast.AnnAssign), ast.dump(stmt)
        ast.literal_eval(stmt.value)
    for line in params[0].source.splitlines():
        assert "#" in line, f"{path.name}: parameter without a comment: {line}"


def test_plan_expansion(tmp_path):
    runs = {r.name: r for r in expand(load_plan(), "quick", tmp_path)}
    assert len([r for r in runs.values() if r.table == 1]) == 20
    assert {r.params["strategy"] for r in runs.values() if r.table == 2} == {"single", "sum", "pcgrad"}
    r = runs["t1-lr-flipped-sst-pretrain"]
    assert r.params["lr_pretrain"] == 1e-5 and r.params["checkpoint"] == "minilm-l6"
    assert r.params["run_id"] == r.name and r.params["runs_dir"] == str(tmp_path)
    assert runs["t1-batch-64-sst"].params["batch_size"] == 64  # the grid beats the profile's 16
    structure = [(runs[n].params["lstm"], runs[n].params["task_layers"]) for n in ("t3-pcgrad", "t3-lstm", "t3-lstm-task")]
    assert structure == [(False, 0), (True, 0), (True, 1)]  # explicit, not the notebook's defaults
    assert runs["conflict"].params["run_b"] == str(tmp_path / "t2-pcgrad") and runs["conflict"].needs
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        expand(load_plan(), "fast", tmp_path)


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("study") / "smoke"
    runs = run_study("smoke", out, jobs=2)
    return out, runs


def test_smoke_study_runs_everything_and_reports(smoke_study):
    out, runs = smoke_study
    assert all(r.status == "complete" for r in runs), [(r.name, r.error) for r in runs if r.status != "complete"]
    assert len(runs) == 28  # 20 + 3 + 3 training runs, the explorer, the report
    for r in runs:
        assert (out / r.name / "notebook.ipynb").is_file()
    rep = out / "report"
    for name in ("table1", "table2", "table3"):
        assert (rep / "tables" / f"{name}.csv").is_file()
        md = (rep / "tables" / f"{name}.md").read_text()
        assert "ours (paper)" in md and "profile `smoke`" in md and "random:tiny" in md
    t2 = (rep / "tables" / "table2.md").read_text()
    assert "0.494)" in t2 and "0.759)" in t2  # the paper's overall scores beside ours
    assert "para 24/13507" in t2  # the data sizes used
    for f in FIGURES:
        assert (rep / f"{f}.png").stat().st_size > 10_000 and (rep / f"{f}.pdf").is_file()
    assert json.loads((out / "study.json").read_text())["profile"] == "smoke"


def test_study_resumes_by_skipping_complete_runs(smoke_study):
    out, _ = smoke_study
    again = run_study("smoke", out)
    assert all(r.status == "skipped (complete)" for r in again[:-1]) and again[-1].status == "complete"


def test_failing_notebook_is_reported_and_others_run(tmp_path, data_root, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "profiles:\n  smoke: {common: {checkpoint: 'random:tiny', epochs: 1, train_limit: 16, eval_limit: 16}}\n"
        "experiments:\n"
        "  - {table: 1, notebook: 01_sentiment, name: bad, row: Default, grid: {task: imdb}}\n"
        "  - {table: 1, notebook: 01_sentiment, name: good, row: Default, grid: {task: sst}}\n")
    code = main(["study", "--profile", "smoke", "--plan", str(plan), "--out", str(tmp_path / "s")])
    assert code == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "s" / "bad" / "notebook.ipynb") in err and "unknown task 'imdb'" in err
    assert (tmp_path / "s" / "good" / ".complete").is_file()
    assert (tmp_path / "s" / "report" / "tables" / "table1.md").is_file()
