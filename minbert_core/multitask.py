"""The multi-task model: one shared encoder (optionally a bi-LSTM on top), one head per task."""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

from .config import BertConfig
from .heads import build_head
from .model import BertModel
from .tasks import get_task, head_owners

# Random-init encoders for fast tests and the smoke profile; they use the uncased BERT vocab.
RANDOM_SHAPES = {
    "tiny": BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "mini": BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "base": BertConfig(),  # bert-base's shape without its weights: for speed checks where the hub is out of reach
}
RANDOM_TOKENIZER = "minilm-l6"


def load_encoder(name: str, seed: int = 0, **overrides) -> BertModel:
    """A pretrained encoder by name/folder, or 'random:<shape>' for a seeded random-init one."""
    if name.startswith("random:"):
        shape = name.split(":", 1)[1]
        if shape not in RANDOM_SHAPES:
            raise ValueError(f"unknown random encoder shape {shape!r}; known: {', '.join(RANDOM_SHAPES)}")
        from .config import override

        torch.manual_seed(seed)
        return BertModel(override(RANDOM_SHAPES[shape], overrides))
    return BertModel.from_pretrained(name, **overrides)


def tokenizer_name(checkpoint: str) -> str:
    """Which checkpoint's vocabulary a model uses (random encoders borrow MiniLM's uncased vocab)."""
    return RANDOM_TOKENIZER if checkpoint.startswith("random:") else checkpoint


def masked_mean(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the real (unmasked) tokens: (B, T, C) -> (B, C)."""
    m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class MultitaskBert(nn.Module):
    """encoder -> [bi-LSTM] -> pooled sentence vector -> per-task head.

    Shared parameters (what PCGrad operates on): the encoder and the bi-LSTM. Heads are per task, except
    that a task whose TaskSpec names `head_of` uses that task's head module (tied weights: one module under
    both keys of `heads`, counted once by parameters(), saved under both keys by state_dict()); that head
    gets the sum of both tasks' gradients, as every head gets its own tasks' without any combining.
    """

    def __init__(self, encoder: BertModel, tasks: Sequence[str], pair_encoding: str = "cross",
                 pooling: str = "cls", lstm: bool = False, task_layers: int = 0, task_hidden: int = 256,
                 head_dropout: float = 0.3):
        super().__init__()
        if pair_encoding not in ("cross", "bi"):
            raise ValueError(f"pair_encoding must be 'cross' or 'bi', got {pair_encoding!r}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.encoder = encoder
        self.pair_encoding, self.pooling = pair_encoding, pooling
        C = encoder.config.hidden_size
        # Bidirectional, C/2 per direction, so the sentence vector keeps width C.
        self.lstm = nn.LSTM(C, C // 2, batch_first=True, bidirectional=True) if lstm else None
        self.dim = C // 2 * 2 if lstm else C
        self.heads = nn.ModuleDict()
        owners = head_owners(tasks)  # a tied task without its owner among `tasks` is a ValueError here
        for t in (t for t in tasks if owners[t] == t):  # own heads first, in task order (the same init RNG use)
            self.heads[t] = build_head(t, pair_encoding, self.dim, get_task(t).out_dim, task_layers,
                                       task_hidden, head_dropout)
        for t in (t for t in tasks if owners[t] != t):  # tied: the owner's module itself under this key too
            self.heads[t] = self.heads[owners[t]]

    @staticmethod
    def layer_group(name: str) -> str:
        """Telemetry group of a shared parameter: embeddings, layer_<i>, pooler or lstm."""
        m = re.match(r"encoder\.encoder\.layer\.(\d+)\.", name)
        if m:
            return f"layer_{m.group(1)}"
        for prefix, group in (("encoder.embeddings.", "embeddings"), ("encoder.pooler.", "pooler"), ("lstm.", "lstm")):
            if name.startswith(prefix):
                return group
        return "other"

    def shared_groups(self) -> list[tuple[str, nn.Parameter]]:
        """(telemetry group, parameter) of every shared parameter: what the gradient strategies take."""
        return [(self.layer_group(n), p) for n, p in self.shared_named_parameters()]

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters every task's loss flows through (encoder, bi-LSTM), in a stable order."""
        out = [(f"encoder.{n}", p) for n, p in self.encoder.named_parameters() if p.requires_grad]
        if self.lstm is not None:
            out += [(f"lstm.{n}", p) for n, p in self.lstm.named_parameters()]
        return out

    def sentence_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        token_type_ids: torch.Tensor) -> torch.Tensor:
        """One vector per sequence: (B, dim)."""
        out = self.encoder(input_ids, attention_mask, token_type_ids)
        h = out.last_hidden_state  # (B, T, C)
        if self.lstm is not None:
            lengths = attention_mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            seq, (h_n, _) = self.lstm(packed)
            if self.pooling == "cls":
                return torch.cat([h_n[0], h_n[1]], dim=-1)  # final forward and backward states: (B, C)
            h, _ = nn.utils.rnn.pad_packed_sequence(seq, batch_first=True, total_length=h.shape[1])
        elif self.pooling == "cls":
            return out.pooler_output
        return masked_mean(h, attention_mask)

    def features(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the task's head reads: a sentence vector, or cat(u, v) for separately encoded pairs."""
        if get_task(task).pair and self.pair_encoding == "bi":
            u = self.sentence_vector(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            v = self.sentence_vector(batch["b_input_ids"], batch["b_attention_mask"], batch["b_token_type_ids"])
            return torch.cat([u, v], dim=-1)  # (B, 2*dim)
        return self.sentence_vector(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Head output for a batch of `task`: logits or a score."""
        return self.heads[task](self.features(task, batch))
