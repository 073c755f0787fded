"""Dynamic padding, the length-bucketed sampler and the tokenization cache."""
from __future__ import annotations

import torch

from minbert_core.batching import BucketBatchSampler, TokenizedSplit, collate, padding_share, random_batches
from minbert_core.data import load_split
from minbert_core.tokenizer import load_tokenizer


def test_collate_pads_to_longest_in_batch():
    b = collate([{"input_ids": [1, 2, 3], "token_type_ids": [0, 0, 1]}, {"input_ids": [4], "token_type_ids": [0]}])
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]


def test_sampler_covers_every_index_once_and_is_seeded():
    lengths = [(i * 37) % 50 + 1 for i in range(1000)]
    s = BucketBatchSampler(lengths, 32, seed=3)
    flat = sorted(i for b in s for i in b)
    assert flat == list(range(1000)) and len(list(s)) == len(s)
    assert list(BucketBatchSampler(lengths, 32, seed=3)) == list(s)
    s2 = BucketBatchSampler(lengths, 32, seed=3)
    s2.set_epoch(1)
    assert list(s2) != list(s)  # a new order each epoch


def test_sst_train_padding_under_10_percent(data_root):
    ts = TokenizedSplit.build(load_split("sst", "train", root=data_root), load_tokenizer("minilm-l6"))
    L = ts.lengths
    bucketed = padding_share(L, BucketBatchSampler(L, 32, seed=0).batches())
    rand = padding_share(L, random_batches(len(L), 32, seed=0))
    print(f"SST train, batch 32: padded share bucketed {bucketed:.1%}, random {rand:.1%}")
    assert bucketed < 0.10 and rand > 3 * bucketed


def test_tokenized_once_and_batches_carry_labels(data_root):
    ts = TokenizedSplit.build(load_split("sts", "dev", root=data_root, limit=20), load_tokenizer("minilm-l6"))
    assert len(ts.features) == 20 and ts.labels.dtype == torch.float32
    b = ts.batch([0, 5])
    assert b["input_ids"].shape[0] == 2 and b["labels"].tolist() == ts.labels[[0, 5]].tolist()
    assert (b["token_type_ids"] == 1).any()  # pairs carry sentence-B token types
