"""Gradient-combination strategies behind one contract: `backward(loss_fns, shared)`, then a normal
optimizer.step(). Registered by name in STRATEGIES: sum, pcgrad, mgda-ub, imtl-g, aligned-mtl, cagrad, nash-mtl,
gradvac, dwa, uncertainty, gradnorm, upgrad ('single' is a training rule of TrainConfig, TRAINING_RULES).

Each task's forward and backward run in turn, so only one task's graph is alive at a time. Heads
receive their own task's gradient; only the shared parameters' gradients are combined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .gram_methods import (aligned_mtl_weights, cagrad_weights, gradvac_weights, imtl_g_weights, min_norm_weights,
                           nash_mtl_weights, upgrad_weights)

LossFn = Callable[[], torch.Tensor]


class NonFiniteLoss(FloatingPointError):
    """A task's loss was nan or inf; the caller adds the step number."""

    def __init__(self, task: str, value: float):
        super().__init__(f"task {task!r}: loss is {value}")
        self.task, self.value = task, value


@dataclass
class StepResult:
    """Per-task losses of one step, and telemetry rows when this step was recorded."""

    losses: dict[str, float]
    telemetry: list[dict] = field(default_factory=list)
    reduced: bool = False  # the shared gradients were summed over ranks by `reduce` before combining


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


class GradientStrategy:
    """The contract: per-task gradients on the shared parameters in, one combined gradient out.

    `backward` runs each task's forward and backward in turn, keeps a copy of each task's shared
    gradient in one (T, P) buffer, and writes `combine(G, losses)` back as the shared parameters'
    gradient; heads keep their own task's gradient; the strategy's own parameters get
    `parameter_grads(G, losses)`. A subclass supplies `combine` (or, Gram-based, `weights`), and
    `state_dict`/`load_state_dict` for whatever a resumed run needs. Everything a strategy uses is an
    argument: nothing is read from attributes the base class sets.
    """

    name = ""
    needs_task_grads = True  # False: when nothing is recorded, backward just lets gradients accumulate
    reweights = False  # True: its step is a task weighting w^T G that the explorer draws (not sum's or PCGrad's)

    def __init__(self, seed: int = 0):
        self.flat = _FlatGrads()
        self.last_weights: torch.Tensor | None = None  # output: w of the last combination d = w^T G, for telemetry

    def bind(self, tasks: Sequence[str]) -> None:
        """Called once with the trained tasks, in the order backward will see them."""

    def parameters(self) -> list[nn.Parameter]:
        """Parameters the strategy learns itself (trained by the run's optimizer at the heads' rate)."""
        return []

    def parameter_grads(self, G: torch.Tensor, losses: torch.Tensor) -> list[torch.Tensor]:
        """Gradients of `parameters()` at this step, from the (T, P) task gradients and the (T,) float64
        task losses; `backward` sets them. None by default."""
        return []

    def combine(self, G: torch.Tensor, losses: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Combined shared gradient from the (T, P) task gradients (and, for the strategies that weight
        by loss, the (T,) float64 losses; None: no loss seen), and (T, T) flags of the pairs the
        strategy altered (PCGrad: i was projected onto j's normal plane)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Strategy state a resumed run needs (none by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""

    def _task_grads(self, loss_fns: dict[str, LossFn], shared: Sequence[tuple[str, nn.Parameter]]
                    ) -> tuple[torch.Tensor, dict[str, float], list[bool]]:
        """Run every task; its shared gradient into row i of G. Returns G, the losses, and which shared
        parameters any task reached."""
        G = self.flat.prepare(shared, len(loss_fns))
        touched = [False] * len(shared)
        losses = {}
        for i, (t, fn) in enumerate(loss_fns.items()):
            losses[t] = _run_task(t, fn).item()
            for k, ((_, p), (s, e)) in enumerate(zip(shared, self.flat.slices)):
                if p.grad is None:
                    G[i, s:e].zero_()
                else:
                    G[i, s:e].copy_(p.grad.reshape(-1))
                    touched[k] = True
                    p.grad = None  # isolate the next task's gradient
        return G, losses, touched

    def backward(self, loss_fns: dict[str, LossFn], shared: Sequence[tuple[str, nn.Parameter]],
                 record: bool = False, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> StepResult:
        """Backpropagate every task; combine the shared gradients; optionally record telemetry.

        `shared` holds (telemetry group, parameter) pairs: the model says which group a parameter is
        in (MultitaskBert.shared_groups), so this module knows no model's attribute names.

        `reduce` (several ranks: a sum over them, in place) is applied to the (T, P) task gradients
        and the losses before combining, so every strategy combines the global per-task gradients."""
        tasks = list(loss_fns)
        # Nothing shared (a frozen encoder without a bi-LSTM): every head trains on its own task's
        # gradient, and there is nothing to combine or to record.
        if not (record or self.needs_task_grads) or len(tasks) < 2 or not shared:
            return StepResult({t: _run_task(t, fn).item() for t, fn in loss_fns.items()})
        G, losses, touched = self._task_grads(loss_fns, shared)
        task_losses = torch.tensor([losses[t] for t in tasks], dtype=torch.float64)
        if reduce is not None:
            reduce(G)
            reduce(task_losses)  # the loss-based weights must be the same on every rank
        combined, altered = self.combine(G, task_losses)
        for p, g in zip(self.parameters(), self.parameter_grads(G, task_losses)):
            p.grad = g.to(p.dtype).to(p.device)
        for k, ((_, p), (s, e)) in enumerate(zip(shared, self.flat.slices)):
            if touched[k]:  # parameters no task reached keep grad None (no zero grads written)
                p.grad = combined[s:e].view_as(p).to(p.dtype)
        rows = telemetry_rows(G, tasks, shared, self.flat.slices, altered, self.last_weights) if record else []
        return StepResult(losses, rows, reduced=reduce is not None)


class GramStrategy(GradientStrategy):
    """A strategy whose combined gradient is d = w^T G, with w computed from the T x T Gram matrix
    G G^T alone: the P-dimensional work is one Gram product and one weighted sum."""

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) float64 weights and (T, T) altered-pair flags from the float64 CPU Gram matrix, the (T,)
        float64 task losses (None: none seen) and `eps`, the unit roundoff of the dtype the task
        gradients were in (the Gram matrix is only that precise)."""
        raise NotImplementedError

    def combine(self, G: torch.Tensor, losses: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        gram = (G @ G.T).double().cpu()  # (T, T)
        w, altered = self.weights(gram, losses, torch.finfo(G.dtype).eps)
        self.last_weights = w
        return w.to(G.dtype).to(G.device) @ G, altered


class GramWeighting(GramStrategy):
    """A strategy whose weights are a function of the Gram matrix alone (`solve`), with no projections."""

    reweights = True

    def solve(self, gram: torch.Tensor) -> torch.Tensor:
        """(T,) task weights from the (T, T) Gram matrix."""
        raise NotImplementedError

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        return self.solve(gram), torch.zeros(T, T, dtype=torch.bool)


class SumLoss(GramStrategy):
    """L = sum of task losses (the paper's 'combined loss'); per-task backward, grads accumulate."""

    name = "sum"
    needs_task_grads = False

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        return torch.ones(T, dtype=torch.float64), torch.zeros(T, T, dtype=torch.bool)

    def combine(self, G: torch.Tensor, losses: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The plain sum (no Gram product needed); telemetry steps only."""
        T = G.shape[0]
        self.last_weights = torch.ones(T, dtype=torch.float64)
        return G.sum(0), torch.zeros(T, T, dtype=torch.bool)


class PCGrad(GramStrategy):
    """Gradient surgery (Yu et al. 2020) on the shared parameters.

    For each task i, its gradient is projected onto the normal plane of every other task's
    (original) gradient g_j it conflicts with (g_i . g_j < 0), in a random order drawn from this
    strategy's own seeded generator; the projected gradients are summed.
    """

    name = "pcgrad"

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """PCGrad's combined gradient as a weighted sum of the task gradients.

        Every projected g_i' stays in the span of the original gradients, g_i' = sum_k a_ik g_k, and
        every dot product it needs is a combination of the Gram matrix G G^T. So the surgery runs on
        T x T scalars and the result is w^T G with w_k = sum_i a_ik: no per-task copies of the
        P-dimensional gradients beyond G itself (same result as the textbook loop, up to rounding).
        """
        T = gram.shape[0]
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
        return w, projected

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class MGDA(GramWeighting):
    """MGDA-UB (Sener & Koltun 2018), on the shared parameters' gradients: d is the min-norm point of
    the convex hull of the task gradients (weights in the simplex, so |d| is at most the smallest
    task gradient's norm: its step is shorter than the sum's, which adds T gradients)."""

    name = "mgda-ub"
    needs_task_grads = True

    def solve(self, gram: torch.Tensor) -> torch.Tensor:
        return min_norm_weights(gram)


class IMTLG(GramWeighting):
    """IMTL-G (Liu et al. 2021): d = sum w_i g_i, sum w_i = 1, with equal projections on every unit
    task gradient, so no task is favoured by its gradient's scale."""

    name = "imtl-g"

    def solve(self, gram: torch.Tensor) -> torch.Tensor:
        return imtl_g_weights(gram)


class CAGrad(GramWeighting):
    """CAGrad (Liu et al. 2021): the step within c |g0| of the average gradient g0 that maximises the
    worst task's improvement; c = 0.4. Convention: the authors' code rescales that step by
    1 / (1 + c^2) (its default `rescale=1`), and so does this; torchjd's CAGrad does not."""

    name = "cagrad"
    c = 0.4

    def solve(self, gram: torch.Tensor) -> torch.Tensor:
        return cagrad_weights(gram, self.c) / (1 + self.c ** 2)


class NashMTL(GramWeighting):
    """Nash-MTL (Navon et al. 2022): the Nash bargaining weights alpha_i (G G^T alpha)_i = 1, by
    Newton's method on the T x T problem (no cvxpy)."""

    name = "nash-mtl"

    def solve(self, gram: torch.Tensor) -> torch.Tensor:
        return nash_mtl_weights(gram)


class GradVac(GramStrategy):
    """Gradient Vaccine (Wang et al. 2021), on the whole shared gradient: each task's gradient is
    raised towards an EMA target cosine (beta = 0.01, targets from 0) with every other task, in a
    seeded random order as PCGrad's; the targets are state, saved for resume."""

    name = "gradvac"
    reweights = True
    beta = 0.01

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.targets: torch.Tensor | None = None

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        if self.targets is None or self.targets.shape != (T, T):
            self.targets = torch.zeros(T, T, dtype=torch.float64)
        order = []
        for i in range(T):
            others = [j for j in range(T) if j != i]
            order.append([others[r] for r in torch.randperm(len(others), generator=self.generator).tolist()])
        w, altered, self.targets = gradvac_weights(gram, self.targets, order, self.beta)
        return w, altered

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "targets": self.targets}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.targets = state["targets"]


class DWA(GramStrategy):
    """Dynamic Weight Average (Liu et al. 2019): w_i = T softmax_i(r_i / tau), r_i the ratio of task i's
    mean loss over the last two windows, tau = 2. The paper's windows are epochs; the study's runs
    are one epoch long, so here a window is 50 steps (equal weights until two windows have passed).
    Its loss history is state, saved for resume."""

    name = "dwa"
    reweights = True
    window, temperature = 50, 2.0

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.means: list[torch.Tensor] = []  # the last two windows' mean losses

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        if len(self.means) == 2:
            r = self.means[1] / self.means[0].clamp(min=1e-12)
            w = T * torch.softmax(r / self.temperature, dim=0)
        else:
            w = torch.ones(T, dtype=torch.float64)
        losses = losses if losses is not None else torch.zeros(T, dtype=torch.float64)
        self.sums = losses.clone() if self.sums is None else self.sums + losses
        self.count += 1
        if self.count == self.window:
            self.means = (self.means + [self.sums / self.count])[-2:]
            self.sums, self.count = None, 0
        return w, torch.zeros(T, T, dtype=torch.bool)

    def state_dict(self) -> dict:
        return {"sums": self.sums, "count": self.count, "means": list(self.means)}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.count, self.means = state["sums"], state["count"], list(state["means"])


class _LearnedWeights(GramStrategy):
    """A strategy with one learned value per task (a parameter created by `bind`, from `init`), trained
    by the run's optimizer; the parameter is state, saved for resume."""

    init = 0.0
    state_key = "param"  # its name in state_dict

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.param: nn.Parameter | None = None

    def bind(self, tasks: Sequence[str]) -> None:
        self.param = nn.Parameter(torch.full((len(tasks),), self.init))

    def parameters(self) -> list[nn.Parameter]:
        return [self.param] if self.param is not None else []

    def _bound(self, T: int) -> nn.Parameter:
        if self.param is None:  # combine called without bind (tests, tools): tasks 0..T-1
            self.bind([str(i) for i in range(T)])
        return self.param

    def state_dict(self) -> dict:
        return {self.state_key: None if self.param is None else self.param.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get(self.state_key)
        if saved is None:
            return
        if self.param is None:
            self.param = nn.Parameter(saved.clone())
        else:
            with torch.no_grad():
                self.param.copy_(saved)


class UncertaintyWeighting(_LearnedWeights):
    """Uncertainty weighting (Kendall et al. 2018), as LibMTL writes it: the loss
    sum_i L_i / (2 exp(s_i)) + s_i / 2 with a learned log-variance s_i per task (from 0). The shared
    gradient is sum_i g_i / (2 exp(s_i)); s_i's own gradient, 1/2 - L_i / (2 exp(s_i)), is
    `parameter_grads`, and the run's optimizer steps s with the heads. s is state, saved for resume."""

    name = "uncertainty"
    reweights = True
    state_key = "log_vars"

    @property
    def log_vars(self) -> nn.Parameter | None:
        """The learned log-variances s (T,)."""
        return self.param

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        s = self._bound(T).detach().double().cpu()
        return 0.5 * torch.exp(-s), torch.zeros(T, T, dtype=torch.bool)

    def parameter_grads(self, G: torch.Tensor, losses: torch.Tensor) -> list[torch.Tensor]:
        s = self._bound(len(losses)).detach().double().cpu()
        return [0.5 - 0.5 * losses * torch.exp(-s)]


class GradNorm(_LearnedWeights):
    """GradNorm (Chen et al. 2018, ICML, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
    in Deep Multitask Networks"): d = sum_i w_i g_i with learned task weights w (from 1) that balance
    the weighted gradient norms on the shared parameters, G_i = w_i |g_i|.

    Its loss is L_grad = sum_i |G_i - mean(G) r_i^alpha|, with r_i = L~_i / mean(L~) and
    L~_i = L_i / L_i(0) the loss ratio to the first step's loss (the target mean(G) r_i^alpha is a
    constant, as in the paper), so w_i's gradient is sign(G_i - target_i) |g_i|: `parameter_grads`.
    The run's optimizer steps w with the heads; before each use w is renormalised to sum to T (the
    paper renormalises after each update; a weight a step drove below 0 counts as 0). alpha = 1.5
    (LibMTL's default; the paper uses 0.12 to 3). |g_i| is over all shared parameters (the paper: the
    last shared layer), so the norms cost one pass over the (T, P) gradients. w and the first losses
    are state, saved for resume."""

    name = "gradnorm"
    reweights = True
    state_key = "weights"
    init, alpha = 1.0, 1.5

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.initial_losses: torch.Tensor | None = None

    def _renormalised(self, T: int) -> torch.Tensor:
        w = self._bound(T)
        with torch.no_grad():
            v = w.clamp(min=0)
            w.copy_(T * v / v.sum() if float(v.sum()) > 0 else torch.ones_like(v))
        return w.detach().double().cpu()

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        return self._renormalised(T), torch.zeros(T, T, dtype=torch.bool)

    def parameter_grads(self, G: torch.Tensor, losses: torch.Tensor) -> list[torch.Tensor]:
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        w = self._renormalised(len(losses))
        norms = torch.linalg.vector_norm(G, dim=1).double().cpu()  # |g_i|, (T,)
        ratio = losses / self.initial_losses.clamp(min=1e-12)
        target = (w * norms).mean() * (ratio / ratio.mean()) ** self.alpha
        return [torch.sign(w * norms - target) * norms]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "initial_losses": self.initial_losses}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.initial_losses = state.get("initial_losses")


class UPGrad(GramStrategy):
    """UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): each task
    gradient projected onto the dual cone of all of them, {x : g_j . x >= 0 for every j}, then
    averaged, so the step conflicts with no task (d . g_j >= 0) and reduces to the mean gradient when
    no pair conflicts. Each projection is a T x T quadratic program, solved exactly (gram_methods)."""

    name = "upgrad"
    reweights = True

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        return upgrad_weights(gram), torch.zeros(T, T, dtype=torch.bool)


class AlignedMTL(GramStrategy):
    """Aligned-MTL (Senushkin et al. 2023): the task gradients made orthogonal with equal norms (the
    smallest singular value of G), then summed, so no task's gradient dominates the step."""

    name = "aligned-mtl"
    reweights = True

    def weights(self, gram: torch.Tensor, losses: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        T = gram.shape[0]
        return aligned_mtl_weights(gram, eps), torch.zeros(T, T, dtype=torch.bool)


def telemetry_rows(G: torch.Tensor, tasks: Sequence[str], shared: Sequence[tuple[str, nn.Parameter]],
                   slices: Sequence[tuple[int, int]], projected: torch.Tensor,
                   weights: torch.Tensor | None = None) -> list[dict]:
    """Tidy rows: per task pair and layer group, cosine of the two gradients and their norms; with
    the combination's weights w, also each task's weight and the cosine of the combined direction
    d = w^T G with each task's gradient (d . g_i = (gram w)_i, |d|^2 = w^T gram w)."""
    groups: dict[str, torch.Tensor] = {}
    for (name, _), (s, e) in zip(shared, slices):
        g = G[:, s:e]
        gram = g @ g.T  # (T, T) dot products of the task gradients on this parameter
        key = name  # the model names each shared parameter's telemetry group
        groups[key] = groups.get(key, 0) + gram
    overall = sum(groups.values())
    rows = []
    for group, gram in [("overall", overall)] + list(groups.items()):
        gram = gram.double().cpu()
        if not bool(gram.diagonal().any()):
            continue  # parameters no task reached (e.g. the pooler under a bi-LSTM): nothing to compare
        norms = gram.diagonal().clamp(min=0).sqrt()
        if weights is not None:
            dg = gram @ weights  # d . g_i on this group
            dn = math.sqrt(max(float(weights @ dg), 0.0))
            cos_d = [float(dg[i] / (dn * norms[i])) if dn > 0 and norms[i] > 0 else float("nan")
                     for i in range(len(tasks))]
        for i in range(len(tasks)):
            for j in range(i + 1, len(tasks)):
                ni, nj = float(norms[i]), float(norms[j])
                row = {"group": group, "task_a": tasks[i], "task_b": tasks[j],
                       "cosine": float(gram[i, j] / (ni * nj)) if ni > 0 and nj > 0 else float("nan"),
                       "norm_a": ni, "norm_b": nj,
                       "projected_a": bool(projected[i, j]), "projected_b": bool(projected[j, i])}
                if weights is not None:
                    row.update(weight_a=float(weights[i]), weight_b=float(weights[j]),
                               cos_combined_a=cos_d[i], cos_combined_b=cos_d[j])
                rows.append(row)
    return rows


STRATEGIES: dict[str, type[GradientStrategy]] = {
    s.name: s for s in (SumLoss, PCGrad, MGDA, IMTLG, AlignedMTL, CAGrad, NashMTL, GradVac, DWA, UncertaintyWeighting,
                        GradNorm, UPGrad)}
# A training rule, not a way of combining gradients: train `single_task` alone (the paper's
# 'Original': SST only), evaluate every task. Its one task's gradient needs no combining.
TRAINING_RULES = ("single",)


def get_strategy(name: str, seed: int = 0) -> GradientStrategy:
    """Instantiate a registered strategy; an unknown name is an error naming the known ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](seed=seed)
