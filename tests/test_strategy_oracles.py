"""Every strategy torchjd also has, against torchjd 0.18 as an oracle, at gradient scales from 1e-6 to 1e6,
in float32 and float64, on random and hard task-gradient matrices (dependent, parallel, opposite, zero rows,
norm spreads up to 1e4); where the peer's solver is less exact, the method's own objective; each convention
that differs from the peer, written down; and the three cases of issue 21."""
from __future__ import annotations

import importlib.util
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_core.gram_methods import dual_cone_weights, min_norm_weights, nash_mtl_weights, upgrad_weights
from minbert_core.strategies import CAGrad, get_strategy

tj = pytest.importorskip("torchjd.aggregation", reason="torchjd (the dev extra) is the oracle of these tests")
from torchjd.linalg import DualConeProjector  # noqa: E402

KINDS = ("random", "dependent", "parallel", "opposite", "zero")


def hard_G(T: int, seed: int, kind: str, scale: float, spread: float, P: int = 12) -> torch.Tensor:
    """(T, P) float64 task gradients of one kind, norms `scale` times factors up to `spread` apart."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(T, P, generator=g, dtype=torch.float64)
    G = G * (spread ** torch.rand(T, 1, generator=g, dtype=torch.float64))
    if kind == "dependent":
        G[-1] = 2 * G[0] + G[1] if T > 2 else 0.5 * G[0]
    elif kind == "parallel":
        G[1] = 3.0 * G[0]
    elif kind == "opposite":
        G[1] = -0.7 * G[0]
    elif kind == "zero":
        G[-1] = 0
    return G * scale


cases = st.tuples(st.integers(2, 4), st.integers(0, 2**31 - 1), st.sampled_from(KINDS),
                  st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]), st.sampled_from([1.0, 10.0, 1e2, 1e4]),
                  st.sampled_from([torch.float64, torch.float32]))


def _ours(name: str, G: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Our combined gradient of G given in `dtype` (training passes float32), back in float64."""
    return get_strategy(name, seed=0).combine(G.to(dtype))[0].double()


def _close(d: torch.Tensor, ref: torch.Tensor, G: torch.Tensor, dtype: torch.dtype, rel: float = 1e-6) -> bool:
    tol = (rel if dtype == torch.float64 else 1e-3) * float(G.norm(dim=1).max() * G.shape[0])
    return bool(((d - ref).norm() <= tol))


def _identity_order(n, *args, **kwargs):
    return torch.arange(n)  # the same projection order for ours and torchjd's (both skip i)


# ---- exact peers --------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(cases)
def test_pcgrad_and_gradvac_equal_torchjd_in_the_same_task_order(case):
    """torchjd's PCGrad and GradVac (beta = 0.01, our LibMTL default; eps ~ 0: torchjd's default
    eps = 1e-8 in the cosine's denominator is not scale-free) in the same task order, two steps."""
    T, seed, kind, scale, spread, dtype = case
    G = hard_G(T, seed, kind, scale, spread).to(dtype).double()  # what a float32 run holds, exactly
    with mock.patch("torch.randperm", _identity_order):
        ours = get_strategy("pcgrad").combine(G.to(dtype))[0].double()
        assert _close(ours, tj.PCGrad()(G), G, dtype)
        s, peer = get_strategy("gradvac"), tj.GradVac(beta=0.01, eps=1e-300)
        for _ in range(2):  # the second step starts from the EMA targets of the first
            d, ref = s.combine(G.to(dtype))[0].double(), peer(G)
            # torchjd divides by |g_i'| + eps: once an opposite pair cancelled g_i' to 0 it gives inf
            assert _close(d, ref, G, dtype) if torch.isfinite(ref).all() else torch.isfinite(d).all()


@settings(max_examples=60, deadline=None)
@given(cases)
def test_aligned_mtl_is_t_times_torchjd(case):
    """Convention: Aligned-MTL sums the aligned gradients (the paper, the authors' code); torchjd averages.
    In float32 both decide the rank with float32's eps (torchjd computes in the input's dtype)."""
    T, seed, kind, scale, spread, dtype = case
    if dtype == torch.float32 and spread > 1e2:
        spread = 1e2  # eigenvalues 1e8 apart are below float32's cut-off: both drop them, by rounding
    G = hard_G(T, seed, kind, scale, spread)
    ref = T * tj.AlignedMTL()(G)  # on the exact float64 G: float32 rounding must not change the answer
    assert _close(_ours("aligned-mtl", G, dtype), ref, G, dtype)


@settings(max_examples=60, deadline=None)
@given(cases)
def test_imtl_g_equals_torchjd_and_projects_equally(case):
    """Full-rank G: torchjd's IMTL-G. Rank-deficient G: torchjd generalises with pinv(G G^T) and we with
    pinv of the paper's (D U^T): the weights differ (parallel g, 3g: ours (1, 0), torchjd's (1/4, 3/4)),
    both keep the method's own conditions: sum w = 1, equal projections d . u_i on every nonzero task."""
    T, seed, kind, scale, spread, dtype = case
    G = hard_G(T, seed, kind, scale, spread if dtype == torch.float64 else min(spread, 1e2))
    s = get_strategy("imtl-g")
    d = s.combine(G.to(dtype))[0].double()
    if kind == "random":
        assert _close(d, tj.IMTLG()(G), G, dtype, rel=1e-6 * spread)
    live = G.norm(dim=1) > 0
    proj = (G[live] @ d) / G[live].norm(dim=1)
    tol = (1e-6 if dtype == torch.float64 else 1e-2) * float(G.norm(dim=1).max()) * spread
    assert float(proj.max() - proj.min()) <= tol and abs(float(s.last_weights.sum()) - 1) < 1e-6


# ---- a less exact peer: the method's own objective ------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(cases)
def test_mgda_is_never_longer_than_torchjd_and_meets_its_kkt_conditions(case):
    """torchjd's MGDA is Sener & Koltun's Frank-Wolfe, stopped when the step falls below 1e-3: ours is
    the exact min-norm point, so |d| is at most torchjd's, and the KKT certificate holds at every scale."""
    T, seed, kind, scale, spread, dtype = case
    G = hard_G(T, seed, kind, scale, spread).to(dtype).double()
    w = min_norm_weights((G.to(dtype) @ G.to(dtype).T).double())
    d, ref = w @ G, tj.MGDA()(G)
    top = float(G.norm(dim=1).max()) ** 2
    assert float(d @ d) <= float(ref @ ref) + (1e-12 if dtype == torch.float64 else 1e-6) * top
    slack = G @ d - float(d @ d)  # g_j . d >= |d|^2, with equality where w_j > 0
    tol = (1e-9 if dtype == torch.float64 else 1e-5) * top
    assert (slack >= -tol).all() and (slack[w > 1e-6].abs() <= tol).all()


class CoordinateDescent(DualConeProjector):
    """A reference for torchjd's UPGrad where its quadprog projector is not installed: the same QP,
    min v^T K v subject to v >= u, by exact coordinate minimisation (each v_i in closed form)."""

    def __call__(self, U: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        K = G.tolist()
        out = []
        for u in U.tolist():
            v = list(u)
            for _ in range(5000):
                change = 0.0
                for i in range(len(v)):
                    if K[i][i] > 0:
                        new = max(u[i], -(sum(K[i][j] * v[j] for j in range(len(v)) if j != i)) / K[i][i])
                        change, v[i] = max(change, abs(new - v[i])), new
                if change < 1e-15:
                    break
            out.append(v)
        return torch.tensor(out, dtype=G.dtype)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**31 - 1), st.sampled_from([1e-6, 1.0, 1e6]), st.sampled_from([1.0, 1e2]))
def test_upgrad_equals_torchjd_upgrad_on_random_gram_matrices(T, seed, scale, spread):
    """torchjd's UPGradWeighting (mean preference, dual-cone projection of each row, sum) with a
    reference projector: to 1e-6."""
    G = hard_G(T, seed, "random", scale, spread)
    K = G @ G.T
    ref = tj.UPGradWeighting(projector=CoordinateDescent())(K / float(K.diagonal().max()))
    assert torch.allclose(upgrad_weights(K), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("quadprog") is None or importlib.util.find_spec("qpsolvers") is None,
                    reason="torchjd's own UPGrad projector needs quadprog and qpsolvers (torchjd[quadprog_projector]), "
                           "not installed")
@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_upgrad_equals_torchjd_quadprog_upgrad(T, seed):
    from torchjd.linalg import QuadprogProjector

    G = hard_G(T, seed, "random", 1.0, 10.0)
    ref = tj.UPGrad(projector=QuadprogProjector(norm_eps=0.0, reg_eps=0.0))(G)
    assert torch.allclose(get_strategy("upgrad").combine(G)[0], ref, atol=1e-6 * float(G.norm(dim=1).max()))


@settings(max_examples=60, deadline=None)
@given(cases)
def test_upgrad_conflicts_with_no_task_and_each_projection_is_optimal(case):
    """Hard cases: d . g_j >= 0 for every task, and each projection's objective v^T K v is no larger
    than the reference solver's (coordinate descent) from the same start."""
    T, seed, kind, scale, spread, dtype = case
    G = hard_G(T, seed, kind, scale, spread).to(dtype).double()
    d = _ours("upgrad", G, dtype)
    top = float(G.norm(dim=1).max()) ** 2
    assert (G @ d >= -(1e-9 if dtype == torch.float64 else 1e-5) * top).all()
    K = G @ G.T / top
    for i in range(T):
        u = torch.eye(T, dtype=torch.float64)[i]
        v = dual_cone_weights(K, u)
        ref = CoordinateDescent()(u[None], K)[0]
        # K is scaled to a unit largest entry; degenerate (opposite) cases have many minimisers with equal
        # objectives up to rounding, so the objective is compared to a relative 1e-7
        assert (v >= u - 1e-9).all() and float(v @ K @ v) <= float(ref @ K @ ref) * (1 + 1e-7) + 1e-12


@pytest.mark.skipif(importlib.util.find_spec("cvxpy") is None,
                    reason="torchjd's CAGrad and NashMTL solve with cvxpy (torchjd[cagrad], torchjd[nash_mtl]), not installed")
@settings(max_examples=20, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**31 - 1), st.sampled_from([1e-3, 1.0, 1e3]))
def test_cagrad_and_nash_against_torchjd_cvxpy(T, seed, scale):
    """CAGrad: ours is torchjd's times 1/(1 + c^2) (the authors' rescale). Nash-MTL: torchjd's cvxpy
    sequence, unclipped (max_norm 0), meets the bargaining equations no better than ours."""
    G = hard_G(T, seed, "random", scale, 10.0)
    ref = tj.CAGrad(c=CAGrad.c, norm_eps=0.0)(G) / (1 + CAGrad.c ** 2)
    assert torch.allclose(get_strategy("cagrad").combine(G)[0], ref, atol=1e-5 * float(G.norm(dim=1).max()))
    K = G @ G.T
    alpha = nash_mtl_weights(K)
    peer = tj.NashMTL(n_tasks=T, max_norm=0.0, optim_niter=50).weighting(G)
    assert float((alpha * (K @ alpha) - 1).abs().max()) <= float((peer * (K @ peer) - 1).abs().max()) + 1e-9


# ---- conventions that differ from the peers --------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**31 - 1), st.sampled_from([1e-6, 1.0, 1e6]), st.sampled_from([1.0, 1e4]))
def test_nash_mtl_is_unclipped_with_norm_sqrt_t_at_every_scale(T, seed, scale, spread):
    """Convention: the authors' code and torchjd clip d to max_norm (1.0); an exact solution has
    |d|^2 = sum_i alpha_i (K alpha)_i = T whatever the gradients' scale, so that clipping is the constant
    1/sqrt(T), and it is left to the run's own gradient clipping."""
    G = hard_G(T, seed, "random", scale, spread)
    d = _ours("nash-mtl", G, torch.float64)
    assert float(d @ d) == pytest.approx(T, rel=1e-6)


def test_cagrad_convention_rescales_by_one_over_one_plus_c_squared():
    """The step before rescaling lies on the ball |d - g0| = c |g0| (torchjd's CAGrad returns it);
    ours is it divided by 1 + c^2, the authors' default."""
    G = hard_G(3, 5, "random", 1.0, 10.0)
    d = _ours("cagrad", G, torch.float64)
    g0, c = G.mean(0), CAGrad.c
    assert float((d * (1 + c * c) - g0).norm()) == pytest.approx(c * float(g0.norm()), rel=1e-9)
    assert float((d - g0).norm()) != pytest.approx(c * float(g0.norm()), rel=1e-3)


# ---- the three cases of issue 21 -----------------------------------------------------------------
def test_issue21_mgda_at_large_gradient_norms():
    G = 1e4 * torch.tensor([[1, 2, 0, -1, 3], [-0.8, -0.6, -2, 1.8, -2.4], [1.5, -2, 1, 0.5, -2.5]],
                           dtype=torch.float64)
    w = min_norm_weights(G @ G.T)
    assert torch.allclose(w, torch.tensor([0.4390, 0.2888, 0.2722], dtype=torch.float64), atol=1e-4)
    for s in (1e-4, 1.0, 1e4, 1e6):  # the same weights at every scale
        assert torch.allclose(min_norm_weights((s * G) @ (s * G).T), w, atol=1e-10)


def test_issue21_nash_mtl_does_not_bias_a_task_with_small_gradients():
    G = torch.tensor([[1000.0, 0, 0, 0, 0], [0, 0.001, 0, 0, 0]], dtype=torch.float64)
    d = _ours("nash-mtl", G, torch.float64)
    assert torch.allclose(d, torch.tensor([1.0, 1.0, 0, 0, 0], dtype=torch.float64), atol=1e-9)
    for seed in range(48):  # norm spreads of about 200 to 1000x: the equations hold
        G = hard_G(3, seed, "random", 1.0, 1e3)
        K = G @ G.T
        alpha = nash_mtl_weights(K)
        assert float((alpha * (K @ alpha) - 1).abs().max()) < 1e-9


def test_issue21_aligned_mtl_with_float32_dependent_gradients():
    """Float32 gradients, g3 = 2 g1 + g2: the float64 answer (|d| = 1.356 for the issue's case), not
    rounding noise kept as the smallest singular value; over 40 draws, of which about 40% failed."""
    g1 = torch.tensor([0.1, 0.2, 0.3, -0.7, 0.5], dtype=torch.float64)
    g2 = torch.tensor([0.3, -0.1, 0.4, 0.2, -0.6], dtype=torch.float64)
    draws = [torch.stack([g1, g2, 2 * g1 + g2])]
    for seed in range(40):
        a, b = torch.randn(2, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        draws.append(torch.stack([a, b, 2 * a + b]))
    assert float(_ours("aligned-mtl", draws[0], torch.float64).norm()) == pytest.approx(1.356, abs=1e-3)
    for G in draws:
        ref = _ours("aligned-mtl", G, torch.float64)
        assert torch.allclose(_ours("aligned-mtl", G, torch.float32), ref, rtol=1e-4, atol=1e-4 * float(ref.norm()))
