"""Tied task heads (TaskSpec.head_of): Table 5's positive control `sst_rev_tied` reads SST's reversed labels
through SST's own head, so its gradient on the shared encoder opposes SST's; `sst_rev`, with a head of its
own, learns the mirrored mapping instead and only adds SST signal (issue 20)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import yaml
from helpers import stop_after

from minbert_core import tasks
from minbert_core.build import build_model, build_optimizer
from minbert_core.multitask import MultitaskBert, load_encoder
from minbert_core.plan import expand
from minbert_core.run_state import load_best
from minbert_core.strategies import get_strategy
from minbert_core.train import TrainConfig, train

FAST = dict(checkpoint="random:tiny", epochs=1, train_limit=32, eval_limit=16, batch_size=8, lr_finetune=1e-3,
            telemetry_every=2, max_length=32, checkpoint_every=2, head_dropout=0.3, predict_test=False)


def _model(task_keys: tuple[str, ...], seed: int = 0) -> MultitaskBert:
    return MultitaskBert(load_encoder("random:tiny", seed=seed), task_keys, pooling="mean", head_dropout=0.0)


def test_a_tied_task_holds_its_owners_head_counted_once_everywhere():
    """One module under both keys, whatever the task order; no parameter added, none in two optimizer
    groups, none among the shared (encoder) parameters; the other heads start as without the tied task."""
    m = _model(("sst_rev_tied", "para", "sst"))
    assert m.heads["sst_rev_tied"] is m.heads["sst"] and m.heads["para"] is not m.heads["sst"]
    untied = _model(("para", "sst"))
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in untied.parameters())
    for k, v in untied.state_dict().items():  # same init: the tied task draws no random numbers
        assert torch.equal(m.state_dict()[k], v), k
    assert {k for k in m.state_dict() if k.startswith("heads.")} == (
        {k for k in untied.state_dict() if k.startswith("heads.")}
        | {k.replace("heads.sst.", "heads.sst_rev_tied.") for k in untied.state_dict() if k.startswith("heads.sst.")})
    cfg = TrainConfig(checkpoint="random:tiny", tasks=("sst_rev_tied", "para", "sst"))
    grouped = [id(p) for g in build_optimizer(cfg, m, []).param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == {id(p) for p in m.parameters()}
    shared = {id(p) for _, p in m.shared_groups()}
    assert shared == {id(p) for p in m.encoder.parameters()}  # the head is not shared: only the encoder is
    own = _model(("sst", "para", "sts", "sst_rev"))  # the own-head control is unchanged: four heads
    assert len({id(h) for h in own.heads.values()}) == 4


def _polarity_head(m: MultitaskBert) -> None:
    """SST's head made to read sentiment polarity, as a trained sentiment head does: its rows for y and
    4 - y opposite, the neutral row 0."""
    lin = m.heads["sst"].net[-1]
    with torch.no_grad():
        lin.weight.copy_((lin.weight - lin.weight.flip(0)) / 2)
        lin.bias.copy_((lin.bias - lin.bias.flip(0)) / 2)


def _sst_batch(data_root, n: int = 16) -> tuple[dict, torch.Tensor]:
    from minbert_core.data import load_split
    from minbert_core.tokenizer import load_tokenizer

    ex = load_split("sst", "train", root=data_root, limit=n).examples
    batch = dict(load_tokenizer("minilm-l6")([e.text_a for e in ex], padding=True, truncation=True,
                                             max_length=48, return_tensors="pt"))
    return batch, torch.tensor([e.label for e in ex])


def _encoder_cosine(m: MultitaskBert, rev: str, batch: dict, y: torch.Tensor) -> tuple[float, dict]:
    """The study's telemetry ('overall' group: the whole encoder) for one summed-loss step on the same
    sentences, SST's labels and reversed ones; and the heads' gradients that step left."""
    fns = {"sst": lambda: tasks.get_task("sst").loss(m("sst", batch), y),
           rev: lambda: tasks.get_task(rev).loss(m(rev, batch), 4 - y)}
    m.zero_grad()
    rows = get_strategy("sum").backward(fns, m.shared_groups(), record=True).telemetry
    row = next(r for r in rows if r["group"] == "overall" and {r["task_a"], r["task_b"]} == {"sst", rev})
    return row["cosine"], {n: p.grad.clone() for n, p in m.heads.named_parameters()}


def test_the_tied_control_opposes_sst_on_the_encoder_and_the_own_head_one_does_not(data_root):
    """Through SST's own (polarity) head the reversed labels pull the encoder the opposite way (cosine near
    -1); a head of its own that learned the mirrored mapping turns the same labels into SST's gradient
    (cosine +1): what the cpu study's sst_rev measured (median +0.013)."""
    batch, y = _sst_batch(data_root)
    assert (y != 2).sum() >= 12  # neutral rows (2 -> 2) agree; the rest conflict
    for seed in (0, 1):
        tied = _model(("sst", "sst_rev_tied"), seed).eval()
        _polarity_head(tied)
        cos, head_grads = _encoder_cosine(tied, "sst_rev_tied", batch, y)
        assert cos < -0.8, (seed, cos)
        own = _model(("sst", "sst_rev"), seed).eval()
        _polarity_head(own)
        with torch.no_grad():  # the mirrored mapping the own head learns: SST's rows in reverse order
            for mine, sst in zip(own.heads["sst_rev"].parameters(), own.heads["sst"].parameters()):
                mine.copy_(sst.flip(0))
        assert _encoder_cosine(own, "sst_rev", batch, y)[0] > 0.99
    # the tied head gets both tasks' gradients, summed (heads are outside the strategy's combination)
    alone = {}
    for t, lab in (("sst", y), ("sst_rev_tied", 4 - y)):
        tied.zero_grad()
        tasks.get_task(t).loss(tied(t, batch), lab).backward()
        alone[t] = {n: p.grad.clone() for n, p in tied.heads.named_parameters()}
    for n, g in head_grads.items():
        torch.testing.assert_close(g, alone["sst"][n] + alone["sst_rev_tied"][n])


def _cfg(tmp_path, data_root, **kw) -> TrainConfig:
    return TrainConfig(**{**FAST, "tasks": ("sst", "para", "sst_rev_tied"), "strategy": "pcgrad",
                          "runs_dir": str(tmp_path / "runs"), "data_dir": str(data_root), **kw})


def test_a_tied_run_trains_saves_best_weights_resumes_and_exports(tmp_path, data_root):
    from minbert_core.export import export_run, load_multitask

    full = train(_cfg(tmp_path, data_root, run_id="full"))
    cut = _cfg(tmp_path, data_root, run_id="cut")
    with pytest.raises(KeyboardInterrupt):
        train(cut, on_step=stop_after(3))  # at step 3 of 4; last.pt at step 2, mid-epoch
    resumed = train(cut, resume=True)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (full, resumed))
    assert a["status"] == "complete" and set(a["best_dev"]) >= {"sst", "para", "sst_rev_tied"}
    for key in ("best_dev", "final_dev", "best_epoch", "steps"):
        assert a[key] == b[key], key
    # best.safetensors holds the tied head under both keys (copies); loading it back keeps one module
    best = load_best(full / "checkpoints")
    sst_keys = [k for k in best if k.startswith("heads.sst.")]
    assert sst_keys and all(torch.equal(best[k], best[k.replace("heads.sst.", "heads.sst_rev_tied.")])
                            for k in sst_keys)
    model = build_model(cut, "cpu")
    model.load_state_dict(best)
    assert model.heads["sst_rev_tied"] is model.heads["sst"]
    # both tasks' dev predictions come from the one head: the same predicted classes, row for row
    preds = [(full / "predictions" / f"{t}-dev-output.csv").read_text().splitlines()[1:]
             for t in ("sst", "sst_rev_tied")]
    assert preds[0] == preds[1] and len(preds[0]) == 16
    out = tmp_path / "export"
    export_run(full, out)
    back = load_multitask(out)
    assert back.heads["sst_rev_tied"] is back.heads["sst"]
    assert all(torch.equal(p, best[f"heads.sst.{n}"]) for n, p in back.heads["sst"].named_parameters())


def test_head_of_without_its_owner_is_refused_naming_both(tmp_path, monkeypatch):
    enc = load_encoder("random:tiny")
    for task_keys in (("para", "sst_rev_tied"), ("sst_rev_tied",)):
        with pytest.raises(ValueError, match=r"task 'sst_rev_tied' uses the head of task 'sst'.*add 'sst'"):
            MultitaskBert(enc, task_keys)
        with pytest.raises(ValueError, match=r"'sst_rev_tied' uses the head of task 'sst'"):
            TrainConfig(checkpoint="random:tiny", tasks=task_keys)  # before any data is read
    plan = yaml.safe_load("profiles:\n  p: {common: {checkpoint: 'random:tiny'}}\nexperiments:\n  - {notebook: "
                          "02_multitask, name: x, grid: {strategy: sum, tasks: 'para,sts,sst_rev_tied'}}\n")
    with pytest.raises(ValueError, match=r"run x .*'sst_rev_tied' uses the head of task 'sst'"):
        expand(plan, "p", tmp_path)  # a plan is refused before anything runs
    # any tied task, not only the control: a pair task tied to Quora's head
    monkeypatch.setitem(tasks.TASKS, "para_tied", dataclasses.replace(tasks.TASKS["para"], key="para_tied",
                                                                      head_of="para"))
    with pytest.raises(ValueError, match=r"'para_tied' uses the head of task 'para'"):
        TrainConfig(checkpoint="random:tiny", tasks=("sst", "para_tied"))
    assert MultitaskBert(enc, ("para", "para_tied"), pair_encoding="bi").heads["para_tied"] is not None
    # an owner whose head has another shape, or is tied itself, cannot lend its head
    monkeypatch.setitem(tasks.TASKS, "sts_on_para", dataclasses.replace(tasks.TASKS["sts"], key="sts_on_para",
                                                                        head_of="para"))
    monkeypatch.setitem(tasks.TASKS, "chain", dataclasses.replace(tasks.TASKS["sst"], key="chain",
                                                                  head_of="sst_rev_tied"))
    for task_keys, owner in ((("para", "sts_on_para"), "para"), (("sst", "sst_rev_tied", "chain"), "sst_rev_tied")):
        with pytest.raises(ValueError, match=f"cannot use the head of task '{owner}'"):
            MultitaskBert(enc, task_keys, pair_encoding="bi")
