"""Nothing is written outside its folder, and no file is read or downloaded without a bound (issue 22
item 2): lock files never write through a link, run folders stay inside their runs folder, a data
fetch has a deadline and a size cap, and a data path that is not a file says what it is."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from minbert_core.runs import folder_lock
from minbert_core.notebook_run import run_entry as _run_entry
from minbert_core.train import TrainConfig, train

FAST = dict(checkpoint="random:tiny", epochs=1, train_limit=24, eval_limit=16, batch_size=8,
            telemetry_every=0, max_length=32, tasks=("sst",), strategy="single")
PRECIOUS = "a committed result\n"


def _cfg(tmp_path: Path, data_root: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**FAST, "runs_dir": str(tmp_path / "runs"), "data_dir": str(data_root), **kw})


def _plant_lock(folder: Path, kind: str, victim: Path) -> None:
    """Make `folder/.lock` something a lock must not write to."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling-symlink":  # following it would create a file wherever it points
        lock.symlink_to(victim.parent / "created-by-the-lock")
    elif kind == "symlink-inside":  # a link to the folder's own record
        (folder / "metrics.json").write_text(PRECIOUS)
        lock.symlink_to("metrics.json")
    elif kind == "hardlink":
        os.link(victim, lock)
    elif kind == "other-content":
        lock.write_text(PRECIOUS)
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "directory":
        lock.mkdir()


LOCK_KINDS = ["symlink", "dangling-symlink", "symlink-inside", "hardlink", "other-content", "fifo", "directory"]


@pytest.mark.parametrize("what", ["run", "study"])
@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_a_lock_never_writes_through_what_it_did_not_create(tmp_path, kind, what):
    victim = tmp_path / "results" / "metrics.json"
    victim.parent.mkdir()
    victim.write_text(PRECIOUS)
    folder = tmp_path / "f"
    _plant_lock(folder, kind, victim)
    with pytest.raises(ValueError, match=r"\.lock: .*(link|directory|regular file|other than a PID)"):
        with folder_lock(folder, what):
            pass
    assert victim.read_text() == PRECIOUS and not (victim.parent / "created-by-the-lock").exists()
    if kind == "symlink-inside":
        assert (folder / "metrics.json").read_text() == PRECIOUS
    if kind == "other-content":
        assert (folder / ".lock").read_text() == PRECIOUS


def test_a_linked_lock_in_a_run_folder_stops_the_run_and_destroys_nothing(tmp_path, data_root):
    victim = tmp_path / "results" / "metrics.json"
    victim.parent.mkdir()
    victim.write_text(PRECIOUS)
    _plant_lock(tmp_path / "runs" / "r", "symlink", victim)
    with pytest.raises(ValueError, match=r"\.lock: .*link"):
        train(_cfg(tmp_path, data_root, run_id="r"))
    assert victim.read_text() == PRECIOUS


def test_a_lock_file_left_by_an_earlier_holder_is_reused(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / ".lock").write_text("12345\n")  # what a killed holder leaves behind
    with folder_lock(folder):
        assert (folder / ".lock").read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_folder_linked_out_of_the_runs_folder_is_refused(tmp_path, data_root, resume):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")  # looks resumable
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "r").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        train(_cfg(tmp_path, data_root, run_id="r"), resume=resume)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["config.json"]  # not even a .lock


def test_a_link_inside_a_run_folder_pointing_out_is_refused(tmp_path, data_root):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="a link out of the run folder"):
        train(_cfg(tmp_path, data_root, run_id="r"))
    assert not list(elsewhere.iterdir())


def test_a_run_folder_linked_inside_the_runs_folder_still_runs(tmp_path, data_root):
    real = tmp_path / "runs" / "real"
    real.mkdir(parents=True)
    (tmp_path / "runs" / "alias").symlink_to(real, target_is_directory=True)
    train(_cfg(tmp_path, data_root, run_id="alias"))
    assert (real / "metrics.json").is_file()


def test_a_study_run_folder_linked_elsewhere_fails_that_run_only(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study = tmp_path / "study"
    study.mkdir()
    (study / "01_x").symlink_to(elsewhere, target_is_directory=True)
    status, error, _ = _run_entry(str(tmp_path / "nb.ipynb"), str(study / "01_x"), {}, "none", "01_sentiment")
    assert status == "failed" and "outside" in error and str(study / "01_x") in error
    assert not list(elsewhere.iterdir())


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev-zero"])
@pytest.mark.parametrize("split", ["dev", "test"])  # test: an optional file that is absent is skipped, not this
def test_a_data_path_that_is_not_a_file_says_what_it_is(tmp_path, kind, split):
    from minbert_core.data import file_path, load_split

    p = file_path("para", split, tmp_path)
    if kind == "directory":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)  # reading it would wait for a writer forever
    else:
        p.symlink_to("/dev/zero")  # reading it would never end
    expected = "is a directory" if kind == "directory" else "is not a regular file"
    with pytest.raises(ValueError, match=f"{p}: {expected}"):
        load_split("para", split, root=tmp_path)
    with pytest.raises(ValueError, match=expected):
        load_split("sst", "dev", path=p)


# ---- what a finished run keeps (issue 24 item 5) ----------------------------------------------------

def _metrics(run: Path) -> dict:
    import json

    return json.loads((run / "metrics.json").read_text())


def test_a_completed_run_drops_last_pt_and_keeps_safetensors_weights(tmp_path, data_root):
    from safetensors.torch import load_file

    run = train(_cfg(tmp_path, data_root, run_id="done"))
    ckpt = run / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.safetensors"]  # no optimizer state, no pickle
    assert "encoder.embeddings.word_embeddings.weight" in load_file(ckpt / "best.safetensors")
    kept = train(_cfg(tmp_path, data_root, run_id="kept", keep_last=True))
    assert (kept / "checkpoints" / "last.pt").is_file()


def test_a_killed_run_still_resumes_and_then_drops_last_pt(tmp_path, data_root):
    from helpers import stop_after

    cfg = _cfg(tmp_path, data_root, run_id="cut", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(2))
    assert (tmp_path / "runs" / "cut" / "checkpoints" / "last.pt").is_file()
    run = train(cfg, resume=True)
    assert _metrics(run)["status"] == "complete" and _metrics(run)["steps"] == 3  # 24 rows / 8, resumed at 2
    assert not (run / "checkpoints" / "last.pt").exists()


def test_resuming_a_completed_run_reports_it_and_changes_nothing(tmp_path, data_root, capsys):
    cfg = _cfg(tmp_path, data_root, run_id="done")
    run = train(cfg)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert train(cfg, resume=True) == run
    assert "done: already complete" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != ".lock"} == before
    with pytest.raises(ValueError, match="already holds a finished run"):  # without --resume, as before
        train(cfg)
    for damaged in ('{"status": "compl', "[1]"):  # a cut-short or non-object record: named, nothing overwritten
        (run / "metrics.json").write_text(damaged)
        with pytest.raises(ValueError, match=r"metrics\.json: (not valid JSON .* the run record is damaged|holds a list, "
                                             r"not a JSON object; not a run record)"):
            train(cfg)
        assert (run / "metrics.json").read_text() == damaged


def test_a_study_reruns_a_finished_run_missing_its_marker_as_a_resume(tmp_path, monkeypatch):
    import minbert_core.notebook_run as notebook_run

    seen = {}
    monkeypatch.setattr(notebook_run, "execute", lambda nb, out, params, kernel: seen.update(params))
    folder = tmp_path / "study" / "t2-sum"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text('{"status": "complete"}')  # killed before .complete was written
    assert _run_entry("nb.ipynb", str(folder), {}, "k", "02_multitask")[0] == "complete"
    assert seen.get("resume") is True
    (folder / "metrics.json").write_text('{"status": "diverged"}')  # not resumed: the run says why it stopped
    seen.clear()
    _run_entry("nb.ipynb", str(folder), {}, "k", "02_multitask")
    assert "resume" not in seen
    for damaged in ('{"status": "compl', "[1]"):  # cut short, or not an object: not a finished run, no error here
        (folder / "metrics.json").write_text(damaged)
        seen.clear()
        assert _run_entry("nb.ipynb", str(folder), {}, "k", "02_multitask")[0] == "complete"
        assert "resume" not in seen


def test_an_old_runs_best_pt_still_loads(tmp_path, data_root):
    """A run saved before safetensors: its best weights are a torch.save'd best.pt."""
    import torch

    from minbert_core.run_state import load_best, save_best

    cfg = _cfg(tmp_path, data_root, run_id="old", keep_last=True)
    run = train(cfg)
    ckpt = run / "checkpoints"
    weights = load_best(ckpt)
    torch.save(weights, ckpt / "best.pt")  # as the old code wrote it
    (ckpt / "best.safetensors").unlink()
    (run / "metrics.json").unlink()  # killed before its records: resuming loads the best weights
    before = (run / "predictions" / "sst-dev-output.csv").read_text()
    train(cfg, resume=True)
    assert (run / "predictions" / "sst-dev-output.csv").read_text() == before
    assert all(torch.equal(v, weights[k]) for k, v in load_best(ckpt).items())
    save_best(weights, ckpt)  # a newer best replaces the old file, so only one can be read
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("best")) == ["best.safetensors"]


def test_a_damaged_best_safetensors_is_named(tmp_path):
    from minbert_core.run_state import load_best

    (tmp_path / "best.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(ValueError, match="best.safetensors: not a loadable safetensors file"):
        load_best(tmp_path)
    with pytest.raises(FileNotFoundError, match="no best.safetensors"):
        load_best(tmp_path / "none")


def test_a_study_report_folder_linked_elsewhere_is_refused(tmp_path, monkeypatch):
    import minbert_core.study as study

    ran = []
    monkeypatch.setattr(study, "execute", lambda *a: ran.append(a))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "study"
    out.mkdir()
    (out / "report").symlink_to(elsewhere, target_is_directory=True)
    ex = study._Execution({"profiles": {"p": {}}}, "p", [], out, tmp_path, 1, "k")
    ex.run_report(out / "report")
    assert ex.runs[-1].status == "failed" and "outside" in ex.runs[-1].error and not ran
    assert not list(elsewhere.iterdir())
