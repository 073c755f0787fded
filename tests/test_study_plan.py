"""A study plan is validated data: every mistake is refused before any notebook runs, one line each,
`error: <plan file>: <key path>: <problem>` (issue 22). No kernel starts in these tests."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from minbert_core.cli import main
from minbert_core.plan import expand, load_plan, notebook_config

SMOKE = ("profiles:\n"
         "  smoke:\n"
         "    common: {checkpoint: 'random:tiny', epochs: 1, train_limit: 16, eval_limit: 16}\n")
T2 = "  - {table: 2, notebook: 02_multitask, name: t2-sum, column: Sum, grid: {strategy: sum}}\n"


def _refused(tmp_path, capsys, text: str, *args: str) -> list[tuple[str, str]]:
    """Run `minbert study` on a plan written from `text`: it must exit 2, write nothing, and print only
    `error: <plan>: <path>: <problem>` lines; returns their (path, problem) pairs."""
    plan, out = tmp_path / "plan.yaml", tmp_path / "out"
    plan.write_text(text)
    assert main(["study", "--profile", "smoke", "--plan", str(plan), "--out", str(out), "--no-report", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    found = []
    for line in err:
        m = re.fullmatch(rf"error: {re.escape(str(plan))}: (.+?): (.+)", line)
        assert m, line
        found.append(m.groups())
    assert not out.exists(), "a refused plan must not create its study folder"
    return found


# the three cases of issue 22 and variants of each: a key that is code, a name outside --out, a
# notebook outside the notebooks folder; each in a grid, a profile block and, where it applies, `common`
@pytest.mark.parametrize("text,path,problem", [
    (SMOKE + "experiments:\n" + T2 + "  - notebook: 04_gradient_conflict\n    name: conflict\n    grid:\n"
     "      run_a: '@t2-sum'\n      ? \"group = 'overall'\\nopen('MARKER_KEY', 'w').write('ran')\\nzz\"\n      : 1\n",
     r"experiments\[1\] \(conflict\)\.grid\[\"group = .*\"\]", "must be a Python identifier"),
    (SMOKE + "    04_gradient_conflict: {\"x = 1; open('MARKER_KEY', 'w')\": 1}\n"
     "experiments:\n" + T2 + "  - {notebook: 04_gradient_conflict, name: conflict, grid: {run_a: '@t2-sum'}}\n",
     r"profiles\.smoke\.04_gradient_conflict\[.*\]", "must be a Python identifier"),
    (SMOKE + "experiments:\n" + T2 + "  - {notebook: 04_gradient_conflict, name: conflict, "
     "grid: {run_a: '@t2-sum', groupp: layer0}}\n",
     r"experiments\[1\] \(conflict\)\.grid\.groupp", "not a parameter of notebook 04_gradient_conflict"),
    (SMOKE + "experiments:\n  - {notebook: 05_report, name: r, grid: {study_dir: x, import: 1}}\n",
     r"experiments\[0\] \(r\)\.grid\.import", "must be a Python identifier"),
    (SMOKE + "experiments:\n" + T2 + "  - {notebook: 04_gradient_conflict, name: ../../escaped, "
     "grid: {run_a: '@t2-sum'}}\n", r"experiments\[1\] \(\.\./\.\./escaped\)\.name", "the --run-id rule"),
    (SMOKE + "experiments:\n  - {notebook: 00_sanity, name: /tmp/abs, grid: {opt_steps: 1}}\n",
     r"experiments\[0\] \(/tmp/abs\)\.name", "the --run-id rule"),
    (SMOKE + "experiments:\n  - {notebook: 01_sentiment, name: t1, grid: {task: [sst, ../x]}}\n",
     r"experiments\[0\] \(t1\)\.name", "run name 't1-../x'"),
    (SMOKE + "experiments:\n  - {notebook: 00_sanity, name: report, grid: {opt_steps: 1}}\n",
     r"experiments\[0\] \(report\)\.name", "not report or study.json"),
    (SMOKE + "experiments:\n  - {table: 2, notebook: ../outside/marker, name: t2-x, grid: {strategy: single}}\n",
     r"experiments\[0\] \(t2-x\)\.notebook", "is not a notebook of"),
    (SMOKE + "experiments:\n  - {table: 2, notebook: /etc/marker, name: t2-x, grid: {strategy: single}}\n",
     r"experiments\[0\] \(t2-x\)\.notebook", "is not a notebook of"),
    (SMOKE + "experiments:\n  - {table: 2, notebook: 02_multitask.ipynb, name: t2-x, grid: {strategy: single}}\n",
     r"experiments\[0\] \(t2-x\)\.notebook", "is not a notebook of"),
])
def test_a_hostile_plan_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch, text, path, problem):
    monkeypatch.chdir(tmp_path)  # where an injected `open('MARKER_KEY', 'w')` would write
    found = _refused(tmp_path, capsys, text)
    assert any(re.fullmatch(path, p) and problem in msg for p, msg in found), found
    assert not (tmp_path / "MARKER_KEY").exists() and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("text,path,problem", [
    ("", r"\(top level\)", "the plan is empty"),
    ("- smoke\n", r"\(top level\)", "must be a mapping with `profiles` and `experiments`; got a list"),
    (SMOKE + "experiments: 5\n", "experiments", "must be a list; got int 5"),
    ("profiles: [smoke]\nexperiments:\n" + T2, "profiles", "must be a mapping; got a list"),
    ("profiles:\n  smoke: {common: oops}\nexperiments:\n" + T2, r"profiles\.smoke\.common",
     "must be a mapping; got str 'oops'"),
    (SMOKE + "experiments:\n  - {table: 2, notebok: 02_multitask, name: t2-sum, grid: {strategy: sum}}\n",
     r"experiments\[0\] \(t2-sum\)\.notebok", "unknown key"),
    (SMOKE + "experiments:\n  - {table: 2, name: t2-sum}\n", r"experiments\[0\] \(t2-sum\)",
     "give `notebook`"),
    (SMOKE + "experiments:\n  - {table: 2, notebook: 02_multitsk, name: t2-sum, grid: {strategy: sum}}\n",
     r"experiments\[0\] \(t2-sum\)\.notebook", "'02_multitsk' is not a notebook"),
    (SMOKE + "    02_multitask: !!python/object/apply:os.system ['touch MARKER']\nexperiments:\n" + T2,
     r"profiles\.smoke\.02_multitask", "YAML tag tag:yaml.org,2002:python/object/apply:os.system"),
    (SMOKE + "    02_multitask: {batch_size: 8, batch_size: 16}\nexperiments:\n" + T2,
     r"profiles\.smoke\.02_multitask\.batch_size", "duplicate key"),
    (SMOKE + "  smoke: {}\nexperiments:\n" + T2, r"profiles\.smoke", "duplicate key (lines 2 and 4)"),
    (SMOKE + "experiments:\n" + T2 + "experimentz: []\n", "experimentz", "unknown key"),
    (SMOKE + "    02_multitsk: {batch_size: 4}\nexperiments:\n" + T2, r"profiles\.smoke\.02_multitsk", "unknown key"),
    (SMOKE + "    tables: [1]\nexperiments:\n" + T2, r"profiles\.smoke\.tables", "no experiment fills table(s) [1]"),
    (SMOKE + "    tables: []\nexperiments:\n" + T2, r"profiles\.smoke\.tables", "selects no run"),
    (SMOKE + "experiments:\n  - {table: 2, notebook: 02_multitask, name: x, grid: {strategy: []}}\n",
     r"experiments\[0\] \(x\)\.grid\.strategy", "an empty list expands into no runs"),
    (SMOKE + "experiments:\n  - {table: '2', notebook: 02_multitask, name: x, grid: {strategy: {a: 1}}}\n",
     r"experiments\[0\] \(x\)\.(table|grid\.strategy)", "must be"),
    (SMOKE + "    seeds: [1, 1]\nexperiments:\n" + T2, r"profiles\.smoke\.seeds", "distinct integers"),
    (SMOKE + "    04_gradient_conflict: {seeds: [1, 2]}\nexperiments:\n" + T2 +
     "  - {notebook: 04_gradient_conflict, name: c, grid: {run_a: '@t2-sum'}}\n",
     r"profiles\.smoke\.04_gradient_conflict\.seeds", "seeds repeat training runs only"),
    ("profiles:\n  smoke: {common: {checkpoint: 'random:tiny', epochz: 1}}\nexperiments:\n" + T2,
     r"profiles\.smoke\.common\.epochz",
     "not a parameter of notebook 02_multitask"),
    (SMOKE + "experiments:\n" + T2 + "  - {notebook: 04_gradient_conflict, name: c, grid: {run_a: '@t2-summ'}}\n",
     r"experiments\[1\] \(c\)\.grid", "reads unknown run(s) (@name): t2-summ"),
    (SMOKE + "experiments:\n" + T2 + "  - {table: 3, name: t3, same_as: t2-summ}\n",
     r"experiments\[1\] \(t3\)\.same_as", "names no experiment: 't2-summ'"),
])
def test_each_plan_mistake_names_the_file_and_key(tmp_path, capsys, text, path, problem):
    found = _refused(tmp_path, capsys, text)
    assert any(re.fullmatch(path, p) and problem in msg for p, msg in found), found


def test_every_mistake_is_listed_at_once(tmp_path, capsys):
    text = ("profiles:\n  smoke: {common: oops, tables: x}\nexperiments:\n"
            "  - {table: 2, notebook: 02_multitask, name: a, grid: {strategy: sum}, colum: x}\n")
    paths = [p for p, _ in _refused(tmp_path, capsys, text)]
    assert paths == ["profiles.smoke.common", "profiles.smoke.tables", "experiments[0] (a).colum"]


def test_jobs_below_one_is_refused_before_anything_runs(tmp_path, capsys):
    text = SMOKE + "experiments:\n" + T2
    (tmp_path / "plan.yaml").write_text(text)
    out = tmp_path / "out"
    assert main(["study", "--profile", "smoke", "--plan", str(tmp_path / "plan.yaml"), "--out", str(out),
                 "--jobs", "0"]) == 2
    assert "error: --jobs must be at least 1" in capsys.readouterr().err and not out.exists()


def test_the_packaged_plan_and_its_yaml_merges_are_valid(tmp_path):
    plan = load_plan()
    for profile in plan["profiles"]:
        assert expand(plan, profile, tmp_path)
    t4 = {r.name: r.params for r in expand(plan, "cpu", tmp_path)}["t4-sum"]
    assert t4["steps_per_epoch"] == 150 and t4["lr_head"] == 1e-3  # `<<: *cpu_mt` merged, then overridden


def test_profile_seeds_and_blocks_of_any_notebook(tmp_path):
    """`seeds` of a profile repeats its training runs; a block of a notebook that trains nothing
    (04) sets its parameters too, instead of being ignored."""
    plan = load_plan(_write(tmp_path, SMOKE + "    seeds: [1, 2]\n    04_gradient_conflict: {group: layer0}\n"
                            "experiments:\n" + T2 + "  - {notebook: 04_gradient_conflict, name: c, "
                            "grid: {run_a: '@t2-sum'}}\n"))
    runs = {r.name: r for r in expand(plan, "smoke", tmp_path)}
    assert sorted(runs) == ["c", "t2-sum", "t2-sum-seed2"] and runs["t2-sum-seed2"].params["seed"] == 2
    assert runs["c"].params == {"group": "layer0", "run_a": str(tmp_path / "t2-sum")}


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "plan.yaml").write_text(text)
    return tmp_path / "plan.yaml"


def test_notebook_config_is_the_notebooks_parameters_as_a_trainconfig():
    from minbert_core.plan import notebook_parameters
    from minbert_core.study import NOTEBOOKS_DIR

    ns = dict(notebook_parameters(NOTEBOOKS_DIR / "03_structure.ipynb"), lstm=False, batch_size=4, plots=object)
    cfg = notebook_config(ns, "03_structure", tasks=("sst", "para", "sts"))
    assert (cfg.lstm, cfg.batch_size, cfg.task_layers, cfg.tasks) == (False, 4, 1, ("sst", "para", "sts"))
    with pytest.raises(ValueError, match="03_structure: unknown parameter.*epochz"):
        notebook_config({**ns, "epochz": 3}, "03_structure")
    with pytest.raises(ValueError, match="batch_size is both a parameter and fixed"):
        notebook_config(ns, "03_structure", batch_size=8)
    with pytest.raises(ValueError, match="^batch_size must be int"):
        notebook_config({**ns, "batch_size": "many"}, "03_structure")


def test_table5_positive_control_on_sst_head_is_planned_like_the_other_conditions(tmp_path):
    """cpu's Table 5 gets the tied control: sum, PCGrad and IMTL-G at 3 seeds, compared with its sum, set up
    exactly as the own-head control but for its fourth task; the profiles without Table 5 do not run it."""
    plan = load_plan()
    runs = {r.name: r for r in expand(plan, "cpu", tmp_path) if r.table == 5}
    tied = {n: r for n, r in runs.items() if n.startswith("t5-control-tied-")}
    assert sorted(tied) == sorted(f"t5-control-tied-{s}{seed}" for s in ("sum", "pcgrad", "imtl-g")
                                  for seed in ("", "-seed21111", "-seed100"))
    assert {r.row for r in tied.values()} == {"positive control: + SST reversed on SST's head (bf16)"}
    assert {r.compare_to for r in tied.values()} == {None, "t5-control-tied-sum"}
    for name, r in tied.items():
        own = runs[name.replace("t5-control-tied-", "t5-control-")].params
        diff = {k for k in own if own[k] != r.params[k]}
        assert diff == {"tasks", "run_id", "precision"} and r.params["tasks"] == "sst,para,sts,sst_rev_tied", (name, diff)
    rows = list(dict.fromkeys(r.row for r in runs.values()))
    assert rows[-1] == "positive control: + SST reversed on SST's head (bf16)"  # after the existing conditions
    # the conditions not run before Table 6 checked bf16 run in it, and say so in their row; the others stay fp32
    for r in runs.values():
        bf16 = r.params.get("precision") == "bf16"
        assert bf16 == r.row.endswith("(bf16)") and bf16 == any(
            k in r.name for k in ("-cross-", "-sts05-", "-lr1e-5-", "-control-tied-")), r.name
    for profile in ("smoke", "quick", "strategies", "full", "paper"):
        assert not any(r.table == 5 for r in expand(plan, profile, tmp_path)), profile


def test_the_quick_profiles_use_the_hardwares_precision_and_the_recorded_studies_a_fixed_one(tmp_path):
    """quick and strategies (looking at the study, timed) run at `auto`; the profiles whose records carry
    findings keep an explicit precision, so that one plan gives one arithmetic on any machine."""
    plan = load_plan()
    for profile in ("quick", "strategies"):
        runs = [r for r in expand(plan, profile, tmp_path)
                if r.notebook in ("01_sentiment", "02_multitask", "03_structure")]
        assert runs and all(r.params["precision"] == "auto" for r in runs), profile
    for profile in ("smoke", "cpu", "full", "paper"):
        assert not any(r.params.get("precision") == "auto" for r in expand(plan, profile, tmp_path)), profile
