"""Checks that need a CUDA device (skipped elsewhere); scripts/gpu_check.sh runs them with `-m gpu`."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_model_on_cuda_matches_cpu():
    from minbert_core.multitask import load_encoder

    m = load_encoder("random:mini", seed=0).eval()
    ids = torch.randint(0, 30522, (4, 33), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    with torch.no_grad():
        cpu = m(ids, mask).last_hidden_state
        gpu = m.cuda()(ids.cuda(), mask.cuda()).last_hidden_state.cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)


def test_adamw_foreach_on_cuda_matches_torch():
    from minbert_core.optim import AdamW

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).cuda()
    b = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).cuda()
    b.load_state_dict(a.state_dict())
    oa = AdamW(a.parameters(), lr=3e-3, weight_decay=0.05)
    ob = torch.optim.AdamW(b.parameters(), lr=3e-3, weight_decay=0.05, foreach=True)
    g = torch.Generator().manual_seed(1)
    for _ in range(100):
        x = torch.randn(8, 16, generator=g).cuda()
        for net, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) <= 1e-6


def test_strategies_combine_the_same_on_cuda():
    from minbert_core.strategies import STRATEGIES, get_strategy

    G = torch.randn(3, 1000, generator=torch.Generator().manual_seed(0))
    for name in STRATEGIES:
        cpu, _ = get_strategy(name, seed=1).combine(G)
        gpu, _ = get_strategy(name, seed=1).combine(G.cuda())
        assert torch.allclose(cpu, gpu.cpu(), rtol=1e-4, atol=1e-5), name


def test_bf16_multitask_run_on_cuda(tmp_path, data_root):
    from minbert_core.train import TrainConfig, train

    run = train(TrainConfig(checkpoint="random:mini", device="cuda", precision="bf16", epochs=1, train_limit=64,
                            eval_limit=64, batch_size=16, max_length=64, telemetry_every=2,
                            runs_dir=str(tmp_path), data_dir=str(data_root)))
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "complete"
    assert json.loads((run / "config.json").read_text())["environment"]["device"].startswith("cuda")
