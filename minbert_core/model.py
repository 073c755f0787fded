"""minBERT: a BERT encoder in reading order, parameter names identical to Hugging Face's BertModel.

embeddings -> self-attention -> attention output -> feed-forward -> layer -> encoder -> pooler -> model
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_state_dict, normalize_keys, resolve_checkpoint
from .config import BertConfig, override


class _MaskedScale(torch.autograd.Function):
    """y = x * keep / (1 - p) with keep ~ Bernoulli(1 - p), drawn as `rand >= p`; saves only the bool mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        # P(keep) = 1 - p, from the global generator like F.dropout; drawn in fp32 at least, since a
        # bf16/fp16 uniform is too coarse to hit p exactly
        u = torch.rand(x.shape, device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
        keep = u >= p
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(keep)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return g.mul(keep).mul_(ctx.scale), None


class Dropout(nn.Dropout):
    """nn.Dropout with a faster CPU path.

    On the CPU, F.dropout draws its mask with `bernoulli_`, which is much slower than `rand`; dropout
    was 14% of a MiniLM training step (BENCHMARKS.md, sections 1 and 5, measure both). Same
    distribution, same generator; other devices keep F.dropout's fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p >= 1.0 or self.inplace:
            return F.dropout(x, self.p, True, self.inplace)
        return _MaskedScale.apply(x, self.p)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.max_positions = cfg.max_position_embeddings

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings {self.max_positions}")
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(pos)  # (B, T, C) + (T, C) broadcasts over the batch
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention (projections only; output proj is separate)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.n_head = cfg.num_attention_heads
        self.head_size = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = Dropout(cfg.attention_probs_dropout_prob)
        self.impl = cfg.attn_impl

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, T, C); mask: additive (B, 1, 1, T), 0 where attended, large negative at padding (or None)."""
        B, T, C = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        p = self.dropout.p if self.training else 0.0
        # On the CPU, SDPA with dropout falls back to its math path (the same matmul-softmax-matmul as
        # reference_attention) and draws the mask with bernoulli_; the explicit path uses our cheaper Dropout.
        if self.impl == "sdpa" and not (p > 0.0 and x.device.type == "cpu"):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)
        else:
            y = self.reference_attention(q, k, v, mask)
        return y.transpose(1, 2).reshape(B, T, C)  # (B, T, nh*hs)

    def reference_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(QK^T / sqrt(d) + mask) V, written out."""
        scores = (q / math.sqrt(self.head_size)) @ k.transpose(-2, -1)  # (B, nh, T, T); scaling q is cheaper
        if mask is not None:
            scores = scores + mask
        probs = self.dropout(torch.softmax(scores, dim=-1))  # (B, nh, T, T)
        return probs @ v  # (B, nh, T, hs)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual, LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    """Self-attention followed by its output sub-layer (HF nests them as .self and .output)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


_ACT = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}


class BertIntermediate(nn.Module):
    """First feed-forward projection and activation."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = _ACT[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, intermediate)


class BertOutput(BertSelfOutput):
    """Second feed-forward projection back to hidden size, dropout, residual, LayerNorm."""

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)


class BertLayer(nn.Module):
    """One transformer layer: attention block then feed-forward block (post-LN, as in BERT)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    """A stack of transformer layers."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector BERT was pretrained to produce."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(h[:, 0]))  # (B, C)


@dataclass
class BertOutputs:
    """What the encoder returns: every token's state and the pooled [CLS] vector."""

    last_hidden_state: torch.Tensor  # (B, T, C)
    pooler_output: torch.Tensor  # (B, C)


class BertModel(nn.Module):
    """The BERT encoder: embeddings, transformer layers, pooler."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # BERT's init: N(0, 0.02) for weights, zeros for biases, identity LayerNorm.
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> BertOutputs:
        """input_ids, attention_mask (1 = real token), token_type_ids: (B, T) integer tensors."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        mask = None
        # no padding: no mask, and SDPA may pick a faster kernel; under torch.compile always the mask, since
        # the data-dependent test would break the graph in two (and CUDA graphs with it)
        if torch.compiler.is_compiling() or not bool(attention_mask.all()):
            # Additive mask broadcast over heads and query positions: (B, 1, 1, T).
            neg = torch.finfo(x.dtype).min
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * neg
        h = self.encoder(x, mask)
        return BertOutputs(last_hidden_state=h, pooler_output=self.pooler(h))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **config_overrides) -> "BertModel":
        """Load 'minilm-l6', a local checkpoint folder, or a hub name such as 'bert-base-uncased'.

        config_overrides (e.g. attn_impl="reference", hidden_dropout_prob=0.3) replace config fields.
        Missing, unexpected or mis-shaped keys raise ValueError listing them.
        """
        folder = resolve_checkpoint(name_or_path)
        cfg = override(BertConfig.from_json_file(folder / "config.json"), config_overrides)
        model = cls(cfg)
        sd, dropped = normalize_keys(load_state_dict(folder))
        if dropped:  # pretraining heads (cls.*) and position_ids buffers: not encoder weights
            logging.getLogger("minbert.model").debug("%s: not loaded (%d keys): %s", folder, len(dropped),
                                                     ", ".join(dropped[:10]))
        own = model.state_dict()
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        bad_shape = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                           for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
        if missing or unexpected or bad_shape:
            parts = [f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
                     for label, keys in (("missing", missing), ("unexpected", unexpected),
                                         ("mis-shaped", bad_shape)) if keys]
            raise ValueError(f"cannot load {folder} into BertModel: " + "; ".join(parts))
        model.load_state_dict(sd, strict=True)
        return model.eval()

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write config.json + model.safetensors, a folder from_pretrained (ours or HF's) can read."""
        import json

        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config.to_hf_dict(), indent=2))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))
        return folder
