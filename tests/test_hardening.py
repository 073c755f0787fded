"""Hostile but fair input: no code runs from a run folder, runs stay in their folder, one writer per
folder, and typed parameters (issue: hardening)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

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
        train(cfg, stop_after_steps=1)
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
        train(cfg, stop_after_steps=1)
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
    ("epochs", 2.5), ("seed", "x"), ("hidden_dropout", 1.5), ("train_limit", -5), ("batch_size", "abc"),
    ("lstm", "maybe"), ("lstm", 2), ("epochs", True), ("checkpoint", 3), ("encoder_dropout", 1.0)])
def test_bad_values_are_refused_naming_the_field(key, value):
    with pytest.raises(ValueError, match=f"^{key} must be"):
        TrainConfig(**{key: value})


def test_misspelled_notebook_parameter_fails_before_training():
    ns = {"strategy": "sum", "epochs": 1, "epochz": 3, "np": os, "_hidden": 1}
    with pytest.raises(ValueError, match="02_multitask: unknown parameter.*epochz"):
        check_parameters(ns, "02_multitask")
    check_parameters({"strategy": "sum", "epochs": 1}, "02_multitask")
