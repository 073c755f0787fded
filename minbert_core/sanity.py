"""Correctness checks shown to users: model parity with transformers, AdamW against torch's."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from .config import BertConfig
from .model import BertModel
from .optim import AdamW

# Random-init shapes checked besides the packaged checkpoint (the last is bert-base).
PARITY_SHAPES = {
    "tiny-2x64": BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "small-4x256": BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                              intermediate_size=1024),
    "bert-base-12x768": BertConfig(),
}


def mixed_batch(vocab_size: int, batch: int = 4, max_len: int = 24, seed: int = 0):
    """A padded batch of mixed lengths with both token types: (ids, attention_mask, token_type_ids)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab_size, (batch, max_len), generator=g)
    lengths = torch.linspace(max_len, max(3, max_len // 4), batch).long()
    am = (torch.arange(max_len)[None] < lengths[:, None]).long()
    tt = ((torch.arange(max_len)[None] >= (lengths[:, None] // 2)) & am.bool()).long()
    ids = ids * am  # [PAD] = 0 at padded positions
    ids[:, 0] = 101  # [CLS]
    return ids, am, tt


def parity(folder: str | Path, attn_impl: str = "sdpa", batch: int = 4, max_len: int = 24) -> dict:
    """Max |ours - transformers.BertModel| on last_hidden_state (real tokens) and pooler_output."""
    import transformers  # lazy: only the parity check needs the reference implementation

    transformers.utils.logging.disable_progress_bar()

    from .checkpoints import resolve_checkpoint

    folder = resolve_checkpoint(folder)
    ours = BertModel.from_pretrained(folder, attn_impl=attn_impl).eval()
    ref = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    ids, am, tt = mixed_batch(ours.config.vocab_size, batch, max_len)
    with torch.no_grad():
        a = ours(ids, am, tt)
        b = ref(input_ids=ids, attention_mask=am, token_type_ids=tt)
    real = am.bool()
    return {
        "hidden_max_abs_diff": (a.last_hidden_state - b.last_hidden_state)[real].abs().max().item(),
        "pooler_max_abs_diff": (a.pooler_output - b.pooler_output).abs().max().item(),
    }


def random_checkpoint(cfg: BertConfig, folder: str | Path, seed: int = 0) -> Path:
    """Save a random-init model of shape `cfg` as a checkpoint folder (LayerNorms perturbed too)."""
    torch.manual_seed(seed)
    m = BertModel(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)  # make every parameter matter to the comparison
    return m.save_pretrained(folder)


def optimizer_check(steps: int = 1000, weight_decay: float = 0.01, lr: float = 1e-3, seed: int = 0) -> dict:
    """Train two copies of a small model, one with our AdamW and one with torch's; max param diff."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    oa = AdamW(a.parameters(), lr=lr, weight_decay=weight_decay)
    ob = torch.optim.AdamW(b.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(steps):
        x, y = torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            o.step()
        worst = max(worst, max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())))
    return {"steps": steps, "max_param_diff": worst}


def sanity_table(checkpoint: str = "minilm-l6", shapes: dict[str, BertConfig] | None = None,
                 opt_steps: int = 1000) -> list[dict]:
    """Every check as rows: what was compared, the worst difference, the tolerance, pass/fail."""
    rows = []
    shapes = PARITY_SHAPES if shapes is None else shapes
    with tempfile.TemporaryDirectory() as tmp:
        targets = [(checkpoint, checkpoint)] + [
            (name, random_checkpoint(cfg, Path(tmp) / name)) for name, cfg in shapes.items()]
        for label, folder in targets:
            for impl in ("sdpa", "reference"):
                r = parity(folder, attn_impl=impl)
                worst = max(r.values())
                rows.append({"check": f"parity {label} ({impl})", "max_abs_diff": worst,
                             "tolerance": 1e-5, "ok": worst <= 1e-5})
    r = optimizer_check(opt_steps)
    rows.append({"check": f"AdamW vs torch.optim.AdamW, {r['steps']} steps", "max_abs_diff": r["max_param_diff"],
                 "tolerance": 1e-6, "ok": r["max_param_diff"] <= 1e-6})
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table of check rows."""
    w = max(len(r["check"]) for r in rows)
    lines = [f"{'check':<{w}}  {'max |diff|':>11}  {'tol':>7}  ok", "-" * (w + 28)]
    lines += [f"{r['check']:<{w}}  {r['max_abs_diff']:>11.3e}  {r['tolerance']:>7.0e}  {'yes' if r['ok'] else 'NO'}"
              for r in rows]
    return "\n".join(lines)
