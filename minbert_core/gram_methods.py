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
