"""Task weights from the T x T Gram matrix of the task gradients: the math of the Gram-based strategies.

Each function takes `gram[i, j] = g_i . g_j` (float64, on the CPU) and returns weights `w` such that
the combined gradient is `d = sum_i w_i g_i`. Every quantity these methods need (norms, projections,
unit vectors, the min-norm point of the convex hull, the eigenvectors of G G^T) is a function of the
Gram matrix, so no P-dimensional vector is copied beyond the (T, P) task gradients themselves, and the
small problems are solved exactly in T x T: no optimisation library. Depends on torch alone.
"""
from __future__ import annotations

from itertools import combinations

import torch


def min_norm_weights(gram: torch.Tensor) -> torch.Tensor:
    """MGDA's min-norm point of the convex hull of the task gradients: argmin_w |sum w_i g_i|^2, w in
    the simplex. Solved exactly by trying every support S (2^T - 1 of them; T <= 6 here): on S, the
    equality-constrained minimum solves [G_SS 1; 1^T 0][w; mu] = [0; 1]; the best nonnegative candidate
    is the optimum, because the optimum's own support is among those tried."""
    T = gram.shape[0]
    if T > 6:
        raise ValueError(f"min-norm weights by support enumeration are for up to 6 tasks, got {T}")
    best, best_val = None, float("inf")
    for k in range(1, T + 1):
        for S in combinations(range(T), k):
            idx = list(S)
            K = torch.zeros(k + 1, k + 1, dtype=torch.float64)
            K[:k, :k] = gram[idx][:, idx]
            K[:k, k] = K[k, :k] = 1.0
            rhs = torch.zeros(k + 1, dtype=torch.float64)
            rhs[k] = 1.0
            a = (torch.linalg.pinv(K) @ rhs)[:k]  # pinv: a singular block (parallel gradients) still solves
            if (a < -1e-9).any() or a.sum() <= 0:
                continue
            w = torch.zeros(T, dtype=torch.float64)
            w[idx] = a.clamp(min=0)
            w /= w.sum()
            val = float(w @ gram @ w)
            if val < best_val:
                best, best_val = w, val
    assert best is not None  # every single task is a feasible support
    return best


def imtl_g_weights(gram: torch.Tensor) -> torch.Tensor:
    """IMTL-G (Liu et al. 2021): the d = sum w_i g_i with sum w_i = 1 whose projections onto every
    unit task gradient u_i are equal. With D = [g_1 - g_i] and U = [u_1 - u_i] (i = 2..T), the paper's
    w_{2..T} = g_1 U^T (D U^T)^{-1}; every dot product there is a Gram entry over norms. Tasks with a
    zero gradient get weight 0 (they have no direction to be impartial to)."""
    T = gram.shape[0]
    norms = gram.diagonal().clamp(min=0).sqrt()
    live = [i for i in range(T) if norms[i] > 0]
    w = torch.zeros(T, dtype=torch.float64)
    if len(live) <= 1:
        w[live] = 1.0
        return w
    g = gram[live][:, live]
    n = norms[live]
    first, rest = 0, range(1, len(live))
    # (g_1 - g_i) . (u_1 - u_j) and g_1 . (u_1 - u_j), from the Gram matrix
    gu = g / n  # gu[a, b] = g_a . u_b
    DU = torch.stack([torch.stack([gu[first, first] - gu[first, j] - gu[i, first] + gu[i, j] for j in rest])
                      for i in rest])
    a = torch.stack([gu[first, first] - gu[first, j] for j in rest])
    x = a @ torch.linalg.pinv(DU)  # row vector: g_1 U^T (D U^T)^{-1}
    w[live] = torch.cat([(1 - x.sum()).reshape(1), x])
    return w


def aligned_mtl_weights(gram: torch.Tensor) -> torch.Tensor:
    """Aligned-MTL (Senushkin et al. 2023): make the task gradients orthogonal with equal norms, the
    smallest singular value, by B = sqrt(lambda_min) V Lambda^{-1/2} V^T (G G^T = V Lambda V^T, rank
    r), then sum the aligned gradients: d = 1^T B G, so w = B 1. Directions of zero eigenvalue (linearly
    dependent gradients) are dropped, as in the authors' code."""
    lam, V = torch.linalg.eigh(gram)
    keep = lam > lam.max().clamp(min=0) * gram.shape[0] * torch.finfo(torch.float64).eps
    if not keep.any():
        return torch.zeros(gram.shape[0], dtype=torch.float64)
    lam, V = lam[keep], V[:, keep]
    B = lam.min().sqrt() * (V * lam.rsqrt()) @ V.T  # (T, T)
    return B.sum(1)


def cagrad_weights(gram: torch.Tensor, c: float = 0.4) -> torch.Tensor:
    """CAGrad (Liu et al. 2021): d = g0 + (c |g0| / |g_w|) g_w, the direction within the ball
    |d - g0| <= c |g0| around the average gradient g0 that maximises the worst task's improvement.

    w minimises F(w) = g_w . g0 + c |g0| |g_w| over the simplex (the paper's dual). On a support S
    with A = G_SS, KKT reads b + c|g0| A w / |g_w| = mu 1 (b = A 1/T restricted to S); with
    p = A^-1 1 and q = A^-1 b this gives w = (mu p - q) / sqrt(disc), mu from a quadratic. Every
    support is tried and the best feasible point kept, as for MGDA: exact, in T x T. Returns the
    weights of d itself (1/T + lambda w_i), unscaled; the strategy applies the paper's 1/(1 + c^2).
    """
    T = gram.shape[0]
    if T > 6:
        raise ValueError(f"CAGrad weights by support enumeration are for up to 6 tasks, got {T}")
    b_all = gram.sum(1) / T  # g_i . g0
    g0_sq = float(b_all.sum() / T)  # |g0|^2
    if g0_sq <= 0:
        return torch.full((T,), 1.0 / T, dtype=torch.float64)
    r = c * g0_sq ** 0.5  # the ball's radius, c |g0|

    def F(w: torch.Tensor) -> float:
        return float(w @ b_all) + r * max(float(w @ gram @ w), 0.0) ** 0.5

    cands = [min_norm_weights(gram)]  # the hull's min-norm point: covers |g_w| = 0
    for k in range(1, T + 1):
        for S in combinations(range(T), k):
            idx = list(S)
            Ainv = torch.linalg.pinv(gram[idx][:, idx])
            p, q = Ainv @ torch.ones(k, dtype=torch.float64), Ainv @ b_all[idx]
            sp, sq, bq = float(p.sum()), float(q.sum()), float(b_all[idx] @ q)
            disc = sq * sq - sp * (bq - r * r)
            if sp <= 0 or disc <= 0:
                continue
            a = (((sq + disc ** 0.5) / sp) * p - q) / disc ** 0.5
            if (a < -1e-9).any() or a.sum() <= 0:
                continue
            w = torch.zeros(T, dtype=torch.float64)
            w[idx] = a.clamp(min=0)
            cands.append(w / w.sum())
    w = min(cands, key=F)
    gw = max(float(w @ gram @ w), 0.0) ** 0.5
    lam = r / gw if gw > 0 else 0.0
    return torch.full((T,), 1.0 / T, dtype=torch.float64) + lam * w


def nash_mtl_weights(gram: torch.Tensor, ridge: float = 1e-10, max_iter: int = 100) -> torch.Tensor:
    """Nash-MTL (Navon et al. 2022): the bargaining solution alpha > 0 with alpha_i (G G^T alpha)_i = 1
    for every task, d = sum alpha_i g_i. It is the unique minimiser of the strictly convex
    phi(alpha) = alpha^T K alpha / 2 - sum log alpha_i (K = G G^T), found by Newton's method with a
    backtracking line search that keeps alpha positive: no convex-optimisation package. A ridge of
    1e-10 x trace(K) keeps the problem bounded when the task gradients are linearly dependent."""
    T = gram.shape[0]
    K = gram + ridge * abs(float(gram.diagonal().sum())) * torch.eye(T, dtype=torch.float64)
    if float(K.diagonal().max()) <= 0:
        return torch.zeros(T, dtype=torch.float64)
    alpha = 1.0 / K.diagonal().clamp(min=1e-300).sqrt()  # exact when the gradients are orthogonal

    def phi(a: torch.Tensor) -> float:
        return float(a @ K @ a) / 2 - float(a.log().sum())

    for _ in range(max_iter):
        grad = K @ alpha - 1.0 / alpha
        hess = K + torch.diag(1.0 / alpha ** 2)
        step = torch.linalg.solve(hess, grad)
        if float(grad @ step) < 1e-24:  # Newton decrement: converged to machine precision
            break
        t, f0 = 1.0, phi(alpha)
        while (alpha - t * step <= 0).any() or phi(alpha - t * step) > f0 - 0.25 * t * float(grad @ step):
            t /= 2
            if t < 1e-12:
                break
        alpha = alpha - t * step
    return alpha


def gradvac_weights(gram: torch.Tensor, targets: torch.Tensor, order: list[list[int]], beta: float = 0.01
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient Vaccine (Wang et al. 2021), on the whole shared gradient: for each task i and each
    other task j (in `order[i]`), when cos(g_i', g_j) is below the pair's target phi_ij (an EMA of the
    observed cosines, updated with rate beta), add the multiple of g_j that brings it to the target:
    g_i' += g_j |g_i'| (phi_t sqrt(1 - phi^2) - phi sqrt(1 - phi_t^2)) / (|g_j| sqrt(1 - phi_t^2)).
    All in the span of G, on the Gram matrix, like PCGrad. Returns (weights, altered flags, new targets)."""
    T = gram.shape[0]
    altered = torch.zeros(T, T, dtype=torch.bool)
    new_targets = targets.clone()
    w = torch.zeros(T, dtype=torch.float64)
    for i in range(T):
        a = torch.zeros(T, dtype=torch.float64)
        a[i] = 1.0  # g_i' = sum_k a_k g_k
        for j in order[i]:
            gj2 = float(gram[j, j])
            gi2 = float(a @ gram @ a)
            if gj2 <= 0 or gi2 <= 0:
                continue
            dot = float(a @ gram[:, j])
            phi = dot / (gi2 * gj2) ** 0.5
            phi_t = float(targets[i, j])
            if phi < phi_t:
                coef = gi2 ** 0.5 * (phi_t * (1 - phi * phi) ** 0.5 - phi * (1 - phi_t * phi_t) ** 0.5) / (
                    gj2 ** 0.5 * (1 - phi_t * phi_t) ** 0.5)
                a[j] += coef
                altered[i, j] = True
            new_targets[i, j] = (1 - beta) * phi_t + beta * phi
        w += a
    return w, altered, new_targets
