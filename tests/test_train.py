"""The training loop on tiny random BERTs: run records, strategies, structure variants, resume."""
from __future__ import annotations

import argparse

import collections
import math
import csv
import json

import pytest
from helpers import stop_after
import torch

from minbert_core.cli import main
from minbert_core.run_state import load_best
from minbert_core.train import Trainer, TrainConfig, TrainingDiverged, train
from minbert_core.train_hooks import Hook

FAST = dict(checkpoint="random:tiny", epochs=2, train_limit=48, eval_limit=40, batch_size=8,
            lr_finetune=1e-3, telemetry_every=2, max_length=48)


def _cfg(tmp_path, data_root, **kw):
    return TrainConfig(**{**FAST, "runs_dir": str(tmp_path / "runs"), "data_dir": str(data_root), **kw})


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_multitask_pcgrad_run_folder_has_every_record(tmp_path, data_root):
    run = train(_cfg(tmp_path, data_root, strategy="pcgrad", run_id="mt", pooling="cls"))  # cls: pooler group
    m = _metrics(run)
    assert m["status"] == "complete" and m["best_epoch"] in (1, 2)
    for k in ("sst", "para"):
        assert 0.0 <= m["best_dev"][k] <= 1.0
    assert -1.0 <= m["best_dev"]["sts"] <= 1.0 and 0.0 <= m["best_dev"]["overall"] <= 1.0
    assert m["wall_time_s"] > 0 and m["train_examples_per_s"] > 0
    assert any("quora-test-student.csv not found" in w for w in m["warnings"])
    c = json.loads((run / "config.json").read_text())
    assert c["config"]["strategy"] == "pcgrad" and c["environment"]["torch"] == torch.__version__
    assert "git_commit" in c["environment"] and c["environment"]["device"] == "cpu"
    assert c["data"]["para"]["dev"]["rows_read"] == 20214 and c["data"]["para"]["dev"]["skipped"] == 2
    assert c["data"]["sst"]["train"]["used"] == 48
    hist = list(csv.DictReader((run / "history.csv").open()))
    assert {"loss_sst", "loss_para", "loss_sts", "lr", "examples_per_s"} <= set(hist[0])
    assert sum(r["kind"] == "dev" for r in hist) == 2
    tele = list(csv.DictReader((run / "telemetry.csv").open()))
    groups = {r["group"] for r in tele}
    assert {"overall", "embeddings", "layer_0", "layer_1", "pooler"} == groups
    assert {(r["task_a"], r["task_b"]) for r in tele} == {("sst", "para"), ("sst", "sts"), ("para", "sts")}
    assert all(-1.0 <= float(r["cosine"]) <= 1.0 for r in tele)
    assert (run / "checkpoints" / "best.safetensors").is_file()
    preds = sorted(p.name for p in (run / "predictions").iterdir())
    assert preds == ["para-dev-output.csv", "sst-dev-output.csv", "sst-test-output.csv",
                     "sts-dev-output.csv", "sts-test-output.csv"]
    lines = (run / "predictions" / "sst-test-output.csv").read_text().splitlines()
    assert lines[0] == "id \t Predicted_Sentiment " and len(lines) == 41
    ident, value = lines[1].split(" , ")
    assert len(ident) == 25 and value.strip() in {"0", "1", "2", "3", "4"}
    assert (run / "predictions" / "sts-dev-output.csv").read_text().startswith("id \t Predicted_Similiary \n")
    assert (run / "predictions" / "para-dev-output.csv").read_text().startswith("id \t Predicted_Is_Paraphrase \n")


def test_sum_run_records_telemetry_without_projecting(tmp_path, data_root):
    run = train(_cfg(tmp_path, data_root, strategy="sum", epochs=1))
    tele = list(csv.DictReader((run / "telemetry.csv").open()))
    assert tele and all(r["projected_a"] == "False" and r["projected_b"] == "False" for r in tele)


def test_single_strategy_trains_sst_and_evaluates_all(tmp_path, data_root):
    run = train(_cfg(tmp_path, data_root, strategy="single", epochs=1))
    hist = list(csv.DictReader((run / "history.csv").open()))
    train_rows = [r for r in hist if r["kind"] == "train"]
    assert train_rows[0]["loss_sst"] and "loss_para" not in hist[0]
    assert set(_metrics(run)["best_dev"]) == {"sst", "para", "sts", "overall"}
    assert not (run / "telemetry.csv").exists()  # one task: no pairs to compare


@pytest.mark.parametrize("variant", [
    dict(lstm=True), dict(lstm=True, task_layers=2, task_hidden=16, head_dropout=0.5),
    dict(pair_encoding="bi"), dict(pooling="mean", task_layers=1), dict(lstm=True, pooling="mean"),
])
def test_structure_variants_train(tmp_path, data_root, variant):
    run = train(_cfg(tmp_path, data_root, epochs=1, **variant))
    m = _metrics(run)
    assert m["status"] == "complete" and 0 <= m["best_dev"]["overall"] <= 1
    if variant.get("lstm"):
        groups = {r["group"] for r in csv.DictReader((run / "telemetry.csv").open())}
        assert "lstm" in groups


def test_pretrain_freezes_encoder_and_cache_changes_nothing(tmp_path, data_root):
    base = _cfg(tmp_path, data_root, tasks=("cfimdb",), strategy="single", single_task="cfimdb",
                mode="pretrain", epochs=2, max_length=64)
    tr = Trainer(base, tmp_path / "probe")
    before = {k: v.clone() for k, v in tr.model.encoder.state_dict().items()}
    assert tr.cached and all(not p.requires_grad for p in tr.model.encoder.parameters())
    tr.run()
    assert all(torch.equal(before[k], v) for k, v in tr.model.encoder.state_dict().items())
    a = _metrics(train(base))
    b = _metrics(train(TrainConfig(**{**base.__dict__, "cache_features": False})))
    assert a["best_dev"]["cfimdb"] == pytest.approx(b["best_dev"]["cfimdb"], abs=1e-6)


@pytest.mark.parametrize("strategy", ["pcgrad", "uncertainty"])  # uncertainty: state the optimizer trains
def test_resume_after_interruption_matches_uninterrupted(tmp_path, data_root, strategy):
    cfg = _cfg(tmp_path, data_root, checkpoint_every=2, epochs=2, run_id="full", head_dropout=0.3,
               strategy=strategy)
    full = _metrics(train(cfg))
    cut = TrainConfig(**{**cfg.__dict__, "run_id": "cut"})
    with pytest.raises(KeyboardInterrupt):
        train(cut, on_step=stop_after(5))  # killed mid-epoch 2 (6 steps per epoch); last checkpoint at step 4
    assert not (tmp_path / "runs" / "cut" / "metrics.json").exists()
    resumed = _metrics(train(cut, resume=True))
    for key in ("best_dev", "final_dev", "best_epoch", "steps"):
        assert resumed[key] == full[key], key
    def losses(run_id):  # every logged value except the wall-clock throughput
        rows = csv.DictReader((tmp_path / "runs" / run_id / "history.csv").open())
        return [{k: v for k, v in r.items() if k != "examples_per_s"} for r in rows]

    assert losses("cut") == losses("full")


def test_resume_after_the_last_epoch_but_before_the_records(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, epochs=1, run_id="late")
    run = train(cfg)
    first = _metrics(run)
    (run / "metrics.json").unlink()  # killed after the final checkpoint, before metrics were written
    again = _metrics(train(cfg, resume=True))
    assert again["best_dev"] == first["best_dev"] and again["final_dev"] == first["final_dev"]


def test_a_run_folder_moved_elsewhere_resumes_there(tmp_path, data_root):
    """A study continued on another machine: the interrupted run's folder now lives under another runs_dir."""
    import shutil

    cfg = _cfg(tmp_path, data_root, checkpoint_every=2, epochs=1, run_id="moved")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(3))
    shutil.move(tmp_path / "runs" / "moved", tmp_path / "elsewhere" / "moved")
    run = train(TrainConfig(**{**cfg.__dict__, "runs_dir": str(tmp_path / "elsewhere")}), resume=True)
    assert run == tmp_path / "elsewhere" / "moved" and _metrics(run)["status"] == "complete"


def test_resume_refuses_a_changed_config(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, epochs=1, run_id="r")
    train(cfg)
    with pytest.raises(ValueError, match="differs from the saved run in batch_size"):
        train(TrainConfig(**{**cfg.__dict__, "batch_size": 4}), resume=True)
    with pytest.raises(ValueError, match="already holds a finished run"):
        train(cfg)


class PoisonLoss(Hook):
    """Through the trainer's public loss seam (`task_loss`): `task`'s loss is NaN on its n-th step."""

    def __init__(self, task: str, n: int):
        self.task, self.n, self.calls = task, n, collections.Counter()

    def on_start(self, trainer, global_step):
        losses = trainer.task_loss

        def poisoned(task, batch, share=1.0):
            fn = losses(task, batch, share)
            self.calls[task] += 1
            return (lambda: fn() * float("nan")) if task == self.task and self.calls[task] == self.n else fn
        trainer.task_loss = poisoned


def test_non_finite_loss_stops_with_step_and_task(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, checkpoint_every=2, run_id="nan")
    with pytest.raises(TrainingDiverged, match=r"step 3 \(epoch 1\), task 'para': loss is nan.*last good checkpoint kept"):
        train(cfg, hooks=[PoisonLoss("para", 4)])
    run = tmp_path / "runs" / "nan"
    st = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert st["global_step"] == 2  # the good checkpoint before the bad step
    assert _metrics(run)["status"] == "diverged"


class EventLog(Hook):
    """Records the events a run sends its hooks, and stops it after epoch `stop_after` (0-based)."""

    def __init__(self, stop_after: int):
        self.stop_after, self.events = stop_after, []

    def on_start(self, trainer, global_step):
        self.events.append(("start", global_step))

    def on_epoch_start(self, trainer, epoch, step):
        self.events.append(("epoch_start", epoch, step))

    def on_step_end(self, trainer, info):
        # the checkpoint hook ran before this one: last.pt holds this step when one was due
        saved = torch.load(trainer.run_dir / "checkpoints" / "last.pt", weights_only=True)["global_step"]
        self.events.append(("step", info.epoch, info.step, info.global_step, saved, sorted(info.losses)))

    def on_epoch_end(self, trainer, epoch, dev, global_step):
        self.events.append(("epoch_end", epoch, global_step, sorted(dev)))

    def should_stop(self, trainer, epoch, dev):
        return "the test's hook says so" if epoch == self.stop_after else ""

    def on_finish(self, trainer, metrics):
        self.events.append(("finish", metrics["status"], metrics["steps"]))


def test_hooks_see_the_loops_events_in_order_and_may_stop_it(tmp_path, data_root):
    """A hook passed to train() sees start, each epoch and step (after the step's checkpoint), each epoch's
    dev scores and the end; its should_stop ends the run after that epoch."""
    log = EventLog(stop_after=1)
    run = train(_cfg(tmp_path, data_root, tasks=("sst", "sts"), strategy="sum", epochs=3, epoch_rule="fixed",
                     steps_per_epoch=2, checkpoint_every=1, telemetry_every=0), hooks=[log])
    tasks, dev = ["sst", "sts"], ["sst", "sts"]
    assert log.events == [
        ("start", 0),
        ("epoch_start", 0, 0), ("step", 0, 1, 1, 1, tasks), ("step", 0, 2, 2, 2, tasks), ("epoch_end", 0, 2, dev),
        ("epoch_start", 1, 0), ("step", 1, 1, 3, 3, tasks), ("step", 1, 2, 4, 4, tasks), ("epoch_end", 1, 4, dev),
        ("finish", "complete", 4)]
    m = _metrics(run)
    assert m["steps"] == 4 and m["stopped"] == "stopped after epoch 2 of 3: the test's hook says so"


def test_epoch_rules(tmp_path, data_root):
    common = dict(train_limit=0, eval_limit=8)
    small = Trainer(_cfg(tmp_path, data_root, **common, tasks=("sst", "cfimdb")), tmp_path / "a")
    assert small.steps_per_epoch == 1707 // 8 + 1  # cfimdb has fewer batches than sst
    large = Trainer(_cfg(tmp_path, data_root, **common, tasks=("sst", "cfimdb"), epoch_rule="largest"), tmp_path / "b")
    assert large.steps_per_epoch == 8544 // 8
    fixed = Trainer(_cfg(tmp_path, data_root, epoch_rule="fixed", steps_per_epoch=7), tmp_path / "c")
    assert fixed.steps_per_epoch == 7


def test_config_errors():
    with pytest.raises(ValueError, match="unknown TrainConfig key.*stratgy"):
        TrainConfig.from_dict({"stratgy": "sum"})
    with pytest.raises(ValueError, match="strategy must be one of"):
        TrainConfig(strategy="mgda")
    with pytest.raises(ValueError, match="unknown task 'qqp'"):
        TrainConfig(tasks=("qqp",))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine has the device this test asks for")
def test_cuda_requested_without_cuda_is_a_clear_error():
    from minbert_core.train import resolve_device

    with pytest.raises(ValueError, match="device 'cuda' requested but CUDA is not available"):
        resolve_device("cuda")


def test_cli_multitask_and_train(tmp_path, data_root, capsys):
    args = ["--checkpoint", "random:tiny", "--epochs", "1", "--train-limit", "16", "--eval-limit", "16",
            "--runs-dir", str(tmp_path), "--data-dir", str(data_root)]
    assert main(["multitask", "--tasks", "sst,para,sts,cfimdb", "--strategy", "sum", *args]) == 0
    assert main(["train", "--task", "cfimdb", "--mode", "pretrain", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("run folder:") == 2
    assert main(["multitask", "--strategy", "nope", *args]) == 2


@pytest.mark.parametrize("cmd", ["multitask", "train"])
def test_every_config_flag_prints_its_reason_in_help(cmd, capsys):
    """Every flag of `minbert multitask --help` has help text beyond its default (the field's metadata),
    including fields whose reason spans several lines (--lr-head, --pooling, --loss-weights)."""
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at spaces and hyphens
    from minbert_core.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd").choices[cmd]
    # flags a command refuses (minbert train's multi-task ones) are accepted but not listed
    flags = [a for a in sub._actions if a.option_strings and a.dest != "help" and a.help != argparse.SUPPRESS]
    assert len(flags) >= (40 if cmd == "multitask" else 30)  # train hides its 8 multi-task flags
    for a in flags:
        reason = (a.help or "").rsplit("(default:", 1)[0].strip()
        assert len(reason) > 3, f"{a.option_strings[0]} prints no help"
        assert "".join(reason.split()) in text, f"{a.option_strings[0]}: its help is not in --help"


def test_config_readers_do_not_import_the_training_loop():
    """The CLI, the plan, the study and the report read TrainConfig from train_config, not train; the
    training hooks, which train imports, do not import it back."""
    import subprocess
    import sys

    code = ("import sys, minbert_core.cli, minbert_core.plan, minbert_core.study, minbert_core.report, "
            "minbert_core.run_folder, minbert_core.train_hooks; from minbert_core.cli import build_parser; build_parser(); "
            "print('minbert_core.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_packaged_minilm_finetune_beats_majority(tmp_path, data_root):
    """A real check that learning happens: MiniLM fine-tuned on 400 SST rows, 2 epochs (~25 s)."""
    cfg = TrainConfig(tasks=("sst",), strategy="single", epochs=2, train_limit=400, eval_limit=300,
                      batch_size=16, lr_finetune=1e-4, max_length=64, head_dropout=0.1, telemetry_every=0,
                      runs_dir=str(tmp_path), data_dir=str(data_root))
    tr_dev = [e.label for e in __import__("minbert_core.data", fromlist=["x"]).load_split(
        "sst", "dev", root=data_root, limit=300).examples]
    majority = max(collections.Counter(tr_dev).values()) / len(tr_dev)
    m = _metrics(train(cfg))
    acc = m["best_dev"]["sst"]
    assert acc > majority + 0.05, (acc, majority)
    b = m["baselines"]["sst"]  # the run record names the same baseline and calls the run learned
    assert b["baseline"] == pytest.approx(majority) and b["rows"] == 300 and b["learned"] and m["learned"]


def test_run_that_did_not_learn_is_named(tmp_path, data_root, capsys):
    """Baselines on the evaluated rows: majority share for accuracies, r = 0 for STS; a warning at the end."""
    run = train(_cfg(tmp_path, data_root, strategy="single", epochs=1, lr_finetune=0.0))  # lr 0: learns nothing
    m = _metrics(run)
    b = m["baselines"]
    gold = [e.label for e in __import__("minbert_core.data", fromlist=["x"]).load_split(
        "para", "dev", root=data_root, limit=40).examples]
    share = max(collections.Counter(gold).values()) / len(gold)
    assert b["para"]["baseline"] == pytest.approx(share) and b["para"]["rows"] == 40
    assert b["para"]["margin"] == pytest.approx(2 * (share * (1 - share) / 40) ** 0.5)
    assert b["sts"]["baseline"] == 0.0 and b["sts"]["trivial"] == "r = 0"
    assert not b["para"]["trained"] and not b["sts"]["trained"] and b["sst"]["trained"]
    assert not b["sst"]["learned"] and m["learned"] is False
    err = capsys.readouterr().err
    assert "did not learn sst" in err and "did not learn para" not in err  # untrained tasks: expected


def test_multitask_with_frozen_encoder_trains_heads(tmp_path, data_root):
    """mode=pretrain with sum (telemetry on) or pcgrad: nothing is shared, heads train on their own tasks."""
    for strategy in ("sum", "pcgrad"):
        run = train(_cfg(tmp_path, data_root, strategy=strategy, mode="pretrain", epochs=1, telemetry_every=1))
        assert _metrics(run)["status"] == "complete"
        assert not (run / "telemetry.csv").exists()  # no shared parameters: no conflicts to record
    lstm = train(_cfg(tmp_path, data_root, strategy="pcgrad", mode="pretrain", epochs=1, lstm=True))
    assert (lstm / "telemetry.csv").is_file()  # the bi-LSTM is shared and trained


def test_loss_weights_scale_the_task_loss(tmp_path, data_root):
    """A weight multiplies the task's loss (so its gradient); history records the unweighted loss."""
    cfg = _cfg(tmp_path, data_root, strategy="sum", epochs=1, telemetry_every=0, loss_weights="sts=0.5")
    assert cfg.weight("sts") == 0.5 and cfg.weight("sst") == 1.0
    tr = Trainer(cfg, tmp_path / "w")
    batch = tr.streams["sts"].next()
    tr.model.eval()
    torch.manual_seed(0)
    weighted = tr.task_loss("sts", batch)()
    plain = Trainer(_cfg(tmp_path, data_root, strategy="sum", epochs=1, telemetry_every=0), tmp_path / "p")
    plain.model.eval()
    assert weighted.item() == pytest.approx(0.5 * plain.task_loss("sts", batch)().item(), rel=1e-5)
    for bad in ("sts", "qqp=1", "sts=x", "sts=-1"):
        with pytest.raises(ValueError, match="loss_weights"):
            _cfg(tmp_path, data_root, loss_weights=bad)


def test_dev_limits_cap_one_task_dev_only(tmp_path, data_root):
    tr = Trainer(_cfg(tmp_path, data_root, strategy="single", eval_limit=40, dev_limits="para=12"), tmp_path / "d")
    assert len(tr.data["para"]["dev"]) == 12 and len(tr.data["sst"]["dev"]) == 40
    assert len(tr.data["sst"]["test"]) == 40  # test keeps eval_limit


def test_lr_head_trains_new_layers_faster(tmp_path, data_root):
    """Heads and the bi-LSTM get lr_head when fine-tuning; the encoder keeps lr_finetune."""
    tr = Trainer(_cfg(tmp_path, data_root, lstm=True, lr_finetune=1e-4, lr_head=1e-3), tmp_path / "h")
    enc, new = tr.optimizer.param_groups
    assert enc["lr"] == 1e-4 and new["lr"] == 1e-3
    assert {id(p) for p in enc["params"]} == {id(p) for p in tr.model.encoder.parameters()}
    assert {id(p) for p in tr.model.lstm.parameters()} <= {id(p) for p in new["params"]}
    same = Trainer(_cfg(tmp_path, data_root, lr_finetune=1e-4), tmp_path / "s")
    assert [g["lr"] for g in same.optimizer.param_groups] == [1e-4, 1e-4]  # 0: one rate, as the original


def test_a_strategys_own_weights_get_lr_task_weights_else_the_heads_rate(tmp_path, data_root):
    """GradNorm's w (and uncertainty's log-variances) in a group of their own, undecayed, at lr_task_weights;
    at 0 they keep the heads' rate, as every run before the setting did."""
    own = Trainer(_cfg(tmp_path, data_root, strategy="gradnorm", lr_finetune=1e-4, lr_head=1e-3,
                       lr_task_weights=1e-2, weight_decay=0.01), tmp_path / "w")
    enc, new, weights = own.optimizer.param_groups
    assert (enc["lr"], new["lr"], weights["lr"], weights["weight_decay"]) == (1e-4, 1e-3, 1e-2, 0.0)
    assert [id(p) for p in weights["params"]] == [id(p) for p in own.strategy.parameters()]
    default = Trainer(_cfg(tmp_path, data_root, strategy="uncertainty", lr_finetune=1e-4, lr_head=1e-3),
                      tmp_path / "d")
    assert [g["lr"] for g in default.optimizer.param_groups] == [1e-4, 1e-3, 1e-3]


def test_bf16_autocast_on_cpu(tmp_path, data_root):
    """bf16 autocast runs on the CPU too, so its code path is tested where there is no GPU."""
    def first_losses(**kw):
        run = train(_cfg(tmp_path, data_root, epochs=1, telemetry_every=0, **kw))
        row = next(r for r in csv.DictReader((run / "history.csv").open()) if r["kind"] == "train")
        return [float(row[f"loss_{t}"]) for t in ("sst", "para", "sts")], _metrics(run)

    bf, mb = first_losses(precision="bf16", run_id="bf16")
    fp, _ = first_losses(run_id="fp32")
    assert mb["status"] == "complete" and all(math.isfinite(x) for x in bf)
    assert bf != fp and bf == pytest.approx(fp, rel=3e-2)  # bf16 arithmetic: close, not equal


def test_hidden_dropout_is_read_as_head_dropout_for_one_release(tmp_path, data_root, capsys):
    """The old name keeps working, with a warning, in configs, the CLI, the plan and old run records."""
    import warnings

    import yaml

    from minbert_core.cli import build_parser
    from minbert_core.report import load_run
    from minbert_core.study import expand, load_plan

    with pytest.warns(FutureWarning, match="hidden_dropout is deprecated, use head_dropout"):
        assert TrainConfig.from_dict({"hidden_dropout": 0.5}).head_dropout == 0.5
    with pytest.raises(ValueError, match="both hidden_dropout=0.5 and head_dropout=0.1"):
        TrainConfig.from_dict({"hidden_dropout": 0.5, "head_dropout": 0.1})
    a = build_parser().parse_args(["multitask", "--hidden-dropout", "0.2"])
    assert a.head_dropout == 0.2 and "--hidden-dropout is deprecated" in capsys.readouterr().err
    plan = load_plan()
    plan["profiles"]["smoke"]["01_sentiment"] = {"hidden_dropout": 0.4}
    with pytest.warns(FutureWarning, match="profile smoke, 01_sentiment: hidden_dropout is deprecated"):
        runs = expand(plan, "smoke", tmp_path)
    t1 = [r for r in runs if r.notebook == "01_sentiment"]
    assert {r.params["head_dropout"] for r in t1 if r.experiment == "t1-default"} == {0.4}
    assert yaml.safe_load(yaml.safe_dump(plan))  # the plan stays plain data
    # a run recorded before the rename: the report reads it, and it resumes without a config mismatch
    cfg = _cfg(tmp_path, data_root, checkpoint_every=2, epochs=1, run_id="old", head_dropout=0.2)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(3))
    f = tmp_path / "runs" / "old" / "config.json"
    rec = json.loads(f.read_text())
    rec["config"]["hidden_dropout"] = rec["config"].pop("head_dropout")
    f.write_text(json.dumps(rec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an old record is not the user's input: no warning
        run = train(cfg, resume=True)
        f.write_text(json.dumps(rec))  # and the finished run's record as the old version wrote it
        assert load_run(run).cfg["head_dropout"] == 0.2 and "hidden_dropout" not in load_run(run).cfg


def test_target_overall_and_time_budget_stop_after_the_epoch_that_meets_them(tmp_path, data_root):
    base = dict(epochs=4, epoch_rule="fixed", steps_per_epoch=2, checkpoint_every=0)
    never = _metrics(train(_cfg(tmp_path, data_root, run_id="all", **base)))
    assert never["stopped"] == "" and never["steps"] == 8
    hit = _metrics(train(_cfg(tmp_path, data_root, run_id="target", target_overall=1e-9, **base)))
    assert hit["steps"] == 2 and hit["stopped"].startswith("stopped after epoch 1 of 4: dev overall")
    spent = _metrics(train(_cfg(tmp_path, data_root, run_id="budget", time_budget_s=1e-9, **base)))
    assert spent["steps"] == 2 and "passed time_budget_s" in spent["stopped"]
    with pytest.raises(ValueError, match="target_overall"):
        TrainConfig(target_overall=-1)


def test_a_run_saved_before_a_config_field_existed_resumes(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root, checkpoint_every=2, epochs=1, run_id="older")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(3))
    f = tmp_path / "runs" / "older" / "config.json"
    rec = json.loads(f.read_text())
    del rec["config"]["target_overall"], rec["config"]["time_budget_s"]
    f.write_text(json.dumps(rec))
    assert _metrics(train(cfg, resume=True))["status"] == "complete"


class CountPredictions(Hook):
    """Counts finished prediction passes per split (a pass ends when its last rows are predicted)."""

    def __init__(self):
        self.calls = collections.Counter()

    def on_rows(self, trainer, task, split, done, rows):
        if done == rows:
            self.calls[split] += 1


def test_dev_files_reuse_the_best_epochs_predictions_and_test_files_can_be_skipped(tmp_path, data_root):
    """The dev submission files come from the best epoch's own dev pass (not a second prediction);
    they equal what the saved best weights predict. predict_test=False writes dev files only."""
    from minbert_core.build import build_model
    from minbert_core.evaluation import Evaluator

    cfg = _cfg(tmp_path, data_root, strategy="sum", run_id="nt", predict_test=False, epochs=3)
    passes = CountPredictions()
    trainer = Trainer(cfg, tmp_path / "runs" / "nt", progress=False, hooks=[passes])
    trainer.run()
    run = trainer.run_dir
    assert passes.calls == {"dev": 3 * 3}  # one dev pass per epoch and task; none for the files, no test split
    assert sorted(p.name for p in (run / "predictions").iterdir()) == [
        "para-dev-output.csv", "sst-dev-output.csv", "sts-dev-output.csv"]
    assert all("test" not in splits for splits in trainer.data.values())  # not even read
    # the files hold what the best weights predict, computed afresh
    model = build_model(cfg, torch.device("cpu"))
    model.load_state_dict(load_best(run / "checkpoints"))
    fresh = Evaluator(model, trainer.data, trainer.features, cfg.tasks, cfg.eval_batch_size)
    for task in cfg.tasks:
        values = [float(line.split(" , ")[1]) for line in
                  (run / "predictions" / f"{task}-dev-output.csv").read_text().splitlines()[1:]]
        assert values == pytest.approx(fresh.predict(task, "dev").tolist(), abs=1e-3)
