"""One training step, the same for the Trainer and `minbert bench`: the tasks' losses, the strategy's
backward, the reduction over ranks, the optimizer step."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .distributed import Dist
from .strategies import StepResult


@dataclass
class StepOutcome:
    """What one step leaves for the records: the strategy's result and the tasks' (weighted) losses
    summed over ranks (a single process: its own)."""

    result: StepResult  # per-rank losses, telemetry rows, whether the shared gradients were reduced
    losses: dict[str, float]


def train_step(strategy, losses: dict[str, Callable[[], torch.Tensor]], shared: list, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, dist: Dist | None = None, record: bool = False) -> StepOutcome:
    """Zero the gradients, let `strategy` combine the tasks' gradients (`losses`: task -> closure giving
    its scalar loss), sum what it did not sum over ranks, and step `optimizer`.

    `shared`: (group, parameter) pairs the strategy combines (model.shared_groups()); `record`: keep
    gradient telemetry this step. Raises the strategy's NonFiniteLoss before any parameter moves."""
    dist = dist or Dist()
    optimizer.zero_grad(set_to_none=True)
    res = strategy.backward(losses, shared, record=record, reduce=dist.all_reduce_ if dist.enabled else None)
    raw = reduce_step(res, shared, model, dist) if dist.enabled else res.losses
    optimizer.step()
    return StepOutcome(res, raw)


def reduce_step(res: StepResult, shared: list, model: torch.nn.Module, dist: Dist) -> dict[str, float]:
    """After a step's backward on several ranks: sum the gradients the strategy did not already sum
    (the heads', or all of them where no task gradients were kept) and the tasks' losses."""
    done = {id(p) for _, p in shared} if res.reduced else set()
    dist.reduce_grads_([p for p in model.parameters() if id(p) not in done])
    tasks = list(res.losses)
    vec = dist.all_reduce_(torch.tensor([res.losses[t] for t in tasks], dtype=torch.float64))
    return dict(zip(tasks, vec.tolist()))
