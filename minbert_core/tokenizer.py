"""The checkpoint's own WordPiece tokenizer, for single sentences and sentence pairs."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .checkpoints import resolve_checkpoint


@lru_cache(maxsize=8)
def load_tokenizer(name_or_path: str | Path):
    """A transformers BertTokenizerFast read from the checkpoint folder (no download for local ones)."""
    from transformers import BertTokenizerFast  # lazy: keeps `import minbert_core` light

    folder = resolve_checkpoint(name_or_path)
    if not (folder / "vocab.txt").is_file() and not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}: no vocab.txt or tokenizer.json for the tokenizer")
    return BertTokenizerFast.from_pretrained(str(folder))


def encode(tokenizer, first: Sequence[str], second: Sequence[str] | None = None,
           max_length: int = 128) -> list[dict[str, list[int]]]:
    """Tokenize sentences (or pairs: [CLS] a [SEP] b [SEP]) without padding; truncate to max_length.

    Returns one dict per example with input_ids and token_type_ids; padding happens per batch.
    A max_length with no room for a token beside [CLS] and [SEP]s is a ValueError: the tokenizer would
    not truncate at all, and sequences would outgrow the encoder's positions.
    """
    if second is not None and len(second) != len(first):
        raise ValueError(f"pair lengths differ: {len(first)} first vs {len(second)} second sentences")
    if max_length <= min_length(second is not None):
        raise ValueError(f"max_length {max_length} leaves no room for a token beside [CLS] and [SEP]: "
                         f"use at least {min_length(second is not None) + 1}")
    enc = tokenizer(list(first), list(second) if second is not None else None, truncation=True,
                    max_length=max_length, padding=False, return_attention_mask=False,
                    return_token_type_ids=True)
    return [{"input_ids": i, "token_type_ids": t} for i, t in zip(enc["input_ids"], enc["token_type_ids"])]


def min_length(pair: bool) -> int:
    """Tokens of an empty input: [CLS] [SEP], or [CLS] [SEP] [SEP] for a pair."""
    return 3 if pair else 2
