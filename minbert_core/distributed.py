"""One training run on several processes (torchrun): which rank this is, and the few collectives the
training loop needs. With one process every method is a no-op, so the loop has no branches for it.

Each rank draws the same global batches (same seeds) and keeps its share of every batch's rows. The
gradient strategies must see the *global* per-task gradients, so the loop all-reduces the (T, P)
buffer of task gradients before combining (one collective per step, not one per task), then the
heads' gradients. Losses are scaled by each rank's share of the global batch and gradients summed,
which equals the mean over the global batch exactly, also for uneven shares.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    """rank/world of this process; `world == 1`: a plain single-process run."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every record, prediction and checkpoint; the others only train."""
        return self.rank == 0

    @staticmethod
    def from_env() -> "Dist":
        """Under torchrun (WORLD_SIZE > 1): join the process group (NCCL on CUDA, else gloo) and pin
        this rank's GPU; otherwise a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Dist()
        if not torch_dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch_dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        return Dist(torch_dist.get_rank(), torch_dist.get_world_size())

    def shard(self, idx: list[int]) -> list[int]:
        """This rank's rows of a global batch (every rank sees the same global batches)."""
        return idx[self.rank::self.world] if self.enabled else idx

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place."""
        if self.enabled:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return t

    def reduce_grads_(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the gradients of `params` over ranks, in one collective on a flat buffer."""
        grads = [p.grad for p in params if p.grad is not None]
        if not self.enabled or not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        self.all_reduce_(flat)
        o = 0
        for g in grads:
            g.copy_(flat[o:o + g.numel()].view_as(g))
            o += g.numel()

    def broadcast_params_(self, module: torch.nn.Module) -> None:
        """Every rank starts from rank 0's weights (randomly initialised heads included)."""
        if self.enabled:
            for t in list(module.parameters()) + list(module.buffers()):
                torch_dist.broadcast(t.data, src=0)

    def broadcast_object(self, obj):
        """Rank 0's value of a picklable object, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj) -> list:
        """Every rank's value, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()
