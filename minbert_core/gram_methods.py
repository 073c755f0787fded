"""Task weights from the T x T Gram matrix of the task gradients: the math of the Gram-based strategies.

Each function takes `gram[i, j] = g_i . g_j` (float64, on the CPU) and returns weights `w` such that
the combined gradient is `d = sum_i w_i g_i`. Every quantity these methods need (norms, projections,
unit vectors, the min-norm point of the convex hull, the eigenvectors of G G^T) is a function of the
Gram matrix, so no P-dimensional vector is copied beyond the (T, P) task gradients themselves, and the
small problems are solved exactly in T x T: no optimisation library. Depends on torch alone.

Two rules keep every solver exact whatever the size of the gradients:
- scale: each T x T problem is solved on a normalised Gram matrix (divided by its largest diagonal
  entry, or, where the method is invariant to each task's scale, turned into the cosine matrix), so
  a fixed cut-off never meets entries of size |g|^2 next to ones;
- precision: where a method decides a rank (Aligned-MTL drops dependent directions), the cut-off is
  the unit roundoff `eps` of the dtype the task gradients were in (float32 in training), as the
  authors' code does with the dtype it computes in: a float32 Gram matrix carries rounding of about
  2^-23 of its largest entry, not float64's 2^-52.
"""
from __future__ import annotations

from itertools import combinations

import torch

F64_EPS = torch.finfo(torch.float64).eps


def _scaled(gram: torch.Tensor) -> torch.Tensor:
    """The Gram matrix divided by its largest diagonal entry (unchanged when that is 0): methods whose
    weights do not change when every gradient is scaled by one factor solve on this."""
    top = float(gram.diagonal().max())
    return gram / top if top > 0 else gram


def min_norm_weights(gram: torch.Tensor) -> torch.Tensor:
    """MGDA's min-norm point of the convex hull of the task gradients: argmin_w |sum w_i g_i|^2, w in
    the simplex. Solved exactly by trying every support S (2^T - 1 of them; T <= 6 here): on S, the
    equality-constrained minimum solves [G_SS 1; 1^T 0][w; mu] = [0; 1]; the best nonnegative candidate
    is the optimum, because the optimum's own support is among those tried. Solved on the Gram matrix
    scaled to a largest diagonal of 1 (the weights do not depend on the gradients' common scale), so
    pinv's relative cut-off sees entries of one size."""
    T = gram.shape[0]
    if T > 6:
        raise ValueError(f"min-norm weights by support enumeration are for up to 6 tasks, got {T}")
    gram = _scaled(gram)
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
    gram = _scaled(gram)  # the weights do not depend on the gradients' common scale
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


def aligned_mtl_weights(gram: torch.Tensor, eps: float = F64_EPS) -> torch.Tensor:
    """Aligned-MTL (Senushkin et al. 2023): make the task gradients orthogonal with equal norms, the
    smallest singular value, by B = sqrt(lambda_min) V Lambda^{-1/2} V^T (G G^T = V Lambda V^T, rank
    r), then sum the aligned gradients: d = 1^T B G, so w = B 1.

    Directions whose eigenvalue is below lambda_max * T * eps are dropped (linearly dependent
    gradients), the authors' cut-off, with `eps` the unit roundoff of the dtype G was in: with float32
    gradients, rounding leaves an eigenvalue of about 1e-7 lambda_max where G is rank-deficient, and a
    float64 cut-off would keep it as the smallest singular value and shrink the step to nothing.
    Convention: the aligned gradients are summed, as in the paper and the authors' code; torchjd's
    AlignedMTL averages them (its weights are ours / T)."""
    lam, V = torch.linalg.eigh(gram)
    keep = lam > lam.max().clamp(min=0) * gram.shape[0] * eps
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
    weights of d itself (1/T + lambda w_i), unscaled, as torchjd's CAGradWeighting returns them; the
    strategy applies the authors' default rescaling by 1/(1 + c^2). Solved on the Gram matrix scaled to
    a largest diagonal of 1: the weights do not depend on the gradients' common scale.
    """
    T = gram.shape[0]
    if T > 6:
        raise ValueError(f"CAGrad weights by support enumeration are for up to 6 tasks, got {T}")
    gram = _scaled(gram)
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
    for every task, d = sum alpha_i g_i.

    The equations do not change when one task's gradient is scaled (alpha_i scales inversely), so they
    are solved on the cosine matrix C = D^-1/2 K D^-1/2 (K = G G^T, D its diagonal): beta_i (C beta)_i
    = 1, alpha = D^-1/2 beta. beta is the unique minimiser of the strictly convex
    phi(beta) = beta^T C beta / 2 - sum log beta_i, found by Newton's method with a backtracking line
    search that keeps beta positive: no convex-optimisation package. A ridge of 1e-10 on C's unit
    diagonal keeps the problem bounded when the task gradients are linearly dependent; on C it is the
    same size for every task (on K, a ridge relative to trace(K) outweighed a small task's own entries).
    A task with a zero gradient has no bargaining power to give: weight 0.

    Conventions against the authors' code and torchjd's NashMTL: the equations are solved to machine
    precision (theirs: 20 steps of a cvxpy sequence), and d is not clipped. An exact solution has
    |d|^2 = alpha^T K alpha = sum_i alpha_i (K alpha)_i = T at every gradient scale, and their default
    max_norm = 1 clips it to |d| = 1: a constant factor 1/sqrt(T); the run's own clipping applies here.
    """
    T = gram.shape[0]
    norms = gram.diagonal().clamp(min=0).sqrt()
    live = norms > 0
    alpha = torch.zeros(T, dtype=torch.float64)
    if not bool(live.any()):
        return alpha
    n = norms[live]
    C = gram[live][:, live] / (n[:, None] * n[None, :])
    C = C + ridge * torch.eye(len(n), dtype=torch.float64)
    alpha[live] = _nash_newton(C, max_iter) / n
    return alpha


def _nash_newton(C: torch.Tensor, max_iter: int) -> torch.Tensor:
    """Newton's method for min beta^T C beta / 2 - sum log beta_i (C with a unit diagonal), from the
    solution for orthogonal gradients, beta = 1."""
    beta = torch.ones(C.shape[0], dtype=torch.float64)

    def phi(b: torch.Tensor) -> float:
        return float(b @ C @ b) / 2 - float(b.log().sum())

    for _ in range(max_iter):
        grad = C @ beta - 1.0 / beta
        step = torch.linalg.solve(C + torch.diag(1.0 / beta ** 2), grad)
        dec = float(grad @ step)  # Newton decrement squared
        if dec < 1e-24:  # converged to machine precision
            break
        t, f0 = 1.0, phi(beta)
        while (beta - t * step <= 0).any() or phi(beta - t * step) > f0 - 0.25 * t * dec:
            t /= 2
            if t < 1e-12:
                break
        beta = beta - t * step
    return beta


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
            phi = max(-1.0, min(1.0, dot / (gi2 * gj2) ** 0.5))  # rounding: |cos| can exceed 1 (opposite pairs)
            phi_t = float(targets[i, j])
            if phi < phi_t < 1.0:  # a target of exactly 1 (identical gradients so far) has no finite step
                coef = gi2 ** 0.5 * (phi_t * (1 - phi * phi) ** 0.5 - phi * (1 - phi_t * phi_t) ** 0.5) / (
                    gj2 ** 0.5 * (1 - phi_t * phi_t) ** 0.5)
                a[j] += coef
                altered[i, j] = True
            new_targets[i, j] = (1 - beta) * phi_t + beta * phi
        w += a
    return w, altered, new_targets


def dual_cone_weights(gram: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The projection of u^T G onto the dual cone {x : G x >= 0} of the task gradients, as weights v
    with the projection = v^T G: by Proposition 1 of Quinton & Rey (2024), v = argmin v^T K v subject
    to v >= u (K = G G^T). Solved exactly like MGDA's min-norm point: for every set F of free
    coordinates (the others held at u), the stationary point on F solves K_FF v_F = -K_FA u_A; the
    feasible candidate (v >= u) with the least v^T K v is the optimum, since the optimum's own free set
    is among those tried and v = u is always feasible. Scale-free: solved on K scaled to a largest
    diagonal of 1."""
    T = gram.shape[0]
    if T > 6:
        raise ValueError(f"dual-cone projections by active-set enumeration are for up to 6 tasks, got {T}")
    K = _scaled(gram)
    best, best_val = u.clone(), float(u @ K @ u)
    tol = 1e-9 * float(u.abs().max().clamp(min=1e-300))
    for k in range(1, T + 1):
        for F in combinations(range(T), k):
            free = list(F)
            held = [i for i in range(T) if i not in F]
            v = u.clone()
            v[free] = -torch.linalg.pinv(K[free][:, free]) @ (K[free][:, held] @ u[held])
            if (v[free] < u[free] - tol).any():
                continue
            v = torch.maximum(v, u)
            val = float(v @ K @ v)
            if val < best_val:
                best, best_val = v, val
    return best


def upgrad_weights(gram: torch.Tensor) -> torch.Tensor:
    """UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"): each task
    gradient projected onto the dual cone of all of them (so the projection conflicts with no task),
    then averaged: w = (1/T) sum_i v(e_i), v from dual_cone_weights. As torchjd's UPGrad with its
    default preference vector (1/T, ..., 1/T), but exact: torchjd's quadprog projector adds 1e-4 to
    the diagonal of the trace-normalised Gram matrix."""
    T = gram.shape[0]
    eye = torch.eye(T, dtype=torch.float64)
    return sum(dual_cone_weights(gram, eye[i]) for i in range(T)) / T
