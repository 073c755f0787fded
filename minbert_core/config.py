"""Frozen, typed configs and the one way to override them."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def override(cfg: T, overrides: Mapping[str, Any] | None = None, **kw: Any) -> T:
    """Return a copy of a frozen dataclass with fields replaced; an unknown key is an error."""
    changes = {**(overrides or {}), **kw}
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(
            f"unknown {type(cfg).__name__} key(s): {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


# What a BERT-family config.json may hold; above these a typo would reach the allocator as a raw error
# that names neither file nor key (bert-large: 1024 wide, 24 layers; the largest known vocabularies ~250k)
_BERT_INTS = {"vocab_size": (1, 2**22), "hidden_size": (1, 2**15), "num_hidden_layers": (1, 256),
              "num_attention_heads": (1, 2**10), "intermediate_size": (1, 2**17),
              "max_position_embeddings": (1, 2**17), "type_vocab_size": (1, 2**10), "pad_token_id": (0, 2**22)}
MAX_ENCODER_PARAMETERS = 10**10  # 40 GB of float32 weights


def _check_bert_fields(cfg: "BertConfig") -> None:
    """Types, ranges and sizes of every BertConfig number; a ValueError naming the key."""
    for key, (lo, hi) in _BERT_INTS.items():
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{key} must be a whole number in {lo}..{hi}; got {v!r} ({type(v).__name__})")
    for key, lo_open in (("hidden_dropout_prob", False), ("attention_probs_dropout_prob", False),
                         ("layer_norm_eps", True)):
        v = getattr(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 1 if lo_open else 0 <= v < 1):
            raise ValueError(f"{key} must be a number in {'(0' if lo_open else '[0'}, 1); got {v!r}")
    if cfg.pad_token_id >= cfg.vocab_size:
        raise ValueError(f"pad_token_id {cfg.pad_token_id} is outside the vocabulary (vocab_size {cfg.vocab_size})")
    h, n = cfg.hidden_size, (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * cfg.hidden_size
    n += cfg.num_hidden_layers * (4 * h * h + 2 * h * cfg.intermediate_size)
    if n > MAX_ENCODER_PARAMETERS:
        raise ValueError(f"these sizes make an encoder of {n:.3g} parameters, over {MAX_ENCODER_PARAMETERS:.0e}: "
                         "check hidden_size, intermediate_size, num_hidden_layers and vocab_size")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape and regularisation of a BERT encoder (field names follow Hugging Face's config.json)."""

    vocab_size: int = 30522  # WordPiece vocabulary size of the uncased BERT vocab
    hidden_size: int = 768  # width of every token state
    num_hidden_layers: int = 12  # transformer layers in the encoder
    num_attention_heads: int = 12  # heads per attention layer; must divide hidden_size
    intermediate_size: int = 3072  # width of the feed-forward layer
    hidden_act: str = "gelu"  # feed-forward activation: "gelu" (erf), "gelu_new" (tanh) or "relu"
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and sub-layer outputs
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence the position table covers
    type_vocab_size: int = 2  # token types (sentence A / sentence B)
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon used by the original BERT
    pad_token_id: int = 0  # id of [PAD]
    attn_impl: str = "sdpa"  # "sdpa" (fast, fused kernel) or "reference" (explicit softmax(QK^T)V)

    def __post_init__(self) -> None:
        _check_bert_fields(self)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.attn_impl not in ("sdpa", "reference"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'reference', got {self.attn_impl!r}")
        if self.hidden_act not in ("gelu", "gelu_new", "relu"):
            raise ValueError(f"unsupported hidden_act {self.hidden_act!r} (gelu, gelu_new, relu)")

    @classmethod
    def from_hf_dict(cls, d: Mapping[str, Any], source: str = "config") -> "BertConfig":
        """Build from a Hugging Face config.json dict; keys BERT does not use are ignored. A missing or
        invalid key is a ValueError naming `source` and the key."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{source}: a config must be a JSON object; got {type(d).__name__}")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"{source}: position_embedding_type {d['position_embedding_type']!r} is not supported "
                "(only 'absolute', as in BERT)"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"attn_impl"}
        missing = sorted(n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                                     "num_attention_heads", "intermediate_size") if n not in d)
        if missing:
            raise ValueError(f"{source}: missing BERT config key(s): {', '.join(missing)}")
        kw = {k: d[k] for k in names if k in d and d[k] is not None}
        try:
            return cls(**kw)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        """Read a Hugging Face config.json."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        return cls.from_hf_dict(d, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """The config as a Hugging Face config.json dict (model_type bert)."""
        d = dataclasses.asdict(self)
        d.pop("attn_impl")
        d.update(model_type="bert", architectures=["BertModel"], position_embedding_type="absolute")
        return d
