"""The Gram-based strategies beyond PCGrad: each against a textbook form on full vectors, its defining
property, and the shared backward contract."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_core.gram_methods import (aligned_mtl_weights, gradvac_weights, imtl_g_weights, min_norm_weights,
                                      nash_mtl_weights)
from minbert_core.strategies import STRATEGIES, IMTLG, MGDA, AlignedMTL, CAGrad, GradVac, get_strategy


def _G(T: int, seed: int, P: int = 40) -> torch.Tensor:
    """Random task gradients with varied norms (0.01 to 100) and some conflicting pairs."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(T, P, generator=g, dtype=torch.float64)
    return G * torch.logspace(-2, 2, T, dtype=torch.float64)[torch.randperm(T, generator=g)].unsqueeze(1)


seeds = st.integers(0, 2**31 - 1)
NEW = ["mgda-ub", "imtl-g", "aligned-mtl", "cagrad", "nash-mtl", "gradvac", "dwa", "uncertainty", "gradnorm", "upgrad"]


@pytest.mark.parametrize("name", NEW)
def test_degenerate_gradients_give_finite_steps(name):
    """Parallel, opposite and zero task gradients, at gradient scales 1e-6 to 1e6: a finite combination,
    never nan (GradVac once took a complex square root where rounding put an opposite pair's cosine
    below -1)."""
    g = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    h = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # seed 1: cos < -1 by rounding
    for G in (torch.stack([g, 3 * g]), torch.stack([g, -g]), torch.stack([g, torch.zeros(3, dtype=torch.float64)]),
              torch.stack([g, 2 * g, -g]), torch.stack([h, -0.7 * h])):
        for scale in (1e-6, 1.0, 1e6):
            d, _ = get_strategy(name, seed=0).combine(scale * G)
            assert torch.isfinite(d).all(), (name, G)


# ---- MGDA-UB ------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(seeds)
def test_mgda_two_tasks_equals_the_closed_form(seed):
    """Sener & Koltun's Algorithm 1 for two tasks: alpha = clip((g2 - g1).g2 / |g1 - g2|^2, 0, 1)."""
    g1, g2 = _G(2, seed)
    alpha = ((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1)
    textbook = alpha * g1 + (1 - alpha) * g2
    d, _ = MGDA().combine(torch.stack([g1, g2]))
    assert torch.allclose(d, textbook, rtol=1e-6, atol=1e-6 * float(torch.stack([g1, g2]).norm(dim=1).min()))


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 5), seeds)
def test_mgda_is_the_min_norm_point_of_the_convex_hull(T, seed):
    """The KKT conditions, a certificate of optimality for this convex problem: w in the simplex, and
    g_j . d >= |d|^2 for every task, with equality on the tasks that carry weight."""
    G = _G(T, seed)
    gram = G @ G.T
    w = min_norm_weights(gram)
    assert (w >= 0).all() and abs(float(w.sum()) - 1) < 1e-12
    d = w @ G
    dd, scale = float(d @ d), float(gram.diagonal().max())
    dg = G @ d
    assert (dg >= dd - 1e-9 * scale).all()
    assert torch.allclose(dg[w > 1e-9], torch.full_like(dg[w > 1e-9], dd), atol=1e-9 * scale)
    # and no other point of the hull is shorter
    probe = torch.distributions.Dirichlet(torch.ones(T, dtype=torch.float64)).sample((200,))
    assert float(((probe @ G) ** 2).sum(1).min()) >= dd * (1 - 1e-9)


def test_mgda_with_parallel_and_zero_gradients():
    g = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    assert torch.allclose(MGDA().combine(torch.stack([g, 3 * g]))[0], g)  # the shorter one
    assert torch.allclose(MGDA().combine(torch.stack([g, torch.zeros(3, dtype=torch.float64)]))[0],
                          torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="up to 6 tasks"):
        min_norm_weights(torch.eye(7, dtype=torch.float64))


# ---- IMTL-G -------------------------------------------------------------------------------------
def textbook_imtl_g(G: torch.Tensor) -> torch.Tensor:
    """Liu et al. (2021), Algorithm 1 on full vectors, as LibMTL writes it."""
    U = G / G.norm(dim=1, keepdim=True)
    D = G[0:1] - G[1:]
    Ud = U[0:1] - U[1:]
    alpha = G[0] @ Ud.T @ torch.linalg.inv(D @ Ud.T)
    alpha = torch.cat([(1 - alpha.sum()).reshape(1), alpha])
    return alpha @ G


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 5), seeds)
def test_imtl_g_equals_textbook_and_projects_equally(T, seed):
    G = _G(T, seed)
    d, _ = IMTLG().combine(G)
    ref = textbook_imtl_g(G)
    assert torch.allclose(d, ref, rtol=1e-6, atol=1e-6 * float(ref.norm()))
    proj = G @ d / G.norm(dim=1)  # d . u_i
    assert torch.allclose(proj, proj.mean().expand(T), rtol=1e-6, atol=1e-9 * float(G.norm(dim=1).max()))


def test_imtl_g_weights_sum_to_one_and_skip_zero_gradients():
    G = _G(3, 7)
    w = imtl_g_weights(G @ G.T)
    assert abs(float(w.sum()) - 1) < 1e-9
    G[1] = 0
    w = imtl_g_weights(G @ G.T)
    assert w[1] == 0 and abs(float(w.sum()) - 1) < 1e-9


# ---- Aligned-MTL --------------------------------------------------------------------------------
def textbook_aligned(G: torch.Tensor) -> torch.Tensor:
    """The aligned gradients from the SVD of G itself, G = U S W^T: G_hat = s_min U W^T, summed."""
    U, S, Wt = torch.linalg.svd(G, full_matrices=False)
    return (S.min() * U @ Wt).sum(0)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 5), seeds)
def test_aligned_mtl_equals_the_svd_form_and_aligns(T, seed):
    G = _G(T, seed)
    d, _ = AlignedMTL().combine(G)
    ref = textbook_aligned(G)
    assert torch.allclose(d, ref, rtol=1e-6, atol=1e-6 * float(ref.norm()))
    # d sums T aligned gradients, orthogonal with equal norms s_min: |d|^2 = T s_min^2
    s_min = float(torch.linalg.svdvals(G).min())
    assert float(d @ d) == pytest.approx(T * s_min ** 2, rel=1e-6)


def test_aligned_mtl_drops_dependent_directions():
    """g, h, g: rank 2. K = [[1,0,1],[0,4,0],[1,0,1]] has eigenvalues 2 (v = (1,0,1)/sqrt 2), 4
    (v = e_2) and 0, dropped. B = sqrt 2 (v1 v1^T / sqrt 2 + v2 v2^T / 2), so w = B 1 = (1, 1/sqrt 2, 1)
    and d = 2 g + h / sqrt 2 = (2, sqrt 2, 0), in float64 and in float32."""
    g = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    h = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        d, _ = AlignedMTL().combine(torch.stack([g, h, g]).to(dtype))
        assert torch.allclose(d.double(), torch.tensor([2.0, 2 ** 0.5, 0.0], dtype=torch.float64), atol=1e-5)


# ---- all strategies: the backward contract, telemetry and resume ---------------------------------
@pytest.mark.parametrize("name", NEW)
def test_backward_writes_the_combination_and_records_weights(name):
    torch.manual_seed(0)
    enc, heads = torch.nn.Linear(3, 4), torch.nn.ModuleList([torch.nn.Linear(4, 1) for _ in range(3)])
    x = torch.randn(8, 3)
    fns = {f"t{i}": (lambda i=i: (heads[i](enc(x)) * (i - 1.2)).sum()) for i in range(3)}
    shared = list(enc.named_parameters())
    grads = []
    for t, fn in fns.items():  # each task's own shared gradient, by hand
        enc.zero_grad(set_to_none=True)
        fn().backward()
        grads.append(torch.cat([p.grad.flatten() for _, p in shared]))
    enc.zero_grad(set_to_none=True)
    heads.zero_grad(set_to_none=True)
    s = get_strategy(name, seed=0)
    res = s.backward(fns, shared, record=True)
    got = torch.cat([p.grad.flatten() for _, p in shared])
    G = torch.stack(grads)
    w = s.last_weights.float()
    assert torch.allclose(got, w @ G, atol=1e-5)
    overall = [r for r in res.telemetry if r["group"] == "overall"]
    assert len(overall) == 3
    d = w @ G
    for r in overall:
        i = int(r["task_a"][1])
        assert r["weight_a"] == pytest.approx(float(w[i]), rel=1e-6)
        assert r["cos_combined_a"] == pytest.approx(float(d @ G[i] / (d.norm() * G[i].norm())), abs=1e-5)


def test_registry_names_and_stateless_resume():
    assert list(STRATEGIES) == ["sum", "pcgrad", *NEW]  # 'single' is a training rule, not a combination
    G = _G(3, 1)
    for name in NEW:
        a = get_strategy(name, seed=3)
        b = get_strategy(name, seed=99)
        b.load_state_dict(a.state_dict())
        for _ in range(2):
            assert torch.equal(a.combine(G)[0], b.combine(G)[0])


def test_weights_sum_as_each_method_defines():
    """MGDA's are a convex combination and IMTL-G's an affine one (both sum to 1); the sum's are all 1."""
    G = _G(4, 5)
    for cls in (MGDA, IMTLG):
        s = cls()
        s.combine(G)
        assert abs(float(s.last_weights.sum()) - 1) < 1e-9
    assert get_strategy("sum").weights(G @ G.T, None, 2.0 ** -52)[0].tolist() == [1.0] * 4


def test_imtl_g_run_records_its_impartial_direction(tmp_path, data_root):
    """(tests/test_distributed.py trains a run with every strategy; this one checks IMTL-G's telemetry)"""
    name = "imtl-g"
    import csv
    import json

    from minbert_core.train import smoke_config, train

    run = train(smoke_config(strategy=name, epochs=1, batch_size=8, runs_dir=str(tmp_path), data_dir=str(data_root)))
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
    rows = [r for r in csv.DictReader((run / "telemetry.csv").open()) if r["group"] == "overall"]
    assert len(rows) == 3 * 4 and all(r["strategy"] == name for r in rows)  # 3 pairs x 4 steps
    for r in rows:  # impartial: the combined direction makes the same angle with every task
        assert float(r["cos_combined_a"]) == pytest.approx(float(r["cos_combined_b"]), abs=1e-4)


# ---- CAGrad -------------------------------------------------------------------------------------
def _ternary(f, lo, hi, iters=80):
    for _ in range(iters):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if f(m1) <= f(m2):
            hi = m2
        else:
            lo = m1
    return (lo + hi) / 2


def textbook_cagrad(G: torch.Tensor, c: float = 0.4) -> torch.Tensor:
    """The paper's dual, min_w g_w . g0 + c |g0| |g_w| over the simplex, on full vectors, by nested
    ternary search (the objective is convex), then d = (g0 + c |g0| g_w / |g_w|) / (1 + c^2)."""
    g0 = G.mean(0)
    r = c * float(g0.norm())

    def F(w):
        gw = w @ G
        return float(gw @ g0) + r * float(gw.norm())

    T = G.shape[0]
    if T == 2:
        a = _ternary(lambda x: F(torch.tensor([x, 1 - x], dtype=torch.float64)), 0.0, 1.0)
        w = torch.tensor([a, 1 - a], dtype=torch.float64)
    else:
        inner = lambda x: _ternary(lambda y: F(torch.tensor([x, y, 1 - x - y], dtype=torch.float64)), 0.0, 1 - x, 60)
        a = _ternary(lambda x: F(torch.tensor([x, inner(x), 1 - x - inner(x)], dtype=torch.float64)), 0.0, 1.0, 60)
        b = inner(a)
        w = torch.tensor([a, b, 1 - a - b], dtype=torch.float64)
    gw = w @ G
    return (g0 + r * gw / gw.norm()) / (1 + c * c)


@settings(max_examples=15, deadline=None)  # the nested ternary search is slow: ~0.5 s per 3-task case
@given(st.integers(2, 3), seeds)
def test_cagrad_equals_the_textbook_dual_and_keeps_to_its_ball(T, seed):
    G = _G(T, seed)
    d, _ = CAGrad().combine(G)
    ref = textbook_cagrad(G)
    g0, c = G.mean(0), CAGrad.c
    assert torch.allclose(d, ref, atol=1e-6 * float(g0.norm()) * 10)
    # the ball: |d (unscaled) - g0| = c |g0|, and no point of the ball does better for the worst task
    du = d * (1 + c * c)
    assert abs(float((du - g0).norm()) - c * float(g0.norm())) <= 1e-9 * float(g0.norm())
    u = torch.randn(500, G.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(seed % 1000))
    probes = g0 + c * float(g0.norm()) * u / u.norm(dim=1, keepdim=True)
    assert float((G @ du).min()) >= float((probes @ G.T).min(1).values.max()) - 1e-9 * float(G.norm(dim=1).max() ** 2)


# ---- Nash-MTL -----------------------------------------------------------------------------------
def textbook_nash(gram: torch.Tensor, sweeps: int = 20000) -> torch.Tensor:
    """Exact coordinate minimisation of alpha^T K alpha / 2 - sum log alpha_i: each coordinate solves
    K_ii a^2 + c_i a - 1 = 0 in closed form."""
    K = gram.tolist()
    T = len(K)
    a = [1.0] * T
    for _ in range(sweeps):
        for i in range(T):
            ci = sum(K[i][j] * a[j] for j in range(T) if j != i)
            a[i] = (-ci + (ci * ci + 4 * K[i][i]) ** 0.5) / (2 * K[i][i])
    return torch.tensor(a, dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 4), seeds)
def test_nash_mtl_solves_the_bargaining_equations(T, seed):
    G = torch.randn(T, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    G = G * torch.linspace(0.3, 3.0, T, dtype=torch.float64).unsqueeze(1)
    gram = G @ G.T
    alpha = nash_mtl_weights(gram)
    assert (alpha > 0).all()
    assert torch.allclose(alpha * (gram @ alpha), torch.ones(T, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(alpha, textbook_nash(gram, sweeps=3000), rtol=1e-6)


# ---- GradVac ------------------------------------------------------------------------------------
def textbook_gradvac(Gs, seed, beta=0.01):
    """LibMTL's loop on full vectors (one layer group), with PCGrad's seeded order draws."""
    gen = torch.Generator().manual_seed(seed)
    out, rho = [], None
    for G in Gs:
        T = G.shape[0]
        rho = torch.zeros(T, T, dtype=torch.float64) if rho is None else rho
        pc = G.clone()
        for i in range(T):
            others = [j for j in range(T) if j != i]
            for r in torch.randperm(len(others), generator=gen).tolist():
                j = others[r]
                rho_ij = float(pc[i] @ G[j] / (pc[i].norm() * G[j].norm()))
                if rho_ij < rho[i, j]:
                    t = float(rho[i, j])
                    w = float(pc[i].norm()) * (t * (1 - rho_ij ** 2) ** 0.5 - rho_ij * (1 - t ** 2) ** 0.5) / (
                        float(G[j].norm()) * (1 - t ** 2) ** 0.5)
                    pc[i] = pc[i] + G[j] * w
                rho[i, j] = (1 - beta) * rho[i, j] + beta * rho_ij
        out.append(pc.sum(0))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 4), seeds)
def test_gradvac_equals_textbook_over_steps_and_resumes(T, seed):
    Gs = [_G(T, seed + k) for k in range(6)]
    ref = textbook_gradvac(Gs, seed)
    s = GradVac(seed=seed)
    for k, G in enumerate(Gs):
        if k == 3:  # resume mid-way from the saved state: same results
            state = s.state_dict()
            s = GradVac(seed=0)
            s.load_state_dict(state)
        d, _ = s.combine(G)
        assert torch.allclose(d, ref[k], rtol=1e-6, atol=1e-6 * float(ref[k].norm()))


def test_gradvac_raises_conflicting_cosines_to_the_target():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-0.6, 0.8], dtype=torch.float64)  # cos -0.6, below the target 0
    G = torch.stack([g1, g2])
    w, altered, targets = gradvac_weights(G @ G.T, torch.zeros(2, 2, dtype=torch.float64), [[1], [0]])
    # w = (1 + k2, k1 + 1) where g1' = g1 + k1 g2 and g2' = g2 + k2 g1
    g1p, g2p = g1 + (w[1] - 1) * g2, g2 + (w[0] - 1) * g1
    assert float(g1p @ g2) == pytest.approx(0, abs=1e-12) and float(g2p @ g1) == pytest.approx(0, abs=1e-12)
    assert altered[0, 1] and altered[1, 0]
    assert float(targets[0, 1]) == pytest.approx(0.01 * -0.6)


# ---- loss-based weights: DWA and uncertainty weighting -------------------------------------------
def _feed(strategy, losses_seq, G):
    out = []
    for L in losses_seq:
        strategy.combine(G, torch.tensor(L, dtype=torch.float64))
        out.append(strategy.last_weights.clone())
    return out


def test_dwa_follows_the_window_means_and_resumes():
    G = _G(3, 2)
    seq = [[1.0 + 0.01 * k, 2.0 - 0.005 * k, 0.5] for k in range(160)]
    ws = _feed(get_strategy("dwa"), seq, G)
    assert all(torch.equal(w, torch.ones(3, dtype=torch.float64)) for w in ws[:100])  # two windows first
    m1 = torch.tensor(seq[:50], dtype=torch.float64).mean(0)
    m2 = torch.tensor(seq[50:100], dtype=torch.float64).mean(0)
    expect = 3 * torch.softmax((m2 / m1) / 2.0, dim=0)  # Liu et al.: T softmax(r / tau)
    assert torch.allclose(ws[100], expect, atol=1e-12) and abs(float(ws[100].sum()) - 3) < 1e-12
    a = get_strategy("dwa")
    _feed(a, seq[:120], G)
    b = get_strategy("dwa")
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(_feed(a, seq[120:], G), _feed(b, seq[120:], G)))


def test_uncertainty_weights_and_the_log_variance_gradient():
    s = get_strategy("uncertainty")
    s.bind(["sst", "para", "sts"])
    with torch.no_grad():
        s.log_vars.copy_(torch.tensor([0.0, 1.0, -1.0]))
    G = _G(3, 4)
    losses = torch.tensor([1.5, 0.7, 3.0], dtype=torch.float64)
    d, _ = s.combine(G, losses)
    assert s.log_vars.grad is None  # weights only weight; backward sets the parameter's gradient
    sv = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64)
    assert torch.allclose(d, (0.5 * torch.exp(-sv)) @ G)
    # d/ds of L / (2 e^s) + s / 2, checked against autograd
    ref = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    (losses / (2 * ref.exp()) + ref / 2).sum().backward()
    (grad,) = s.parameter_grads(G, losses)
    assert torch.allclose(grad, ref.grad, atol=1e-12)
    t = get_strategy("uncertainty")
    t.bind(["sst", "para", "sts"])
    t.load_state_dict(s.state_dict())
    assert torch.equal(t.log_vars.data, s.log_vars.data)


# ---- GradNorm -----------------------------------------------------------------------------------
def textbook_gradnorm(Gs, Ls, lr, alpha=1.5):
    """Chen et al. (2018) on full vectors with autograd: G_i = |w_i g_i|, L_grad = sum |G_i - mean(G) r_i^a|
    with the target constant, r_i = L~_i / mean L~, L~_i = L_i / L_i(0); w renormalised to sum to T
    before each use, then one SGD step on w. Returns each step's combined gradient and w's gradient."""
    T = Gs[0].shape[0]
    w = torch.ones(T, dtype=torch.float64, requires_grad=True)
    out = []
    for G, L in zip(Gs, Ls):
        with torch.no_grad():
            w.copy_(T * w / w.sum())
        norms = (w[:, None] * G).norm(dim=1)
        ratio = L / Ls[0]
        target = (norms.mean() * (ratio / ratio.mean()) ** alpha).detach()
        w.grad = None
        (norms - target).abs().sum().backward()
        out.append((w.detach() @ G, w.grad.clone()))
        with torch.no_grad():
            w -= lr * w.grad
    return out


def _sgd_gradnorm(s, Gs, Ls, lr):
    out = []
    for G, L in zip(Gs, Ls):
        d, _ = s.combine(G, L)
        (grad,) = s.parameter_grads(G, L)
        out.append((d, grad))
        with torch.no_grad():
            s.param -= lr * grad
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 4), seeds)
def test_gradnorm_equals_textbook_over_steps_and_resumes(T, seed):
    g = torch.Generator().manual_seed(seed)
    Gs = [_G(T, seed + k) for k in range(6)]
    Ls = [torch.rand(T, generator=g, dtype=torch.float64) + 0.1 for _ in range(6)]
    lr = 0.1 / float(max(G.norm(dim=1).max() for G in Gs))
    ref = textbook_gradnorm(Gs, Ls, lr)
    s = get_strategy("gradnorm")
    got = _sgd_gradnorm(s, Gs[:3], Ls[:3], lr)
    resumed = get_strategy("gradnorm", seed=9)
    resumed.load_state_dict(s.state_dict())  # resume mid-way: the weights and the first losses
    got += _sgd_gradnorm(resumed, Gs[3:], Ls[3:], lr)
    for (d, grad), (d_ref, grad_ref) in zip(got, ref):
        # w is a float32 parameter, like every parameter the run's optimizer steps
        assert torch.allclose(d, d_ref, rtol=1e-5, atol=1e-6 * float(d_ref.norm()))
        assert torch.allclose(grad, grad_ref, rtol=1e-5, atol=1e-9)


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 4), seeds, st.sampled_from([1e-3, 1.0, 1e3]))
def test_gradnorm_balances_the_weighted_gradient_norms(T, seed, scale):
    """The defining property: with equal loss ratios (r_i = 1), learning w drives the weighted norms
    w_i |g_i| to one value (w_i proportional to 1 / |g_i|, here 1e4 apart); the weights sum to T."""
    G = _G(T, seed) * scale
    L = torch.ones(T, dtype=torch.float64)
    s = get_strategy("gradnorm")
    norms = G.norm(dim=1)
    for k in range(800):
        s.combine(G, L)
        (grad,) = s.parameter_grads(G, L)
        assert abs(float(s.last_weights.sum()) - T) < 1e-5  # w is a float32 parameter
        step = 0.1 * 0.99 ** max(k - 400, 0)  # relative steps (w spans 1e4), shrinking after 400
        with torch.no_grad():
            s.param -= (step * grad / norms * s.param.double()).float()
    s.combine(G, L)
    weighted = s.last_weights * norms
    assert float(weighted.max() / weighted.min()) < 1.02


def test_gradnorm_weights_follow_the_loss_ratios():
    """A task whose loss fell less (a larger L / L(0)) gets a larger target, so a larger weight."""
    G = torch.eye(2, dtype=torch.float64)  # equal norms
    s = get_strategy("gradnorm")
    L0 = torch.tensor([1.0, 1.0], dtype=torch.float64)
    s.combine(G, L0)
    s.parameter_grads(G, L0)  # records L(0)
    L = torch.tensor([0.9, 0.3], dtype=torch.float64)  # task 0 trains slower
    (grad,) = s.parameter_grads(G, L)
    assert grad[0] < 0 < grad[1]  # gradient descent raises w_0 and lowers w_1


# ---- UPGrad -------------------------------------------------------------------------------------
def textbook_upgrad(G: torch.Tensor) -> torch.Tensor:
    """Quinton & Rey (2024) on full vectors: the projection of each g_i onto the dual cone
    {x : G x >= 0}, then their mean. The projection lies on a face {x : g_j . x = 0, j in S}, and is the
    orthogonal projection of g_i onto that subspace, so it is the closest feasible one of those
    projections over every S (each by least squares on the P-dimensional vectors)."""
    from itertools import combinations

    T = G.shape[0]
    out = []
    for i in range(T):
        best = G[i] if bool((G @ G[i] >= 0).all()) else None
        for k in range(1, T + 1):
            for S in combinations(range(T), k):
                A = G[list(S)]  # (k, P)
                x = G[i] - A.T @ torch.linalg.lstsq(A @ A.T, A @ G[i]).solution
                if bool((G @ x >= -1e-12 * float(G[i] @ G[i])).all()) and (
                        best is None or float((x - G[i]).norm()) < float((best - G[i]).norm())):
                    best = x
        out.append(best)
    return torch.stack(out).mean(0)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 4), seeds)
def test_upgrad_equals_the_textbook_projections(T, seed):
    G = torch.randn(T, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    d, _ = get_strategy("upgrad").combine(G)
    ref = textbook_upgrad(G)
    assert torch.allclose(d, ref, atol=1e-6 * float(G.norm(dim=1).max()))


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 5), seeds)
def test_upgrad_conflicts_with_no_task_and_is_the_mean_without_conflict(T, seed):
    """d . g_j >= 0 for every task j; without a conflicting pair every g_i is in the cone already, so d
    is the mean gradient."""
    G = _G(T, seed)
    d, _ = get_strategy("upgrad").combine(G)
    assert (G @ d >= -1e-9 * float(G.norm(dim=1).max()) ** 2).all()
    H = G.abs()  # nonnegative entries: no pair conflicts
    assert torch.allclose(get_strategy("upgrad").combine(H)[0], H.mean(0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["gradnorm", "upgrad"])
def test_new_strategies_train_a_tiny_run(tmp_path, data_root, name):
    """A real multi-task run on a tiny random BERT: complete, with each task's weight in the telemetry
    (GradNorm's sum to T = 3)."""
    import csv
    import json

    from minbert_core.train import smoke_config, train

    run = train(smoke_config(strategy=name, epochs=1, batch_size=8, runs_dir=str(tmp_path), data_dir=str(data_root)))
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
    rows = [r for r in csv.DictReader((run / "telemetry.csv").open()) if r["group"] == "overall"]
    assert rows and all(r["strategy"] == name for r in rows)
    if name == "gradnorm":
        first = {r["step"]: r for r in rows if r["task_a"] == "sst" and r["task_b"] == "para"}
        sts = {r["step"]: float(r["weight_b"]) for r in rows if r["task_a"] == "para" and r["task_b"] == "sts"}
        for step, r in first.items():
            assert float(r["weight_a"]) + float(r["weight_b"]) + sts[step] == pytest.approx(3.0, abs=1e-5)


def test_explorer_draws_weights_where_the_registry_says_the_strategy_reweights(monkeypatch):
    """The explorer asks the registry (`reweights`), not a list of names of its own: a strategy that
    does not reweight gets no weighted arrow, whatever its name."""
    from minbert_core import explorer, strategies

    row = {"weight_a": 0.3, "weight_b": 0.7}
    for name, cls in STRATEGIES.items():
        assert (explorer._weights({**row, "strategy": name}) is not None) == cls.reweights, name
    assert {n for n, c in STRATEGIES.items() if not c.reweights} == {"sum", "pcgrad"}
    assert explorer._weights({**row, "strategy": "single"}) is None  # a training rule, not a strategy

    class Surgery(strategies.PCGrad):
        name = "surgery"

    monkeypatch.setitem(strategies.STRATEGIES, "surgery", Surgery)
    assert explorer._weights({**row, "strategy": "surgery"}) is None


def test_gradvac_with_a_target_cosine_of_one_skips_the_pair_instead_of_dividing_by_zero():
    """After long runs of identical gradients a target cosine can reach exactly 1: no finite step exists."""
    from minbert_core.gram_methods import gradvac_weights

    G = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)  # cosine 0.6 < target 1
    w, altered, _ = gradvac_weights(G @ G.T, torch.ones(2, 2, dtype=torch.float64), [[1], [0]])
    assert torch.isfinite(w).all() and not altered.any()


def test_a_strategys_own_weights_are_not_weight_decayed(tiny_checkpoint):
    """Uncertainty weighting's log-variances (and GradNorm's w) sit in an AdamW group without decay."""
    from minbert_core.build import build_optimizer
    from minbert_core.multitask import MultitaskBert, load_encoder
    from minbert_core.train_config import TrainConfig

    model = MultitaskBert(load_encoder(str(tiny_checkpoint)), ("sst", "para", "sts"))
    extra = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(TrainConfig(weight_decay=0.1), model, extra)
    (group,) = [g for g in opt.param_groups if any(p is extra[0] for p in g["params"])]
    assert group["weight_decay"] == 0.0 and len(group["params"]) == 1
    assert all(g["weight_decay"] == 0.1 for g in opt.param_groups if g is not group)
