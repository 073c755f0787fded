"""Section 7 of BENCHMARKS.md: one multi-task PCGrad step on two gloo processes (one thread each, half of
the global batch each) against one process with both threads on the whole batch; and, inside the
two-process group, one all-reduce of the (T, P) task-gradient buffer against one per task."""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp

from .cases import _multitask_setup, _strategy_step
from .harness import _stats, alternate


def _shard(batches: dict, rank: int, world: int) -> dict:
    return {t: {k: v[rank::world] for k, v in b.items()} for t, b in batches.items()}


def _child(rank: int, world: int, init: str, checkpoint: str, B: int, T: int, steps: int, warmup: int,
           out: str) -> None:
    from ..distributed import Dist

    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        dist = Dist(rank, world)
        model, opt, batches = _multitask_setup(checkpoint, B, T, torch.device("cpu"))
        step = _strategy_step("pcgrad", model, opt, _shard(batches, rank, world), dist=dist)
        t = alternate({"step": step}, steps, warmup, sync=dist.barrier)["step"]
        P = sum(p.numel() for _, p in model.shared_groups())
        G = torch.randn(3, P)

        def one():
            dist.all_reduce_(G)

        def per_task():
            for i in range(3):
                dist.all_reduce_(G[i])
        ar = alternate({"one_buffer": one, "per_task": per_task}, steps, 2, sync=dist.barrier)
        if rank == 0:
            Path(out).write_text(json.dumps({"step": t, "allreduce": ar, "shared_params": P}))
        dist.barrier()  # both ranks done with the group before either tears it down (gloo aborts otherwise)
    finally:
        torch.distributed.destroy_process_group()


def bench_ddp(checkpoint: str = "minilm-l6", B: int = 16, T: int = 64, steps: int = 8, warmup: int = 2,
              world: int = 2) -> dict:
    """The 2-process step against the 1-process step on the same global batch (3 tasks x B x T)."""
    model, opt, batches = _multitask_setup(checkpoint, B, T, torch.device("cpu"))
    one = alternate({"step": _strategy_step("pcgrad", model, opt, batches)}, steps, warmup)["step"]
    del model, opt
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "ddp.json"
        mp.spawn(_child, args=(world, str(Path(d) / "rendezvous"), checkpoint, B, T, steps, warmup, str(out)),
                 nprocs=world, join=True)
        res = json.loads(out.read_text())
    two = res["step"]
    ar = res["allreduce"]
    return {"shape": f"3 tasks x {B}x{T} (global batch)", "world": world, "threads_one_process": torch.get_num_threads(),
            "one_process_s": _stats(one), "two_process_s": _stats(two),
            "overhead_ratio": statistics.median(two) / statistics.median(one),
            "allreduce_one_buffer_s": _stats(ar["one_buffer"]), "allreduce_per_task_s": _stats(ar["per_task"]),
            "shared_params": res["shared_params"]}

