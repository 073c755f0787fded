"""AdamW (Loshchilov & Hutter 2019): Adam with bias correction and decoupled weight decay."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch.optim import Optimizer


class AdamW(Optimizer):
    """Adam with decoupled weight decay; same update and state layout as torch.optim.AdamW.

    step: p <- p * (1 - lr*wd);  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
          p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, correct_bias: bool = True, foreach: bool = True):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr} (must be >= 0)")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas} (each must lie in [0, 1))")
        if eps < 0.0:
            raise ValueError(f"invalid eps {eps} (must be >= 0)")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay} (must be >= 0)")
        # foreach: one multi-tensor kernel per operation for all of a group's parameters, instead of
        # one per parameter (on a GPU, one launch per tensor dominates small parameters); same update
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias, foreach=foreach))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Apply one update to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("AdamW does not support sparse gradients")
            for p in params:
                state = self.state[p]
                if not state:
                    # Same keys as torch.optim.AdamW so state_dicts are interchangeable.
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            if params:
                (self._update_foreach if group.get("foreach", True) else self._update_loop)(group, params)
        return loss

    def _corrections(self, group: dict, p: torch.Tensor) -> tuple[float, float]:
        """Bias corrections 1 - b^t for this parameter's own step count."""
        if not group["correct_bias"]:
            return 1.0, 1.0
        b1, b2 = group["betas"]
        t = self.state[p]["step"].item()
        return 1.0 - b1 ** t, 1.0 - b2 ** t

    def _update_loop(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for p in params:
            g, state = p.grad, self.state[p]
            m, v = state["exp_avg"], state["exp_avg_sq"]
            bc1, bc2 = self._corrections(group, p)
            p.mul_(1.0 - lr * wd)  # decoupled: decay the weights, not the gradient
            m.lerp_(g, 1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
            p.addcdiv_(m, denom, value=-lr / bc1)

    def _update_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        """The same update as _update_loop, one multi-tensor operation at a time."""
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        ms = [self.state[p]["exp_avg"] for p in params]
        vs = [self.state[p]["exp_avg_sq"] for p in params]
        bcs = [self._corrections(group, p) for p in params]
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_lerp_(ms, grads, 1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(bc2) for _, bc2 in bcs])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, ms, denom, [-lr / bc1 for bc1, _ in bcs])
