"""Our AdamW against torch.optim.AdamW."""
from __future__ import annotations

import copy

import pytest
import torch

from minbert_core.optim import AdamW
from minbert_core.sanity import optimizer_check


def test_matches_torch_adamw_over_1000_steps_with_weight_decay():
    r = optimizer_check(steps=1000, weight_decay=0.05, lr=3e-3)
    assert r["max_param_diff"] <= 1e-6, r


def _net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _steps(net, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 4, generator=g)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()


def test_state_dict_round_trip_resumes_identically():
    a = _net()
    oa = AdamW(a.parameters(), lr=1e-2, weight_decay=0.1)
    _steps(a, oa, 50, seed=0)
    b = copy.deepcopy(a)
    ob = AdamW(b.parameters(), lr=1.0)  # wrong hyperparameters: load_state_dict must restore them
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    assert ob.param_groups[0]["lr"] == 1e-2
    _steps(a, oa, 50, seed=1)
    _steps(b, ob, 50, seed=1)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_state_dict_is_interchangeable_with_torch():
    a = _net()
    oa = AdamW(a.parameters(), lr=1e-2, weight_decay=0.1)
    _steps(a, oa, 20, seed=0)
    b = copy.deepcopy(a)
    ob = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    ob.load_state_dict(copy.deepcopy(oa.state_dict()))
    _steps(a, oa, 20, seed=3)
    _steps(b, ob, 20, seed=3)
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) <= 1e-6


def test_weight_decay_is_decoupled():
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(3)  # no gradient signal: only the decay acts
    opt.step()
    assert torch.allclose(p, torch.full((3,), 1 - 0.1 * 0.5))


@pytest.mark.parametrize("kw", [dict(lr=-1), dict(betas=(1.0, 0.9)), dict(eps=-1), dict(weight_decay=-0.1)])
def test_invalid_hyperparameters_are_rejected(kw):
    with pytest.raises(ValueError):
        AdamW([torch.nn.Parameter(torch.ones(1))], **kw)


def _run_with_gaps(opt_factory, steps=60):
    """Training where one layer sits out every third step (grad None), so step counts differ."""
    net = _net()
    opt = opt_factory(net)
    g = torch.Generator().manual_seed(4)
    for i in range(steps):
        x = torch.randn(16, 4, generator=g)
        opt.zero_grad(set_to_none=True)
        out = net[0](x).tanh()
        out = net[2](out) if i % 3 else out[:, :2]  # the last layer sits out every third step
        out.pow(2).mean().backward()
        opt.step()
    return net, opt


def test_foreach_path_equals_the_loop_and_torch_foreach():
    kw = dict(lr=3e-3, weight_decay=0.05)
    ours_fe, opt = _run_with_gaps(lambda n: AdamW(n.parameters(), foreach=True, **kw))
    ours_loop, _ = _run_with_gaps(lambda n: AdamW(n.parameters(), foreach=False, **kw))
    ref, _ = _run_with_gaps(lambda n: torch.optim.AdamW(n.parameters(), foreach=True, **kw))
    # the sitting-out layer's bias corrections follow its own step count (40, not 60)
    assert opt.state[ours_fe[2].weight]["step"].item() == 40 and opt.state[ours_fe[0].weight]["step"].item() == 60
    for a, b, c in zip(ours_fe.parameters(), ours_loop.parameters(), ref.parameters()):
        assert (a - b).abs().max().item() <= 1e-7
        assert (a - c).abs().max().item() <= 1e-6
