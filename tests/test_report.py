"""The report's judgements: the paper's own slips, differences against the seed spread, stable files."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from minbert_core import paper, plots
from minbert_core.report import _diff_verdict, build_tables, paper_inconsistencies
from minbert_core.runs import load_run, load_study
from minbert_core.tasks import beats_trivial

matplotlib.use("Agg")


def test_paper_overall_inconsistency_is_computed_not_typed():
    t2 = paper_inconsistencies(paper.TABLE2, paper.TABLE3)
    assert list(t2) == ["Combined Loss w. Gradient Surgery"]  # the only printed overall that does not add up
    note = t2["Combined Loss w. Gradient Surgery"]
    assert "prints overall 0.759" in note and "= 0.7775" in note
    assert "SST 0.517, which gives 0.7595" in note  # Table 3's Original: same PD and STS
    assert paper_inconsistencies(paper.TABLE3, paper.TABLE2) == {}


def _row(mean, std, n, learned=True):
    return pd.Series({"ours": mean, "std": std, "n": n, "learned": learned})


@pytest.mark.parametrize("a,b,verdict", [
    (_row(0.80, 0.01, 3), _row(0.70, 0.01, 3), "exceeds the seed spread"),
    (_row(0.71, 0.02, 3), _row(0.70, 0.02, 3), "within the seed spread"),
    (_row(0.80, 0.01, 3), _row(0.25, 0.0, 3, learned=False), "not compared: a run did not learn"),
    (_row(0.80, float("nan"), 1), _row(0.70, float("nan"), 1), "no verdict: fewer than 2 seeds"),
])
def test_differences_are_weighed_against_the_seed_spread(a, b, verdict):
    diff, spread, v = _diff_verdict(a, b)
    assert v == verdict and diff == pytest.approx(a["ours"] - b["ours"])
    if spread is not None:  # 2 standard errors of the difference of two means, worked by hand
        assert spread == pytest.approx({0.01: 0.0163299, 0.02: 0.0326599}[a["std"]], rel=1e-5)


def test_trivial_baselines_and_margins():
    import torch

    gold = torch.tensor([0, 0, 0, 1] * 25, dtype=torch.float32)  # 75% majority, 100 rows
    b = beats_trivial("para", 0.80, gold)
    assert b["baseline"] == pytest.approx(0.75) and b["margin"] == pytest.approx(2 * (0.75 * 0.25 / 100) ** 0.5)
    assert not b["learned"]  # 0.80 < 0.75 + 0.0866
    assert beats_trivial("para", 0.84, gold)["learned"]
    s = beats_trivial("sts", 0.25, torch.linspace(0, 5, 101))
    assert s["baseline"] == 0.0 and s["margin"] == pytest.approx(0.2) and s["learned"]


def test_an_unchanged_figure_gives_unchanged_files(tmp_path):
    """No creation date in the PDF: re-running a study leaves `git status` clean."""
    digests = []
    for name in ("a", "b"):
        fig = plots.dev_metrics(pd.DataFrame({"metric": ["sst", "para"], "value": [0.4, 0.7], "model": ["m", "m"]}))
        paths = plots.save(fig, tmp_path, name)
        digests.append([hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths])
        time.sleep(1.1)  # a timestamp would differ by now
    assert digests[0] == digests[1]


def test_targets_are_stated_met_or_missed_with_what_was_tried():
    from minbert_core.report import target_notes

    summary = pd.DataFrame([
        {"metric": "overall", "column": "A", "ours": 0.718}, {"metric": "overall", "column": "B", "ours": 0.73},
        {"metric": "sst", "column": "A", "ours": 0.45}])
    study = {"profile": "p", "targets": [{"table": 2, "columns": ["A", "B"], "min": {"overall": 0.72, "sst": 0.4},
                                          "tried": "one setting"}]}
    notes = target_notes(study, summary, 2)
    assert notes[0] == ("targets of profile `p` (mean over seeds): overall ≥ 0.72: A 0.7180 missed by 0.0020, "
                        "B 0.7300 met; sst ≥ 0.4: A 0.4500 met, B: not run")
    assert notes[1] == "tried for the missed target: one setting"
    assert target_notes(study, summary, 3) == []
    study["targets"][0]["min"] = {"sst": 0.4}
    assert len(target_notes(study, summary.iloc[2:], 2)) == 1  # all met: no 'tried' line
    # a study recorded before targets were: the packaged plan's, for its profile
    cpu = target_notes({"profile": "cpu"}, summary.assign(column="Combined Loss"), 2)
    assert cpu and "overall ≥ 0.72: Combined Loss 0.7180 missed by 0.0020" in cpu[0]


# --- Records read back: a damaged or odd record is named, left out and counted, never averaged in -------------

CPU = Path(__file__).resolve().parent.parent / "results" / "study-cpu"
RECORD_FILES = ("config.json", "metrics.json", "history.csv", "telemetry.csv")


def copy_study(dest: Path, tables: tuple[int, ...] = (2,)) -> Path:
    """The committed cpu study's records of some tables (no predictions, no figures), in a new study folder."""
    study = json.loads((CPU / "study.json").read_text())
    study["runs"] = [e for e in study["runs"] if e.get("table") in tables]
    for e in study["runs"]:
        if (CPU / e["name"] / "metrics.json").is_file():
            (dest / e["name"]).mkdir(parents=True)
            for f in RECORD_FILES:
                if (CPU / e["name"] / f).is_file():
                    shutil.copy(CPU / e["name"] / f, dest / e["name"] / f)
    (dest / "study.json").write_text(json.dumps(study))
    return dest


def tables(study_dir: Path) -> dict[int, str]:
    """Every planned table's Markdown, built from the folder's records."""
    return build_tables(load_study(study_dir), study_dir / "report" / "tables")


def set_best(run: Path, key: str, raw: str) -> None:
    """Write `raw` (JSON text: null, NaN, Infinity, a string ...) as best_dev[key] of a run's metrics.json."""
    m = json.loads((run / "metrics.json").read_text())
    m["best_dev"][key] = "@@"
    (run / "metrics.json").write_text(json.dumps(m, indent=2).replace('"@@"', raw))


def best(study: Path, run: str, key: str) -> float:
    return json.loads((study / run / "metrics.json").read_text())["best_dev"][key]


def cell(md: str, row: str, column: int) -> str:
    """The text of a Markdown table cell: the row starting with `row`, the column-th value column."""
    line = next(x for x in md.splitlines() if x.startswith(f"| {row} |"))
    return line.split(" | ")[column].strip(" |")


def test_the_notes_give_each_runs_resolved_precision_and_processor(tmp_path):
    """`auto` is reported as what it resolved to; a record from before precision existed (a boolean `bf16`,
    no processor) reads as its configured fp32 and 'not recorded'."""
    study = copy_study(tmp_path / "s")
    notes = tables(study)[2]
    assert "precision fp32," in notes and "processor not recorded" in notes  # the committed Table 2: before both
    run = study / "t2-sum-seed21111"
    c = json.loads((run / "config.json").read_text())
    del c["config"]["bf16"]  # the old boolean, renamed
    c["config"]["precision"], c["resolved"]["precision"] = "auto", "bf16"
    c["environment"]["device_name"] = "Some CPU with AMX"
    (run / "config.json").write_text(json.dumps(c))
    notes = tables(study)[2]
    assert "precision fp32/bf16 (varies)" in notes and "processor not recorded/Some CPU with AMX (varies)" in notes


@pytest.mark.parametrize("raw", ["null", "NaN", "Infinity", "-Infinity", '"0.44"', "[0.44]"])
def test_a_missing_or_non_finite_metric_is_left_out_and_its_cell_says_how_many_seeds(tmp_path, raw):
    study = copy_study(tmp_path / "s")
    set_best(study / "t2-sum-seed100", "sst", raw)
    md = tables(study)[2]
    kept = [best(study, r, "sst") for r in ("t2-sum", "t2-sum-seed21111")]
    assert cell(md, "SST dev Acc.", 2) == f"{np.mean(kept):.3f} ± {np.std(kept, ddof=1):.3f} [2 of 3 seeds] (0.520)"
    assert cell(md, "PD dev Acc.", 2).count("seeds") == 0  # the run's other values are whole: 3 seeds
    assert "| seeds | 3 | 3 | 3 |" in md
    assert "t2-sum-seed100/metrics.json: best_dev.sst is" in md  # listed under the table, its file named
    assert re.search(r"vs \*\*Combined Loss\*\*: sst [+-]\d\.\d{3} \(3 vs 2 seeds\), spread", md)  # the comparison too
    assert " inf" not in md.split("\n- ")[0]  # no infinite accuracy printed
    summary = pd.read_csv(study / "report" / "tables" / "table2_summary.csv")
    assert summary.set_index(["metric", "column"]).loc[("sst", "Combined Loss"), "n"] == 2


@pytest.mark.parametrize("key,value", [("sst", 1.2), ("para", -0.1), ("sts", 1.5), ("sts", -1.01), ("overall", 1.1)])
def test_a_metric_outside_its_range_is_refused_naming_the_run(tmp_path, key, value):
    study = copy_study(tmp_path / "s")
    set_best(study / "t2-pcgrad-seed21111", key, repr(value))
    md = tables(study)[2]
    row = {"sst": "SST dev Acc.", "para": "PD dev Acc.", "sts": "STS dev Cor.", "overall": "Overall dev Score"}[key]
    kept = [best(study, r, key) for r in ("t2-pcgrad", "t2-pcgrad-seed100")]
    assert cell(md, row, 3).startswith(f"{np.mean(kept):.3f} ± {np.std(kept, ddof=1):.3f} [2 of 3 seeds]")
    assert f"t2-pcgrad-seed21111/metrics.json: best_dev.{key} = {value} is outside" in md


def test_a_column_only_averages_seeds_a_list_valued_parameter_gets_a_column_per_value(tmp_path):
    """A plan column with lr_finetune: [1e-5, 3e-5] at one seed: two runs, not a spread of two seeds."""
    study = copy_study(tmp_path / "s")
    plan = json.loads((study / "study.json").read_text())
    for old, new, lr in (("t2-sum", "t2-sum-1e-05", 1e-5), ("t2-sum-seed100", "t2-sum-3e-05", 3e-5)):
        (study / old).rename(study / new)
        cfg = json.loads((study / new / "config.json").read_text())
        cfg["config"].update(lr_finetune=lr, seed=11711, run_id=new)
        (study / new / "config.json").write_text(json.dumps(cfg))
        next(e for e in plan["runs"] if e["name"] == old).update(name=new)
    plan["runs"] = [e for e in plan["runs"] if e["name"] != "t2-sum-seed21111"]
    (study / "study.json").write_text(json.dumps(plan))
    md = tables(study)[2]
    header = next(x for x in md.splitlines() if x.startswith("| | "))
    assert "Combined Loss (lr_finetune 1e-05) | Combined Loss (lr_finetune 3e-05)" in header
    assert cell(md, "SST dev Acc.", 2) == f"{best(study, 't2-sum-1e-05', 'sst'):.3f} (0.520)"  # one run: no ±
    assert cell(md, "SST dev Acc.", 3) == f"{best(study, 't2-sum-3e-05', 'sst'):.3f} (0.520)"
    assert "| seeds | 3 | 1 | 1 | 3 |" in md
    assert "each setting is its own column" in md and "t2-sum-3e-05 (lr_finetune 3e-05)" in md
    # PCGrad's compare_to (t2-sum) meets each of them, each a single run: no verdict
    assert "**Combined Loss w. Gradient Surgery** vs **Combined Loss (lr_finetune 3e-05)**" in md


def test_table1_runs_of_one_cell_that_differ_get_a_row_each(tmp_path):
    study = copy_study(tmp_path / "s", tables=(1,))
    shutil.copytree(study / "t1-batch-16-sst", study / "t1-batch-16-sst-lr")
    cfg = json.loads((study / "t1-batch-16-sst-lr" / "config.json").read_text())
    cfg["config"]["lr_finetune"] = 1e-4
    (study / "t1-batch-16-sst-lr" / "config.json").write_text(json.dumps(cfg))
    set_best(study / "t1-batch-16-sst-lr", "sst", "0.123")
    plan = json.loads((study / "study.json").read_text())
    twin = next(e for e in plan["runs"] if e["name"] == "t1-batch-16-sst")
    plan["runs"].append(dict(twin, name="t1-batch-16-sst-lr"))
    (study / "study.json").write_text(json.dumps(plan))
    md = tables(study)[1]
    assert cell(md, "batch=16 (lr_finetune 0.0001)", 2).startswith("0.123")
    assert cell(md, "batch=16 (lr_finetune 5e-05)", 2).startswith(f"{best(study, 't1-batch-16-sst', 'sst'):.3f}")
    assert cell(md, "batch=16", 4).startswith(f"{best(study, 't1-batch-16-cfimdb', 'cfimdb'):.3f}")


@pytest.mark.parametrize("damaged", ["metrics.json", "config.json"])
def test_a_truncated_run_record_is_named_and_the_run_left_out(tmp_path, damaged):
    study = copy_study(tmp_path / "s")
    f = study / "t2-sum-seed100" / damaged
    f.write_text(f.read_text()[:150])
    md = tables(study)[2]
    assert "| seeds | 3 | 2 | 3 |" in md
    assert f"runs left out (a damaged record): t2-sum-seed100 ({f}: not valid JSON" in md
    assert "missing (not complete)" not in md  # damaged is said as damaged, not as not run


@pytest.mark.parametrize("text,match", [
    ('{"profile": "cpu", "runs": [{"name": "t2-su', "study.json: not valid JSON"),
    ('{"trials": []}', "study.json: no 'runs' list"),  # someone else's folder
    ('[1, 2]', "study.json: holds a list, not a JSON object"),
    ('{"runs": [{"table": 2}]}', r"study.json: runs\[0\] has no run name"),
])
def test_a_damaged_or_foreign_study_record_is_an_error_naming_it(tmp_path, text, match):
    (tmp_path / "study.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_study(tmp_path)


def test_a_csv_cut_mid_line_loses_its_cut_line_and_says_so(tmp_path):
    study = copy_study(tmp_path / "s")
    run = study / "t2-sum"
    for f in ("history.csv", "telemetry.csv"):
        text = (run / f).read_text()
        (run / f).write_text(text[:-12])  # the last line loses its end: a value cut to a shorter number
    rec = load_run(run)
    lines = (run / "history.csv").read_text().splitlines()
    assert len(rec.history) == len(lines) - 2  # header and the cut line
    assert rec.history.iloc[-1]["kind"] == "train"  # the cut dev line is not read as a number
    assert len(rec.telemetry) == len((run / "telemetry.csv").read_text().splitlines()) - 2
    assert [p.split(": ")[0] for p in rec.problems] == [str(run / "history.csv"), str(run / "telemetry.csv")]
    assert f"{run / 'history.csv'}: line {len(lines)} is cut mid-line" in tables(study)[2]


@pytest.mark.parametrize("edit,match", [
    (lambda lines: lines[:5] + [lines[5] + ",7"] + lines[6:], r"history.csv: line 6 has 13 fields, the header 12"),
    (lambda lines: lines[:5] + [lines[5].replace(",1,train,", ",1x,train,")] + lines[6:],
     r"history.csv: line 6, column epoch: '1x' is not a number"),
    (lambda lines: [], r"history.csv: no header line"),
])
def test_a_damaged_csv_line_is_an_error_naming_file_and_line(tmp_path, edit, match):
    study = copy_study(tmp_path / "s")
    f = study / "t2-sum" / "history.csv"
    f.write_text("\n".join(edit(f.read_text().splitlines())) + "\n")
    with pytest.raises(ValueError, match=match):
        load_run(study / "t2-sum")
    assert "runs left out (a damaged record): t2-sum (" in tables(study)[2]  # the report goes on without it


# --- Table 5: strategies under conditions, one registry entry; fabricated from Table 4's records -------------

CONDITIONS = [("Base", "base", {}), ("cls pooling", "cls", {"pooling": "cls"}),
              ("positive control", "rev", {"tasks": ["sst", "para", "sts", "sst_rev"]}), ("lr 1e-5", "lr", {}),
              ("tied control", "tied", {"tasks": ["sst", "para", "sts", "sst_rev_tied"]})]
REVERSED = {"rev": "sst_rev", "tied": "sst_rev_tied"}  # a condition's fourth task, SST's labels reversed
STRATEGIES = [("Sum", "sum"), ("PCGrad", "pcgrad"), ("IMTL-G", "imtl-g")]
SEEDS = [("", 11711), ("-seed21111", 21111), ("-seed100", 100)]
NOT_RUN = {"t5-cls-sum-seed100", "t5-cls-imtl-g", "t5-cls-imtl-g-seed21111", "t5-cls-imtl-g-seed100"}


def _fabricate(src: Path, dest: Path, tag: str, change: dict) -> None:
    """A Table 5 run from a Table 4 one: its condition's setting in the config; cls pooling's PCGrad SST
    0.1 lower; the positive controls score their reversed SST as SST (one seed of PCGrad did not learn
    sst_rev; the tied control's reversed task scores 1 - SST)."""
    dest.mkdir()
    for f in RECORD_FILES:
        shutil.copy(src / f, dest / f)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["config"].update(change, run_id=dest.name)
    (dest / "config.json").write_text(json.dumps(cfg))
    m = json.loads((dest / "metrics.json").read_text())
    if dest.name.startswith("t5-cls-pcgrad"):
        m["best_dev"]["sst"] -= 0.1
    if tag in REVERSED:
        rev, sst = REVERSED[tag], m["best_dev"]["sst"]
        m["best_dev"][rev], m["metric_names"][rev] = (sst if tag == "rev" else 1 - sst), "acc"
        m["baselines"][rev] = dict(m["baselines"]["sst"], learned=dest.name != "t5-rev-pcgrad-seed100")
    (dest / "metrics.json").write_text(json.dumps(m))


def table5_study(dest: Path) -> Path:
    """Four conditions x three strategies x three seeds planned; some not run yet (the study in progress)."""
    dest.mkdir()
    runs = []
    for row, tag, change in CONDITIONS:
        for column, strategy in STRATEGIES:
            exp = f"t5-{tag}-{strategy}"
            for suffix, seed in SEEDS:
                name = exp + suffix
                runs.append({"name": name, "notebook": "02_multitask", "table": 5, "row": row, "column": column,
                             "experiment": exp, "same_as": None, "needs": [],
                             "compare_to": None if strategy == "sum" else f"t5-{tag}-sum"})
                if name not in NOT_RUN and tag != "lr":
                    _fabricate(CPU / f"t4-{strategy}{suffix}", dest / name, tag, change)
    (dest / "study.json").write_text(json.dumps({"profile": "cpu", "targets": [], "runs": runs}))
    return dest


def _block(md: str, condition: str) -> str:
    start = md.index(f"\n*{condition}*")
    ends = [i for i in (md.find("\n*", start + 1), md.find("\n- ours:", start)) if i > 0]
    return md[start:min(ends)]


def test_table5_a_block_per_condition_with_seed_counts_and_differences(tmp_path):
    from minbert_core.report_cells import metric_label

    study = table5_study(tmp_path / "s")
    md = tables(study)[5]
    assert [c for c, *_ in CONDITIONS if f"\n*{c}*" in md] == [c for c, *_ in CONDITIONS]  # plan order
    base, cls, rev = _block(md, "Base"), _block(md, "cls pooling"), _block(md, "positive control")
    assert "| | Sum | PCGrad | IMTL-G |" in base and "| seeds | 3 | 3 | 3 |" in base
    sums = [best(study, f"t5-base-sum{s}", "sst") for s, _ in SEEDS]
    assert cell(base, "SST dev Acc.", 1) == f"{np.mean(sums):.3f} ± {np.std(sums, ddof=1):.3f}"
    assert "**PCGrad** vs **Sum**: sst" in base and "**IMTL-G** vs **Sum**: sst" in base
    # what exists, with its seed count; PCGrad's SST drop is beyond the seed spread
    assert "| | Sum | PCGrad |" in cls and "| seeds | 2 | 3 |" in cls
    assert re.search(r"\*\*PCGrad\*\* vs \*\*Sum\*\*: sst -0\.1\d\d, spread ±0\.0\d\d: exceeds the seed spread", cls)
    assert "\n*lr 1e-5*: no completed runs" in md
    # the positive control's fourth task: a row of its block only, marked where a seed did not learn it
    label = metric_label("sst_rev")
    assert f"| {label} |" in rev and f"| {label} |" not in base
    assert "did not learn" in cell(rev, label, 2) and "did not learn" not in cell(rev, label, 1)
    assert "sst_rev +0.000, spread" not in rev and "not compared: a run did not learn" in rev
    notes = md[md.index("\n- ours:"):]
    assert "'cls pooling' changes from Base: pooling mean → cls" in notes
    assert ("'positive control' changes from Base: tasks ['sst', 'para', 'sts'] → "
            "['sst', 'para', 'sts', 'sst_rev']") in notes
    # the control on SST's own head: a block of its own, after the others, with its SST-rev (tied) row
    tied, tied_label = _block(md, "tied control"), metric_label("sst_rev_tied")
    assert tied_label == "SST-rev (tied) dev Acc." and "| | Sum | PCGrad | IMTL-G |" in tied
    assert f"| {tied_label} |" in tied and f"| {tied_label} |" not in rev and f"| {label} |" not in tied
    tied_sums = [1 - best(study, f"t5-tied-sum{s}", "sst") for s, _ in SEEDS]
    assert cell(tied, tied_label, 1) == f"{np.mean(tied_sums):.3f} ± {np.std(tied_sums, ddof=1):.3f}"
    assert ("'tied control' changes from Base: tasks ['sst', 'para', 'sts'] → "
            "['sst', 'para', 'sts', 'sst_rev_tied']") in notes
    assert "missing (not complete): t5-cls-sum-seed100, t5-cls-imtl-g, t5-cls-imtl-g-seed21111" in notes
    summary = pd.read_csv(study / "report" / "tables" / "table5_summary.csv")
    assert summary.set_index(["condition", "metric", "column"]).loc[("cls pooling", "sst", "Sum"), "n"] == 2
    # the mechanism notes: each strategy's predictors, over conditions, with how many of its gains are findings
    assert re.search(r"PCGrad's gain over Sum against the Sum run's dominance: r = .*; n = \d conditions \(each the "
                     r"mean over its seeds\), \d with a gain that is a finding", notes)


def test_a_new_table_is_one_registry_entry(tmp_path, monkeypatch, caplog):
    from minbert_core import report

    new = max(report.TABLES) + 1  # a table number the registry does not know yet
    study = copy_study(tmp_path / "s")
    plan = json.loads((study / "study.json").read_text())
    for e in plan["runs"]:
        e["table"] = new
    (study / "study.json").write_text(json.dumps(plan))
    assert tables(study) == {} and f"table {new}: no entry" in caplog.text
    monkeypatch.setitem(report.TABLES, new, report.TableSpec(f"Table {new}: a new one", report.metrics_layout))
    md = tables(study)[new]
    assert md.startswith(f"**Table {new}: a new one**") and "| seeds | 3 | 3 | 3 |" in md


def test_a_plan_entry_without_its_cell_is_an_error_naming_it(tmp_path):
    study = copy_study(tmp_path / "s")
    plan = json.loads((study / "study.json").read_text())
    del plan["runs"][1]["column"]
    (study / "study.json").write_text(json.dumps(plan))
    name = plan["runs"][1]["name"]
    with pytest.raises(ValueError, match=rf"{study / 'study.json'}: run {name} of table 2 has no column"):
        tables(study)


@pytest.mark.parametrize("key", ["sts", "overall"])
def test_a_score_missing_from_a_record_is_said_not_silently_dropped(tmp_path, key):
    study = copy_study(tmp_path / "s")
    m = json.loads((study / "t2-sum-seed21111" / "metrics.json").read_text())
    del m["best_dev"][key]
    (study / "t2-sum-seed21111" / "metrics.json").write_text(json.dumps(m))
    md = tables(study)[2]
    assert "[2 of 3 seeds]" in cell(md, {"sts": "STS dev Cor.", "overall": "Overall dev Score"}[key], 2)
    assert f"t2-sum-seed21111/metrics.json: best_dev has no {key}, which the run scores" in md


def test_table1_refuses_an_accuracy_above_one_naming_the_run(tmp_path):
    study = copy_study(tmp_path / "s", tables=(1,))
    set_best(study / "t1-batch-64-cfimdb", "cfimdb", "1.04")
    md = tables(study)[1]
    assert cell(md, "batch=64", 4).startswith("NA")
    assert "t1-batch-64-cfimdb/metrics.json: best_dev.cfimdb = 1.04 is outside [0, 1]" in md


def test_every_multitask_table_draws_its_seeds_dev_curves_and_differences(tmp_path):
    """Tables 2 and 5 from the committed cpu records: the figures the registry lists, with every seed drawn
    and the differences equal to the table's (same numbers as its notes)."""
    from minbert_core.report import TABLES, difference_frames, metric_rows, summarize, table_contexts

    records = load_study(copy_study(tmp_path / "s", tables=(2, 5)))
    figs = {}
    contexts = table_contexts(records)
    assert list(contexts) == [2, 5]
    for n, ctx in contexts.items():
        for draw in TABLES[n].figures:
            figs.update(draw(ctx, TABLES[n]))
    assert {"dev_metrics", "table2_dev_curves", "table2_differences", "table5_dev_curves",
            "table5_differences", "table5_mechanism"} <= set(figs)
    seeds = [c for ax in figs["dev_metrics"].axes for c in ax.collections if c.get_gid() == "seeds"]
    assert sum(len(c.get_offsets()) for c in seeds) == 3 * 3 * 4  # 3 columns x 3 seeds x 4 metrics
    curves = [ln for ax in figs["table5_dev_curves"].axes for ln in ax.lines if ln.get_gid() == "seed_curve"]
    t5_runs = [n for n, r in records.runs.items() if n.startswith("t5-")]  # the committed study grows
    metrics = sum(len(r.cfg["tasks"]) + 1 for n, r in records.runs.items() if n.startswith("t5-"))  # + overall
    dev_rows = sorted(r.cfg["epochs"] for n, r in records.runs.items() if n.startswith("t5-")
                      for _ in range(len(r.cfg["tasks"]) + 1))  # a dev row per epoch (lr 1e-5: 6, the rest 3)
    assert t5_runs and len(curves) == metrics and sorted(len(ln.get_xdata()) for ln in curves) == dev_rows
    ctx = contexts[2]
    df = metric_rows(ctx.cells, TABLES[2].paper)  # built afresh: the figures' shared frames are these numbers
    d, p = difference_frames(ctx.entries, df, summarize(df))
    md = build_tables(records, tmp_path / "tables")[2]
    for key in ("sst", "para", "sts", "overall"):  # the figure's numbers are the table's
        row = d[d["metric"] == key].iloc[0]
        said = re.search(rf"{key} ([+-]\d\.\d{{3}}), spread ±(\d\.\d{{3}}): {row['verdict']}", md)
        assert said and float(said[1]) == round(row["diff"], 3) and float(said[2]) == round(row["spread"], 3)
    assert len(p[p["metric"] == "overall"]) == 3  # a point per seed of PCGrad
    import matplotlib.pyplot as plt

    for f in figs.values():
        plt.close(f)


def test_records_from_before_a_field_existed_share_a_cell_with_new_ones(tmp_path):
    """A run recorded before `keep_last` and `precision` existed (the old boolean bf16 instead) and one recorded
    after, same setting otherwise: one column of 3 seeds, not a column per record version."""
    study = copy_study(tmp_path / "s")
    for name, edit in (("t2-sum", lambda c: c.update(keep_last=False, precision="fp32")),
                       ("t2-sum-seed100", lambda c: (c.pop("keep_last", None), c.pop("precision", None),
                                                     c.update(bf16=False)))):
        f = study / name / "config.json"
        rec = json.loads(f.read_text())
        edit(rec["config"])
        f.write_text(json.dumps(rec))
    md = tables(study)[2]
    header = next(x for x in md.splitlines() if x.startswith("| | "))
    assert "keep_last" not in header and "precision" not in header and "bf16" not in header
    assert "| seeds | 3 | 3 | 3 |" in md


# --- Table 6: the precision check, Table 2's fp32 columns read again beside bf16 runs ------------------------

def test_table6_sets_bf16_runs_beside_table2s_fp32_runs_against_the_seed_spread(tmp_path):
    """Table 6's fp32 columns are Table 2's runs (same_as), its bf16 columns their own runs; each bf16 column is
    compared with its fp32 one. Fabricated here from Table 2's records (bf16: SST 0.05 lower on one seed)."""
    study = copy_study(tmp_path / "s")
    plan = json.loads((study / "study.json").read_text())
    entries = [{"name": "t6-sum-fp32", "table": 6, "column": "Sum fp32", "same_as": "t2-sum", "experiment": "t6-sum-fp32"}]
    for suffix in ("", "-seed21111", "-seed100"):
        src, name = study / f"t2-sum{suffix}", f"t6-sum-bf16{suffix}"
        shutil.copytree(src, study / name)
        cfg = json.loads((study / name / "config.json").read_text())
        cfg["config"].pop("bf16", None)  # the records of Table 2 predate `precision`
        cfg["config"].update(precision="bf16", predict_test=False, run_id=name)
        (study / name / "config.json").write_text(json.dumps(cfg))
        if not suffix:
            set_best(study / name, "sst", repr(best(study, name, "sst") - 0.05))
        entries.append({"name": name, "table": 6, "column": "Sum bf16", "compare_to": "t6-sum-fp32",
                        "experiment": "t6-sum-bf16"})
    plan["runs"] += entries
    (study / "study.json").write_text(json.dumps(plan))
    md = tables(study)[6]
    header = next(x for x in md.splitlines() if x.startswith("| | "))
    assert header.startswith("| | Sum fp32 | Sum bf16 |") and "precision" not in header
    fp32 = [best(study, f"t2-sum{s}", "sst") for s in ("", "-seed21111", "-seed100")]
    bf16 = [best(study, f"t6-sum-bf16{s}", "sst") for s in ("", "-seed21111", "-seed100")]
    assert cell(md, "SST dev Acc.", 1) == f"{np.mean(fp32):.3f} ± {np.std(fp32, ddof=1):.3f}"
    assert cell(md, "SST dev Acc.", 2) == f"{np.mean(bf16):.3f} ± {np.std(bf16, ddof=1):.3f}"
    assert f"**Sum bf16** vs **Sum fp32**: sst {np.mean(bf16) - np.mean(fp32):+.3f}" in md
    assert "| seeds | 3 | 3 |" in md


def test_the_cpu_plan_runs_table6_at_table2s_setting_but_for_precision():
    from minbert_core.study import expand, load_plan

    runs = {r.name: r for r in expand(load_plan(), "cpu", Path("/nonexistent"))}
    for strategy in ("sum", "pcgrad"):
        fp32, bf16 = runs[f"t2-{strategy}-seed100"].params, runs[f"t6-{strategy}-bf16-seed100"].params
        assert {k for k in fp32.keys() | bf16.keys() if fp32.get(k) != bf16.get(k)} == {"precision", "predict_test",
                                                                                      "run_id"}
        assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
        assert runs[f"t6-{strategy}-fp32"].same_as == f"t2-{strategy}"
    assert not [r for r in expand(load_plan(), "smoke", Path("/nonexistent")) if r.table == 6]
