"""Tokenize once, batch by length, pad each batch only to its own longest sequence."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from .data import Split
from .distributed import Dist
from .tokenizer import encode


@dataclass
class TokenizedSplit:
    """A split's examples tokenized once (kept for every epoch), with labels as a tensor."""

    split: Split
    features: list[dict[str, list[int]]]
    labels: torch.Tensor | None  # (N,) long for classes, float for similarity; None for test
    b_features: list[dict[str, list[int]]] | None = None  # second sentences, when encoded separately

    @classmethod
    def build(cls, split: Split, tokenizer, max_length: int = 128, pair_encoding: str = "cross") -> "TokenizedSplit":
        """Tokenize every example of a split: pairs as [CLS] a [SEP] b [SEP] ('cross') or apart ('bi')."""
        ex = split.examples
        first = [e.text_a for e in ex]
        second = [e.text_b for e in ex] if ex[0].text_b is not None else None
        b_feats = None
        if second is not None and pair_encoding == "bi":
            feats = encode(tokenizer, first, max_length=max_length)
            b_feats = encode(tokenizer, second, max_length=max_length)
        else:
            feats = encode(tokenizer, first, second, max_length=max_length)
        labels = None
        if ex[0].label is not None:
            dtype = torch.float32 if isinstance(ex[0].label, float) else torch.long
            labels = torch.tensor([e.label for e in ex], dtype=dtype)
        return cls(split, feats, labels, b_feats)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def lengths(self) -> list[int]:
        """Tokens per example (both sentences, when encoded separately)."""
        if self.b_features is None:
            return [len(f["input_ids"]) for f in self.features]
        return [len(a["input_ids"]) + len(b["input_ids"]) for a, b in zip(self.features, self.b_features)]

    def batch(self, idx: Sequence[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
        """Collate examples `idx` into padded tensors (padding to this batch's longest)."""
        idx = list(idx)
        out = collate([self.features[i] for i in idx], pad_id)
        if self.b_features is not None:
            out |= {f"b_{k}": v for k, v in collate([self.b_features[i] for i in idx], pad_id).items()}
        if self.labels is not None:
            out["labels"] = self.labels[idx]
        out["index"] = torch.tensor(idx)
        return out


def collate(features: Sequence[dict[str, list[int]]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Dynamic padding: (B, T) tensors where T is the longest sequence of this batch."""
    T = max(len(f["input_ids"]) for f in features)
    B = len(features)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    tt = torch.zeros((B, T), dtype=torch.long)
    am = torch.zeros((B, T), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        tt[i, :n] = torch.tensor(f["token_type_ids"])
        am[i, :n] = 1
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am}


class BucketBatchSampler:
    """Seeded, shuffled batches of similar length.

    Each epoch: shuffle all indices, cut them into pools of `pool_batches` batches, sort each pool
    by length, cut it into batches, then shuffle the batch order. Sorting within a pool keeps
    padding small while the shuffle keeps batches varied from epoch to epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, shuffle: bool = True,
                 pool_batches: int = 50, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.pool = pool_batches * batch_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose (deterministic) order __iter__ yields."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This epoch's batches, as lists of example indices."""
        n = len(self.lengths)
        if not self.shuffle:
            order = sorted(range(n), key=lambda i: self.lengths[i])  # eval: pure length order
            return [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(n, generator=g).tolist()
        out: list[list[int]] = []
        for s in range(0, n, self.pool):
            pool = sorted(perm[s:s + self.pool], key=lambda i: self.lengths[i])
            out += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.drop_last:
            out = [b for b in out if len(b) == self.batch_size]
        order = torch.randperm(len(out), generator=g).tolist()
        return [out[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = len(self.lengths) // self.batch_size if self.drop_last else math.ceil(len(self.lengths) / self.batch_size)
        return n


def random_batches(n: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Plain shuffled batches (the baseline bucketing is measured against)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of all tokens in padded batches that are padding."""
    real = padded = 0
    for b in batches:
        ls = [lengths[i] for i in b]
        real += sum(ls)
        padded += max(ls) * len(ls)
    return 1.0 - real / padded if padded else 0.0


class TaskStream:
    """Endless batches of one task: epoch after epoch of its bucketed sampler, resumable."""

    def __init__(self, data: TokenizedSplit, batch_size: int, seed: int, dist: Dist | None = None):
        self.data, self.dist = data, dist or Dist()
        self.sampler = BucketBatchSampler(data.lengths, batch_size, seed=seed)
        self.epoch, self.pos = 0, 0
        self.last_global = 0  # rows of the last global batch (this rank holds its share of them)
        self._batches = self._epoch_batches()

    def _epoch_batches(self) -> list[list[int]]:
        self.sampler.set_epoch(self.epoch)
        # on several ranks, a last batch with fewer rows than ranks would leave a rank empty: dropped
        return [b for b in self.sampler.batches() if len(b) >= self.dist.world]

    def next(self) -> dict[str, torch.Tensor]:
        """The next batch (this rank's share of it), starting the next epoch when one runs out."""
        if self.pos >= len(self._batches):
            self.epoch, self.pos = self.epoch + 1, 0
            self._batches = self._epoch_batches()
        idx = self._batches[self.pos]
        self.pos += 1
        self.last_global = len(idx)
        return self.data.batch(self.dist.shard(idx))

    def state_dict(self) -> dict:
        """Where the stream stands, for a checkpoint."""
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, s: dict) -> None:
        """Continue from a `state_dict()`."""
        self.epoch, self.pos = s["epoch"], s["pos"]
        self._batches = self._epoch_batches()
