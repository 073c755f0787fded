"""Hostile but fair input: no code runs from a run folder, runs stay in their folder, one writer per
folder, and typed parameters (issue: hardening)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
from helpers import stop_after

from minbert_core.cli import main
from minbert_core.runs import folder_lock
from minbert_core.study import check_parameters, run_study
from minbert_core.train import TrainConfig, train

FAST = dict(checkpoint="random:tiny", epochs=1, train_limit=24, eval_limit=16, batch_size=8,
            telemetry_every=0, max_length=32, tasks=("sst",), strategy="single")


def _cfg(tmp_path, data_root, **kw):
    return TrainConfig(**{**FAST, "runs_dir": str(tmp_path / "runs"), "data_dir": str(data_root), **kw})


class _Payload:
    """Unpickling this calls os.makedirs(marker): the planted checkpoint's 'code'."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_resume_never_executes_a_planted_pickle(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, run_id="victim", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(1))
    last = tmp_path / "runs" / "victim" / "checkpoints" / "last.pt"
    assert last.is_file()
    marker = tmp_path / "PWNED"
    with open(last, "wb") as f:
        pickle.dump({"model": _Payload(str(marker))}, f)
    with pytest.raises(ValueError, match=r"last\.pt: not a loadable minbert checkpoint.*not executed"):
        train(cfg, resume=True)
    assert not marker.exists()


def test_a_real_checkpoint_resumes_with_weights_only(tmp_path, data_root):
    """The resumable state is tensors and plain containers: weights_only loads it."""
    import torch

    cfg = _cfg(tmp_path, data_root, run_id="ok", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(1))
    st = torch.load(tmp_path / "runs" / "ok" / "checkpoints" / "last.pt", weights_only=True)
    assert isinstance(st["rng"]["numpy"][1], list)
    assert train(cfg, resume=True).name == "ok"


@pytest.mark.parametrize("run_id", ["../../escaped", "/abs/path", "a/b", "..", ".hidden", "x y"])
def test_run_id_is_one_safe_folder_name(tmp_path, data_root, run_id, capsys):
    with pytest.raises(ValueError, match=r"run_id \(--run-id\)"):
        _cfg(tmp_path, data_root, run_id=run_id)
    code = main(["train", "--checkpoint", "random:tiny", "--runs-dir", str(tmp_path / "runs"),
                 "--run-id", run_id, "--data-dir", str(data_root)])
    assert code == 2 and "--run-id" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_second_writer_of_a_run_fails_naming_the_holder(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, run_id="dup")
    with folder_lock(tmp_path / "runs" / "dup"):
        with pytest.raises(ValueError, match=f"in use by process {os.getpid()}"):
            train(cfg)
    assert train(cfg).name == "dup"  # released: the run goes ahead


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    code = ("import sys, time\nfrom minbert_core.runs import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by process {p.pid}"):
            with folder_lock(folder):
                pass
    finally:
        p.kill()
        p.wait()
    with folder_lock(folder):  # the kernel dropped the dead process's lock
        pass


def test_a_study_folder_has_one_writer(tmp_path, data_root):
    out = tmp_path / "study"
    with folder_lock(out, "study"):
        with pytest.raises(ValueError, match="study folder is in use by process"):
            run_study("smoke", out)


def test_resume_of_a_missing_run_is_refused(tmp_path, data_root):
    with pytest.raises(ValueError, match="holds no run to resume"):
        train(_cfg(tmp_path, data_root, run_id="never"), resume=True)


@pytest.mark.parametrize("key,value,expected", [
    ("lstm", "no", False), ("lstm", "true", True), ("lr_finetune", "1e-5", 1e-5), ("epochs", "3", 3),
    ("epochs", 2.0, 2), ("tasks", "sst,para", ("sst", "para"))])
def test_unambiguous_strings_are_read(key, value, expected):
    assert getattr(TrainConfig(**{key: value}), key) == expected


@pytest.mark.parametrize("key,value", [
    ("epochs", 2.5), ("seed", "x"), ("head_dropout", 1.5), ("train_limit", -5), ("batch_size", "abc"),
    ("lstm", "maybe"), ("lstm", 2), ("epochs", True), ("checkpoint", 3), ("encoder_dropout", 1.0)])
def test_bad_values_are_refused_naming_the_field(key, value):
    with pytest.raises(ValueError, match=f"^{key} must be"):
        TrainConfig(**{key: value})


def test_misspelled_notebook_parameter_fails_before_training():
    ns = {"strategy": "sum", "epochs": 1, "epochz": 3, "np": os, "_hidden": 1}
    with pytest.raises(ValueError, match="02_multitask: unknown parameter.*epochz"):
        check_parameters(ns, "02_multitask")
    check_parameters({"strategy": "sum", "epochs": 1}, "02_multitask")


# ---- clear errors: one line naming the file, flag or key ------------------------------------------

def _copy_data(data_root, tmp_path):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(data_root, d)
    return d


def test_non_utf8_byte_names_file_and_line(data_root, tmp_path):
    from minbert_core.data import load_split

    d = _copy_data(data_root, tmp_path)
    p = d / "ids-sst-dev.csv"
    lines = p.read_bytes().split(b"\n")
    lines[6] = lines[6][:20] + b"\xe9" + lines[6][20:]
    p.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match=r"ids-sst-dev.csv:7: not UTF-8 text \(byte 0xe9\)"):
        load_split("sst", "dev", root=d)


def test_nul_byte_in_a_sentence_is_reported_and_skipped(data_root, tmp_path, caplog):
    from minbert_core.data import load_split

    d = _copy_data(data_root, tmp_path)
    p = d / "ids-sst-dev.csv"
    lines = p.read_text().split("\n")
    lines[3] = lines[3].replace(" ", " \x00", 1)
    p.write_text("\n".join(lines))
    s = load_split("sst", "dev", root=d)
    assert s.skipped == [(4, "NUL byte in a sentence")] and len(s) == 1100
    assert "ids-sst-dev.csv:4: skipped row: NUL byte" in caplog.text


def test_missing_file_hint_names_the_data_dir_given(tmp_path):
    from minbert_core.data import load_split

    with pytest.raises(FileNotFoundError, match=f"--data-dir that has it \\(now: {tmp_path}\\)"):
        load_split("sst", "dev", root=tmp_path)


@pytest.mark.parametrize("fname,damage", [("model.safetensors", b"garbage"), ("pytorch_model.bin", b"\x80\x02garb")])
def test_damaged_weights_name_the_file(tiny_checkpoint, tmp_path, fname, damage):
    import shutil

    from minbert_core.model import BertModel

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    for f in ("model.safetensors", "pytorch_model.bin"):
        (folder / f).unlink(missing_ok=True)
    (folder / fname).write_bytes(damage)
    with pytest.raises(ValueError, match=f"{fname}: cannot read the weights"):
        BertModel.from_pretrained(folder)


def test_truncated_last_checkpoint_names_it(tmp_path, data_root, capsys):
    cfg = _cfg(tmp_path, data_root, run_id="cut", checkpoint_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(1))
    last = tmp_path / "runs" / "cut" / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    args = ["train", "--checkpoint", "random:tiny", "--epochs", "1", "--train-limit", "24", "--eval-limit", "16",
            "--batch-size", "8", "--telemetry-every", "0", "--max-length", "32", "--checkpoint-every", "1",
            "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_root), "--run-id", "cut", "--resume"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last.pt: not a loadable minbert checkpoint" in err and "from scratch" in err


def test_disk_full_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    from minbert_core import atomic

    target = tmp_path / "metrics.json"
    target.write_text("old")

    def full(fd, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", full)
    with pytest.raises(OSError, match=f"{target}: no space left on device"):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*part"))


def test_divergence_is_one_line_and_the_folder_says_so(tmp_path, data_root, capsys, monkeypatch):
    import torch

    from minbert_core import tasks

    spec = tasks.TASKS["sst"]
    monkeypatch.setitem(tasks.TASKS, "sst", tasks.TaskSpec(**{**spec.__dict__,
                                                              "loss": lambda o, y: o.sum() * torch.tensor(float("nan"))}))
    args = ["train", "--checkpoint", "random:tiny", "--epochs", "1", "--train-limit", "24", "--eval-limit", "16",
            "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_root), "--run-id", "nan"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "Traceback" not in err
    monkeypatch.setitem(tasks.TASKS, "sst", spec)
    assert main(args) == 2
    assert "holds a run that diverged" in capsys.readouterr().err


def test_cli_errors_are_one_line_with_usage_exit_codes(tmp_path, data_root, capsys):
    base = ["--checkpoint", "random:tiny", "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)]
    assert main(["train", *base, "--train-limit", "-5"]) == 2
    err = capsys.readouterr().err
    assert err == "error: train_limit must be >= 0 (0 = all rows); got -5\n"
    assert main(["train", *base, "--run-id", "ghost", "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    with pytest.raises(ValueError):  # --debug shows the real exception
        main(["--debug", "train", *base, "--train-limit", "-5"])


# ---- property and fault-injection tests ---------------------------------------------------------

def _check_split_or_error(path, task="para", split="dev"):
    """Either valid examples with every row accounted for, or one ValueError line naming the file."""
    from minbert_core.data import load_split

    try:
        s = load_split(task, split, path=path)
    except ValueError as e:
        msg = str(e)
        assert msg.startswith(str(path)) and "\n" not in msg.split("; header is")[0], msg
        return
    assert s.rows_read == len(s.examples) + len(s.skipped)  # nothing dropped silently
    for ex in s.examples:
        assert ex.text_a and ex.text_b and "\x00" not in ex.text_a + ex.text_b and ex.label in (0, 1)


def test_csv_reader_property_arbitrary_rows_and_bytes(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    field = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
    row = st.lists(field, min_size=0, max_size=6)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=st.lists(row, max_size=8), junk=st.binary(max_size=64), use_junk=st.booleans())
    def check(rows, junk, use_junk):
        p = tmp_path / "quora-dev.csv"
        if use_junk:
            p.write_bytes(b"id\tsentence1\tsentence2\tis_duplicate\n" + junk)
        else:
            lines = ["id\tsentence1\tsentence2\tis_duplicate"] + ["\t".join(r) for r in rows]
            p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _check_split_or_error(p)

    check()


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path, data_root):
    """SIGKILL a training process at random steps, and while it writes a checkpoint, then resume."""
    import csv
    import json
    import random
    import signal
    import time

    runs = tmp_path / "runs"
    common = ["multitask", "--checkpoint", "random:tiny", "--epochs", "2", "--train-limit", "96", "--eval-limit",
              "24", "--batch-size", "8", "--max-length", "32", "--telemetry-every", "2", "--checkpoint-every", "1",
              "--runs-dir", str(runs), "--data-dir", str(data_root)]
    cmd = [sys.executable, "-m", "minbert_core", *common]
    subprocess.run([*cmd, "--run-id", "whole"], check=True, capture_output=True)
    run = runs / "killed"
    rng = random.Random(0)
    kills = {"step": 0, "mid-write": 0}
    hist = run / "history.csv"
    for attempt in range(12):  # 8 kills, then let it finish
        resume = ["--resume"] if (run / "config.json").is_file() else []
        start = sum(1 for _ in hist.open()) - 1 if hist.is_file() else 0
        p = subprocess.Popen([*cmd, "--run-id", "killed", *resume], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        mid_write, target = attempt % 2 == 1, start + rng.randint(2, 4)  # progress between kills
        while p.poll() is None and attempt < 8:
            ckpt = run / "checkpoints"
            writing = ckpt.is_dir() and any(f.name.endswith(".part") for f in ckpt.iterdir())
            steps = sum(1 for _ in hist.open()) - 1 if hist.is_file() else 0
            if steps >= target and (writing or not mid_write):
                p.send_signal(signal.SIGKILL)
                kills["mid-write" if mid_write else "step"] += 1
                break
            time.sleep(0.001)
        p.wait()
        if (run / "metrics.json").is_file():
            break
    assert kills["step"] >= 2 and kills["mid-write"] >= 2, kills
    assert (run / "metrics.json").is_file()
    a, b = (json.loads((runs / r / "metrics.json").read_text()) for r in ("whole", "killed"))
    for key in ("best_dev", "final_dev", "best_epoch", "steps", "baselines"):
        assert a[key] == b[key], key

    def history(name):  # every logged value except the wall-clock throughput
        return [{k: v for k, v in r.items() if k != "examples_per_s"}
                for r in csv.DictReader((runs / name / "history.csv").open())]

    assert history("whole") == history("killed") and len(history("whole")) > 20
    for f in ("predictions/sst-dev-output.csv", "predictions/sts-test-output.csv", "telemetry.csv"):
        assert (runs / "whole" / f).read_text() == (run / f).read_text(), f


def test_papermill_misspelled_or_mistyped_parameter_fails_before_training(tmp_path, data_root):
    """Plain papermill only warns about `-p epochz 3`; the notebook itself refuses it, and a bad type
    names the parameter instead of a TypeError deep inside."""
    import papermill as pm

    from minbert_core.study import NOTEBOOKS_DIR

    nb = str(NOTEBOOKS_DIR / "02_multitask.ipynb")
    runs = tmp_path / "runs"
    for params, expected in (({"epochz": 3}, "unknown parameter.*epochz"),
                             ({"batch_size": "abc"}, "batch_size must be int"),
                             ({"lr_finetune": float("nan")}, r"lr_finetune must be float \(a finite number\)")):
        with pytest.raises(pm.PapermillExecutionError, match=expected):
            pm.execute_notebook(nb, str(tmp_path / "out.ipynb"), kernel_name="minbert", progress_bar=False,
                                parameters={**params, "runs_dir": str(runs), "data_dir": str(data_root)})
    assert not runs.exists()  # nothing trained, no run folder
