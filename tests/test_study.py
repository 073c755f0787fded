"""The study: notebooks are thin and committed clean; `minbert study` runs, resumes, reports failures."""
from __future__ import annotations

import ast
import collections
import csv
import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from minbert_core.cli import main
from minbert_core.notebook_run import TRAINING_NOTEBOOKS as TRAINING
from minbert_core.plan import expand, load_plan, notebook_parameters
from minbert_core.study import run_study

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
    import papermill

    documented = papermill.inspect_notebook(str(path))  # what `papermill --help-notebook` shows
    assert list(documented) == list(notebook_parameters(path)), f"{path.name}: papermill cannot parse a line"
    assert all(p["help"] for p in documented.values())


def test_plan_expansion(tmp_path):
    runs = {r.name: r for r in expand(load_plan(), "quick", tmp_path)}
    assert len([r for r in runs.values() if r.table == 1]) == 20
    assert {r.params["strategy"] for r in runs.values() if r.table == 2} == {"single", "sum", "pcgrad"}
    default, flipped = runs["t1-default-sst-pretrain"].params, runs["t1-lr-flipped-sst-pretrain"].params
    assert (flipped["lr_pretrain"], flipped["lr_finetune"]) == (default["lr_finetune"], default["lr_pretrain"])
    assert flipped["checkpoint"] == "minilm-l6"
    assert flipped["run_id"] == "t1-lr-flipped-sst-pretrain" and flipped["runs_dir"] == str(tmp_path)
    assert runs["t1-batch-64-sst"].params["batch_size"] == 64  # the grid beats the profile
    structure = [(runs[n].params["lstm"], runs[n].params["task_layers"]) for n in ("t3-lstm", "t3-lstm-task")]
    assert structure == [(True, 0), (True, 1)]  # explicit, not the notebook's defaults
    assert runs["t3-pcgrad"].same_as == "t2-pcgrad" and not runs["t3-pcgrad"].params
    assert runs["conflict"].params["run_b"] == str(tmp_path / "t2-pcgrad") and runs["conflict"].needs
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        expand(load_plan(), "fast", tmp_path)


def _dry_run_json(profile, capsys) -> list[dict]:
    assert main(["study", "--profile", profile, "--dry-run", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("profile,checkpoint,max_length", [("full", "minilm-l6", 512),
                                                           ("paper", "bert-base-uncased", 512)])
def test_full_and_paper_profiles_run_what_they_say(profile, checkpoint, max_length, capsys):
    """Every training run: all rows, 10 epochs, the original project's batch and learning rates."""
    runs = [r for r in _dry_run_json(profile, capsys) if r["notebook"] in TRAINING]
    assert len(runs) == 37  # Table 1: 20, Table 2: 3, Table 3: 2, Table 4: 12
    for r in runs:
        p = r["params"]
        assert (p["checkpoint"], p["train_limit"], p["eval_limit"], p["epochs"]) == (checkpoint, 0, 0, 10), r
        assert p["max_length"] == max_length and p["head_dropout"] in (0.3, 0.1, 0.5)
        lrs = (p["lr_pretrain"], p["lr_finetune"])
        assert lrs == ((1e-5, 1e-3) if r["name"].startswith("t1-lr-flipped") else (1e-3, 1e-5)), r["name"]
        batch = {"t1-batch-16": 16, "t1-batch-64": 64}.get(r["name"].rsplit("-", 1)[0], 8)
        if profile == "paper" and r["notebook"] == "03_structure":
            batch = 4  # the report dropped to batch 4 for the bi-LSTM models
        assert p["batch_size"] == batch, r["name"]
        assert p.get("dev_limits", "") == "" and p.get("loss_weights", "") == ""  # the plain sum
    assert {r["params"]["pooling"] for r in runs} == {"cls" if profile == "paper" else "mean"}


@pytest.mark.parametrize("profile", ["smoke", "quick", "cpu", "full", "paper"])
def test_each_table1_row_changes_one_thing_from_default(profile, tmp_path):
    runs = [r for r in expand(load_plan(), profile, tmp_path) if r.table == 1]
    default = {(r.params["task"], r.params["mode"]): r.params for r in runs if r.row == "Default"}
    for r in runs:
        if r.row == "Default":
            continue
        d = default[(r.params["task"], r.params["mode"])]
        diff = sorted(k for k in d if k != "run_id" and d[k] != r.params[k])
        assert diff in (["batch_size"], ["head_dropout"], ["seed"], ["lr_finetune", "lr_pretrain"]), (r.name, diff)
        if diff == ["lr_finetune", "lr_pretrain"]:  # flipped, whatever the profile's rates are
            assert (r.params["lr_pretrain"], r.params["lr_finetune"]) == (d["lr_finetune"], d["lr_pretrain"])


def test_cpu_profile_has_three_seeds_per_column_all_rows(tmp_path):
    runs = expand(load_plan(), "cpu", tmp_path)
    cols = collections.defaultdict(set)
    for r in runs:
        if r.table in (2, 3) and r.same_as is None:
            cols[r.column].add(r.params["seed"])
            assert r.params["train_limit"] == 0 and r.params["eval_limit"] == 0
            assert "para=5000" in r.params["dev_limits"]
    assert len(cols) == 5 and all(len(s) == 3 for s in cols.values())
    first = [r.name for r in runs[:5]]  # every column once before any repeats
    assert first == ["t2-single", "t2-sum", "t2-pcgrad", "t3-lstm", "t3-lstm-task"]


@pytest.mark.parametrize("profile,setting_of", [("smoke", "smoke"), ("strategies", "quick"), ("cpu", "cpu"),
                                                ("full", "full"), ("paper", "paper")])
def test_table4_runs_every_strategy_on_the_table2_setting_or_its_documented_subset(profile, setting_of, tmp_path):
    """Table 4's runs differ from the Table 2 summed-loss run of `setting_of` in the strategy, the seed
    and what the profile's `table4` block says, and in nothing else."""
    from minbert_core.strategies import STRATEGIES

    plan = load_plan()
    t2 = next(r.params for r in expand(plan, setting_of, tmp_path) if r.name == "t2-sum")
    t4 = [r for r in expand(plan, profile, tmp_path) if r.table == 4]
    seeds = 3 if profile == "cpu" else 1
    assert sorted(r.params["strategy"] for r in t4) == sorted(list(STRATEGIES) * seeds)
    assert {r.compare_to for r in t4} == {None, "t4-sum"}
    subset = plan["profiles"][profile].get("table4", {})
    for r in t4:
        diff = {k for k in t2 if k not in ("run_id", "strategy", "seed") and t2[k] != r.params[k]}
        assert diff <= set(subset) and all(r.params[k] == subset[k] for k in diff), (r.name, diff)
    if profile == "cpu":
        assert {r.params["steps_per_epoch"] for r in t4} == {150} and not any(r.params["predict_test"] for r in t4)


def test_a_profile_runs_the_tables_it_lists(tmp_path):
    """quick leaves Table 4 to the `strategies` profile (time); the explorer runs where its runs do."""
    quick = expand(load_plan(), "quick", tmp_path)
    assert {r.table for r in quick} == {1, 2, 3, None} and "conflict" in [r.name for r in quick]
    strategies = expand(load_plan(), "strategies", tmp_path)
    assert {r.table for r in strategies} == {4}  # no Table 2 runs to read: no explorer


def test_plan_errors_name_the_key(tmp_path):
    base = "profiles:\n  p: {common: {checkpoint: 'random:tiny'}}\nexperiments:\n"
    plan = yaml.safe_load(base + "  - {notebook: 02_multitask, name: x, grid: {strategy: sum, epochz: 3}}\n")
    with pytest.raises(ValueError, match=r"experiments\[0\] \(x\)\.grid\.epochz: not a parameter of notebook 02_multitask"):
        expand(plan, "p", tmp_path)
    plan = yaml.safe_load(base + "  - {notebook: 01_sentiment, name: x, grid: {mode: finetune}}\n")
    with pytest.raises(ValueError, match="leaves task unset"):
        expand(plan, "p", tmp_path)
    plan = yaml.safe_load(base + "  - {notebook: 02_multitask, name: x, grid: {strategy: mgda}}\n")
    with pytest.raises(ValueError, match="strategy must be one of"):
        expand(plan, "p", tmp_path)


def test_dry_run_table_runs_nothing(tmp_path, capsys):
    assert main(["study", "--profile", "paper", "--dry-run", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "bert-base-uncased" in out and "t1-lr-flipped-sst-pretrain" in out and "reads the runs of t2-pcgrad" in out
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def smoke_study(data_root):
    """A fresh smoke study in runs/study-smoke, where 05_report (run by nbval after tests/) reads it
    instead of running the study a second time."""
    import shutil

    out = Path(__file__).resolve().parent.parent / "runs" / "study-smoke"
    shutil.rmtree(out, ignore_errors=True)
    runs = run_study("smoke", out, jobs=2)
    return out, runs


def test_smoke_study_runs_everything_and_reports(smoke_study):
    out, runs = smoke_study
    assert all(r.status in ("complete", "same as t2-pcgrad") for r in runs), \
        [(r.name, r.error) for r in runs if r.status != "complete"]
    # 20 + 3 + 2 + 12 training runs, Table 3's Original (Table 2's PCGrad), explorer, report
    assert len(runs) == 40
    for r in runs:
        assert r.same_as or (out / r.name / "notebook.ipynb").is_file()
    rep = out / "report"
    for name in ("table1", "table2", "table3"):
        assert (rep / "tables" / f"{name}.csv").is_file()
        md = (rep / "tables" / f"{name}.md").read_text()
        assert "(paper)" in md and "profile `smoke`" in md and "random:tiny" in md
        assert "lr fine-tune" in md and "batch" in md and "pooling" in md and "seeds:" in md
    t2 = (rep / "tables" / "table2.md").read_text()
    assert "(0.494)" in t2 and "(0.641)" in t2  # the paper's overall scores beside ours
    assert "prints overall 0.759" in t2 and "= 0.7775" in t2 and "0.759‡)" in t2  # the paper's own slip, computed
    assert "SST 0.517, which gives 0.7595" in t2
    assert "✗ did not learn" in t2 and "did not learn: a trained task" in t2  # tiny random BERT learns nothing
    assert "°" in t2  # single's untrained para and sts
    assert "'Original' is the same configuration as the runs of `t2-pcgrad`" in (rep / "tables" / "table3.md").read_text()
    assert "para 24/13507" in t2  # the data sizes used
    t4 = (rep / "tables" / "table4.md").read_text()  # every strategy, each against the summed loss
    from minbert_core.strategies import STRATEGIES

    columns = t4.splitlines()[2].split(" | ")[1:]
    assert len(columns) == len(STRATEGIES) and "(paper)" not in t4 and "profile `smoke`" in t4
    assert t4.count("vs **Sum**") == len(STRATEGIES) - 1
    with open(rep / "tables" / "table4.csv") as f:
        t4_runs = {row["run"] for row in csv.DictReader(f)}
    assert sorted(t4_runs) == sorted(f"t4-{s}" for s in STRATEGIES)
    assert (rep / "table4_strategies.png").stat().st_size > 10_000
    for f in FIGURES:
        assert (rep / f"{f}.png").stat().st_size > 10_000 and (rep / f"{f}.pdf").is_file()
    assert json.loads((out / "study.json").read_text())["profile"] == "smoke"


def test_explorer_selects_and_draws_every_strategy_of_table4(smoke_study):
    """The explorer's run selector and its 2-D picture, on the smoke study's Table 4 run of every strategy."""
    from minbert_core import explorer
    from minbert_core.strategies import STRATEGIES

    out, _ = smoke_study
    ex = explorer.Explorer([out / f"t4-{s}" for s in STRATEGIES])
    ex.run_b.value = "(none)"
    for s in STRATEGIES:
        ex.run_a.value = f"t4-{s}"
        ex.step.value = ex.step.min
        assert not ex.errors, (s, ex.errors)
        assert list(ex.last["curves"]) == [f"t4-{s}"] and ex.last["plane_strategy"] == s
        assert ex.last["plane"] is not None and len(ex.last["curves"][f"t4-{s}"]) > 0


def test_study_resumes_by_skipping_complete_runs(smoke_study):
    out, _ = smoke_study
    again = run_study("smoke", out)
    assert all(r.status == "skipped (complete)" for r in again[:-1] if not r.same_as)
    assert again[-1].status == "complete"


def test_failing_notebook_is_reported_and_others_run(tmp_path, data_root, capfd):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "profiles:\n  smoke: {common: {checkpoint: 'random:tiny', epochs: 1, train_limit: 16, eval_limit: 16}}\n"
        "experiments:\n"
        "  - {table: 1, notebook: 01_sentiment, name: bad, row: Default, grid: {task: imdb}}\n"
        "  - {table: 1, notebook: 01_sentiment, name: good, row: Default, grid: {task: sst}}\n")
    code = main(["study", "--profile", "smoke", "--plan", str(plan), "--out", str(tmp_path / "s")])
    assert code == 1
    out, err = capfd.readouterr()  # file descriptors: the kernels' own stderr is caught too
    assert re.search(r"^\[1/3\] bad \(01_sentiment\): failed in \d+ s \| study [\d.]+ min, ETA \d+", out, re.M), out
    assert re.search(r"^\[2/3\] good \(01_sentiment\): complete in \d+ s, dev sst 0\.\d{3} \| study", out, re.M), out
    assert "without encryption" not in err  # kernels over IPC: no TCP warning per notebook
    assert "KeyboardInterrupt caught" not in err  # no SIGINT on shutdown
    assert str(tmp_path / "s" / "bad" / "notebook.ipynb") in err and "unknown task 'imdb'" in err
    assert (tmp_path / "s" / "good" / ".complete").is_file()
    assert (tmp_path / "s" / "report" / "tables" / "table1.md").is_file()


def test_kernels_use_ipc_and_are_not_interrupted_on_shutdown(monkeypatch):
    import asyncio
    import os

    from jupyter_client import AsyncKernelManager

    from minbert_core.notebook_run import _kernel_manager_class

    calls = []

    async def fake_interrupt(self):
        calls.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", fake_interrupt)
    km = _kernel_manager_class()(kernel_name="minbert")
    assert km.transport == ("tcp" if os.name == "nt" else "ipc")
    asyncio.run(km._async_interrupt_kernel())  # a running cell can still be interrupted
    km.shutting_down = True
    asyncio.run(km._async_interrupt_kernel())  # but not a kernel whose notebook is done
    assert calls == [False]


def test_cluster_task_with_a_failed_input_fails_without_running():
    from minbert_core.cluster import run_entry_task

    status, error, _ = run_entry_task("nb.ipynb", "/nonexistent", {}, "minbert", "x",
                                      [("t2-sum", ("failed", "boom", 1.0)), ("t2-pcgrad", ("complete", None, 2.0))])
    assert status == "failed" and error == "needs a failed run: t2-sum"


def test_a_rerun_keeps_the_times_an_earlier_record_measured(tmp_path):
    """Completed runs are skipped on a rerun; study.json keeps the seconds their own run recorded."""
    from minbert_core.study import earlier_runs, keep_earlier_times

    (tmp_path / "study.json").write_text(json.dumps({"runs": [{"name": "a", "status": "complete", "seconds": 377.2},
                                                              {"name": "b", "status": "failed", "seconds": 3.0}]}))
    earlier = earlier_runs(tmp_path / "study.json")
    now = [{"name": "a", "status": "skipped (complete)", "seconds": None},
           {"name": "b", "status": "complete", "seconds": 12.5}, {"name": "c", "status": "pending", "seconds": None}]
    assert [r["seconds"] for r in keep_earlier_times(now, earlier)] == [377.2, 12.5, None]
    (tmp_path / "study.json").write_text('{"runs": [')  # cut short: nothing to keep, nothing fails
    assert earlier_runs(tmp_path / "study.json") == {}
