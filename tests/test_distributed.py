"""One run on two gloo processes equals one process on the same global batches (dropout off)."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.multiprocessing as mp

from minbert_core.distributed import Dist
from minbert_core.train import TrainConfig, train

# sum and PCGrad, and one of each kind of state or input the others add: a solver on the Gram matrix
# (cagrad), EMA state (gradvac), the losses (dwa), parameters of its own (uncertainty), and parameters
# learned from the Gram matrix against the first step's losses (gradnorm). The rest (mgda-ub, imtl-g,
# aligned-mtl, nash-mtl, upgrad) combine the same all-reduced G the way cagrad does.
STRATEGIES = ["sum", "pcgrad", "cagrad", "gradvac", "dwa", "uncertainty", "gradnorm"]


def _common(tmp_path, data_root) -> dict:
    # uneven shares: 3 steps of 7 rows per task split 4 + 3 between the ranks. lr 1e-5, the project's
    # fine-tuning default: Adam turns rounding noise on a gradient that is truly 0 (attention key biases:
    # softmax ignores a shift shared by a query's scores) into steps of order lr
    return dict(checkpoint="random:tiny", epochs=1, epoch_rule="fixed", steps_per_epoch=3, train_limit=42,
                eval_limit=16, batch_size=7, max_length=32, head_dropout=0.0, encoder_dropout=0.0,
                telemetry_every=1, lr_finetune=1e-5, runs_dir=str(tmp_path), data_dir=str(data_root),
                keep_last=True)  # the tests compare the final last.pt of one and two processes


def _worker(rank: int, world: int, init: str, common: dict, strategies: list[str]) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        for s in strategies:
            train(TrainConfig(strategy=s, run_id=f"two-{s}", **common), dist=Dist(rank, world), progress=False)
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_step_like_one_process_for_every_strategy(tmp_path, data_root):
    common = _common(tmp_path, data_root)
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), common, STRATEGIES), nprocs=2, join=True)
    for s in STRATEGIES:
        one = train(TrainConfig(strategy=s, run_id=f"one-{s}", **common), progress=False)
        two = tmp_path / f"two-{s}"
        a = torch.load(one / "checkpoints" / "last.pt", weights_only=True)
        b = torch.load(two / "checkpoints" / "last.pt", weights_only=True)
        assert b["world"] == 2 and len(b["rng"]) == 2
        for k, v in a["model"].items():
            assert torch.allclose(v, b["model"][k], atol=1e-6, rtol=0), (s, k, (v - b["model"][k]).abs().max())
        # the recorded losses are the global batch's, and the strategy saw the global gradients
        ha = [r for r in csv.DictReader((one / "history.csv").open()) if r["kind"] == "train"]
        hb = [r for r in csv.DictReader((two / "history.csv").open()) if r["kind"] == "train"]
        for ra, rb in zip(ha, hb):
            for t in ("sst", "para", "sts"):
                assert float(ra[f"loss_{t}"]) == pytest.approx(float(rb[f"loss_{t}"]), rel=1e-5)
        ta = list(csv.DictReader((one / "telemetry.csv").open()))
        tb = list(csv.DictReader((two / "telemetry.csv").open()))
        assert [r["projected_a"] for r in ta] == [r["projected_a"] for r in tb]  # the same task order drawn
        for ra, rb in zip(ta, tb):  # norms too: Adam's steps would hide a gradient off by a constant factor
            assert float(ra["cosine"]) == pytest.approx(float(rb["cosine"]), abs=1e-5)
            assert float(ra["norm_a"]) == pytest.approx(float(rb["norm_a"]), rel=1e-5)
        m = json.loads((two / "metrics.json").read_text())
        assert m["best_dev"] == pytest.approx(json.loads((one / "metrics.json").read_text())["best_dev"], abs=1e-5)
        assert json.loads((two / "config.json").read_text())["environment"]["world_size"] == 2
    # resuming a 2-process run in one process is refused, naming the world size
    with pytest.raises(ValueError, match="written by a run on 2 process"):
        train(TrainConfig(strategy="pcgrad", run_id="two-pcgrad", **common), resume=True, progress=False)


def test_a_single_process_dist_is_a_no_op():
    d = Dist()
    t = torch.ones(3)
    assert not d.enabled and d.is_main and d.shard([1, 2, 3]) == [1, 2, 3]
    assert d.all_reduce_(t) is t and d.broadcast_object(5) == 5 and d.gather_objects(7) == [7]
    assert Dist(1, 3).shard(list(range(8))) == [1, 4, 7]
