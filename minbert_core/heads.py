"""Task heads: a linear layer by default, optional task-specific hidden layers, pair combiners."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tasks import get_task


class MLPHead(nn.Module):
    """dropout -> [Linear -> GELU -> dropout] x depth -> Linear: a task's own layers."""

    def __init__(self, in_dim: int, out_dim: int, depth: int = 0, width: int = 256, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.GELU(), nn.Dropout(dropout)]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PairDiffHead(nn.Module):
    """Sentence-BERT's classifier over separately encoded u, v: MLP([u, v, |u - v|])."""

    def __init__(self, dim: int, out_dim: int, **mlp):
        super().__init__()
        self.dim = dim
        self.mlp = MLPHead(3 * dim, out_dim, **mlp)

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        u, v = uv[:, : self.dim], uv[:, self.dim:]  # features arrive as cat(u, v): (B, 2C)
        return self.mlp(torch.cat([u, v, (u - v).abs()], dim=-1))


class CosineHead(nn.Module):
    """Sentence-BERT's similarity: cosine of u and v mapped from [-1, 1] onto [0, 5]."""

    def __init__(self, dim: int, out_dim: int = 1, **_unused):
        super().__init__()
        self.dim = dim

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(uv[:, : self.dim], uv[:, self.dim:], dim=-1)
        return (2.5 * (cos + 1.0)).unsqueeze(-1)  # (B, 1)


BI_HEADS: dict[str, type[nn.Module]] = {"pair_diff": PairDiffHead, "cosine": CosineHead}


def build_head(task: str, pair_encoding: str, dim: int, out_dim: int, depth: int, width: int,
               dropout: float) -> nn.Module:
    """The head for a task: pairs encoded separately ('bi') get the combiner their TaskSpec names."""
    mlp = dict(depth=depth, width=width, dropout=dropout)
    kind = get_task(task).bi_head
    if pair_encoding == "bi" and kind:
        return BI_HEADS[kind](dim, out_dim, **mlp)
    return MLPHead(dim, out_dim, **mlp)
