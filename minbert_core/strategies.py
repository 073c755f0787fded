"""Gradient-combination strategies behind one contract: `backward(loss_fns, shared)`, then a normal
optimizer.step().

Each task's forward and backward run in turn, so only one task's graph is alive at a time. Heads
receive their own task's gradient; only the shared parameters' gradients are combined.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

LossFn = Callable[[], torch.Tensor]


class NonFiniteLoss(FloatingPointError):
    """A task's loss was nan or inf; the caller adds the step number."""

    def __init__(self, task: str, value: float):
        super().__init__(f"task {task!r}: loss is {value}")
        self.task, self.value = task, value


def layer_group(name: str) -> str:
    """Telemetry group of a shared parameter: embeddings, layer_<i>, pooler or lstm."""
    m = re.match(r"encoder\.encoder\.layer\.(\d+)\.", name)
    if m:
        return f"layer_{m.group(1)}"
    for prefix, group in (("encoder.embeddings.", "embeddings"), ("encoder.pooler.", "pooler"), ("lstm.", "lstm")):
        if name.startswith(prefix):
            return group
    return "other"


@dataclass
class StepResult:
    """Per-task losses of one step, and telemetry rows when this step was recorded."""

    losses: dict[str, float]
    telemetry: list[dict] = field(default_factory=list)


class _FlatGrads:
    """Per-task copies of the shared gradients, flattened into one (T, P) buffer reused each step."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None
        self.slices: list[tuple[int, int]] = []

    def prepare(self, shared: Sequence[tuple[str, nn.Parameter]], n_tasks: int) -> torch.Tensor:
        sizes = [p.numel() for _, p in shared]
        P = sum(sizes)
        p0 = shared[0][1]
        if self.buf is None or self.buf.shape != (n_tasks, P) or self.buf.device != p0.device:
            self.buf = torch.empty(n_tasks, P, device=p0.device, dtype=torch.float32)
            offs = [0] + list(torch.tensor(sizes).cumsum(0).tolist())
            self.slices = list(zip(offs[:-1], offs[1:]))
        return self.buf


def _run_task(task: str, fn: LossFn) -> torch.Tensor:
    loss = fn()
    if not torch.isfinite(loss.detach()).all():
        raise NonFiniteLoss(task, float(loss.detach().float().mean()))
    loss.backward()
    return loss.detach()


class SumLoss:
    """L = sum of task losses (the paper's 'combined loss'); per-task backward, grads accumulate."""

    name = "sum"

    def __init__(self, seed: int = 0):
        self.flat = _FlatGrads()

    def train_tasks(self, tasks: Sequence[str], single_task: str) -> tuple[str, ...]:
        return tuple(tasks)

    def combine(self, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Combined shared gradient and the (T, T) 'i was projected onto j's normal plane' flags."""
        return G.sum(0), torch.zeros(G.shape[0], G.shape[0], dtype=torch.bool)

    needs_task_grads = False

    def state_dict(self) -> dict:
        """Strategy state a resumed run needs (none for the plain sum)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""

    def backward(self, loss_fns: dict[str, LossFn], shared: Sequence[tuple[str, nn.Parameter]],
                 record: bool = False) -> StepResult:
        """Backpropagate every task; combine the shared gradients; optionally record telemetry."""
        tasks = list(loss_fns)
        # Nothing shared (a frozen encoder without a bi-LSTM): every head trains on its own task's
        # gradient, and there is nothing to combine or to record.
        if not (record or self.needs_task_grads) or len(tasks) < 2 or not shared:
            return StepResult({t: _run_task(t, fn).item() for t, fn in loss_fns.items()})
        G = self.flat.prepare(shared, len(tasks))
        touched = [False] * len(shared)
        losses = {}
        for i, t in enumerate(tasks):
            losses[t] = _run_task(t, loss_fns[t]).item()
            for k, ((_, p), (s, e)) in enumerate(zip(shared, self.flat.slices)):
                if p.grad is None:
                    G[i, s:e].zero_()
                else:
                    G[i, s:e].copy_(p.grad.reshape(-1))
                    touched[k] = True
                    p.grad = None  # isolate the next task's gradient
        combined, projected = self.combine(G)
        for k, ((_, p), (s, e)) in enumerate(zip(shared, self.flat.slices)):
            if touched[k]:  # parameters no task reached keep grad None (no zero grads written)
                p.grad = combined[s:e].view_as(p).to(p.dtype)
        rows = telemetry_rows(G, tasks, shared, self.flat.slices, projected) if record else []
        return StepResult(losses, rows)


class SingleTask(SumLoss):
    """Train on one task only (the paper's 'original': SST alone), evaluate on all."""

    name = "single"

    def train_tasks(self, tasks: Sequence[str], single_task: str) -> tuple[str, ...]:
        if single_task not in tasks:
            raise ValueError(f"single_task {single_task!r} is not among tasks {tuple(tasks)}")
        return (single_task,)


class PCGrad(SumLoss):
    """Gradient surgery (Yu et al. 2020) on the shared parameters.

    For each task i, its gradient is projected onto the normal plane of every other task's
    (original) gradient g_j it conflicts with (g_i . g_j < 0), in a random order drawn from this
    strategy's own seeded generator; the projected gradients are summed.
    """

    name = "pcgrad"
    needs_task_grads = True

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PCGrad's combined gradient, computed as a weighted sum of the task gradients.

        Every projected g_i' stays in the span of the original gradients, g_i' = sum_k a_ik g_k, and
        every dot product it needs is a combination of the Gram matrix G G^T. So the surgery runs on
        T x T scalars and the result is w^T G with w_k = sum_i a_ik: no per-task copies of the
        P-dimensional gradients beyond G itself (same result as the textbook loop, up to rounding).
        """
        T = G.shape[0]
        gram = (G @ G.T).double().cpu()  # (T, T)
        projected = torch.zeros(T, T, dtype=torch.bool)
        w = torch.zeros(T, dtype=torch.float64)
        for i in range(T):
            a = torch.zeros(T, dtype=torch.float64)
            a[i] = 1.0  # g_i' = g_i
            others = [j for j in range(T) if j != i]
            for r in torch.randperm(len(others), generator=self.generator).tolist():
                j = others[r]
                dot = a @ gram[:, j]  # g_i' . g_j
                if dot < 0 and gram[j, j] > 0:
                    a[j] -= dot / gram[j, j]  # g_i' -= (g_i' . g_j / |g_j|^2) g_j
                    projected[i, j] = True
            w += a
        return w.to(G.dtype).to(G.device) @ G, projected

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def telemetry_rows(G: torch.Tensor, tasks: Sequence[str], shared: Sequence[tuple[str, nn.Parameter]],
                   slices: Sequence[tuple[int, int]], projected: torch.Tensor) -> list[dict]:
    """Tidy rows: per task pair and layer group, cosine of the two gradients and their norms."""
    groups: dict[str, torch.Tensor] = {}
    for (name, _), (s, e) in zip(shared, slices):
        g = G[:, s:e]
        gram = g @ g.T  # (T, T) dot products of the task gradients on this parameter
        key = layer_group(name)
        groups[key] = groups.get(key, 0) + gram
    overall = sum(groups.values())
    rows = []
    for group, gram in [("overall", overall)] + list(groups.items()):
        gram = gram.double().cpu()
        if not bool(gram.diagonal().any()):
            continue  # parameters no task reached (e.g. the pooler under a bi-LSTM): nothing to compare
        for i in range(len(tasks)):
            for j in range(i + 1, len(tasks)):
                ni, nj = math.sqrt(gram[i, i]), math.sqrt(gram[j, j])
                rows.append({"group": group, "task_a": tasks[i], "task_b": tasks[j],
                             "cosine": float(gram[i, j] / (ni * nj)) if ni > 0 and nj > 0 else float("nan"),
                             "norm_a": ni, "norm_b": nj,
                             "projected_a": bool(projected[i, j]), "projected_b": bool(projected[j, i])})
    return rows


STRATEGIES: dict[str, type[SumLoss]] = {"single": SingleTask, "sum": SumLoss, "pcgrad": PCGrad}


def get_strategy(name: str, seed: int = 0) -> SumLoss:
    """Instantiate a registered strategy; an unknown name is an error naming the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](seed=seed)
