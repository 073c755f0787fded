"""Shared fixtures: the data folder (from $MINBERT_DATA) and tiny random BERT checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from minbert_core.config import BertConfig

TINY = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=128)


NO_DATA = "data not found in"  # the root conftest.py counts skips with this reason


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real CS224N data; tests needing it skip with a reason where it is absent."""
    root = Path(os.environ.get("MINBERT_DATA", "data"))
    if not (root / "ids-sst-train.csv").is_file():
        pytest.skip(f"{NO_DATA} {root}: set MINBERT_DATA (CI uses ../shared/data)")
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init 2-layer BERT with the real MiniLM vocab, saved as a checkpoint folder."""
    import shutil

    from minbert_core.checkpoints import resolve_checkpoint
    from minbert_core.sanity import random_checkpoint

    folder = tmp_path_factory.mktemp("tiny-bert")
    random_checkpoint(TINY, folder)
    src = resolve_checkpoint("minilm-l6")
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / f).is_file():
            shutil.copy(src / f, folder / f)
    return folder

