"""The Gram-based strategies beyond PCGrad: each against a textbook form on full vectors, its defining
property, and the shared backward contract."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_core.gram_methods import aligned_mtl_weights, imtl_g_weights, min_norm_weights
from minbert_core.strategies import STRATEGIES, AlignedMTL, IMTLG, MGDA, get_strategy


def _G(T: int, seed: int, P: int = 40) -> torch.Tensor:
    """Random task gradients with varied norms (0.01 to 100) and some conflicting pairs."""
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(T, P, generator=g, dtype=torch.float64)
    return G * torch.logspace(-2, 2, T, dtype=torch.float64)[torch.randperm(T, generator=g)].unsqueeze(1)


seeds = st.integers(0, 2**31 - 1)


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
    # the aligned task gradients B G are orthogonal with equal norms (the smallest singular value)
    lam, V = torch.linalg.eigh(G @ G.T)
    B = lam.min().sqrt() * (V * lam.rsqrt()) @ V.T
    assert torch.allclose(B @ G @ G.T @ B, lam.min() * torch.eye(T, dtype=torch.float64), atol=1e-8 * float(lam.max()))


def test_aligned_mtl_drops_dependent_directions():
    g = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    h = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64)
    w = aligned_mtl_weights(torch.stack([g, h, g]) @ torch.stack([g, h, g]).T)  # rank 2 of 3
    assert torch.isfinite(w).all()


# ---- all strategies: the backward contract, telemetry and resume ---------------------------------
@pytest.mark.parametrize("name", ["mgda-ub", "imtl-g", "aligned-mtl"])
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
    assert list(STRATEGIES) == ["single", "sum", "pcgrad", "mgda-ub", "imtl-g", "aligned-mtl"]
    G = _G(3, 1)
    for name in ("mgda-ub", "imtl-g", "aligned-mtl"):
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
    assert get_strategy("sum").weights(G @ G.T)[0].tolist() == [1.0] * 4


@pytest.mark.parametrize("name", ["mgda-ub", "imtl-g", "aligned-mtl"])
def test_each_strategy_trains_a_run_with_its_telemetry(tmp_path, data_root, name):
    import csv
    import json

    from minbert_core.train import TrainConfig, train

    run = train(TrainConfig(strategy=name, checkpoint="random:tiny", epochs=1, train_limit=32, eval_limit=16,
                            batch_size=8, max_length=32, telemetry_every=1, runs_dir=str(tmp_path),
                            data_dir=str(data_root)))
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
    rows = [r for r in csv.DictReader((run / "telemetry.csv").open()) if r["group"] == "overall"]
    assert len(rows) == 3 * 4 and all(r["strategy"] == name for r in rows)  # 3 pairs x 4 steps
    if name == "imtl-g":  # impartial: the combined direction makes the same angle with every task
        for r in rows:
            assert float(r["cos_combined_a"]) == pytest.approx(float(r["cos_combined_b"]), abs=1e-4)
