"""What a task head reads: the encoder's features for a batch, or, for a frozen encoder, rows of a
cache that encodes every example of a split once (a frozen encoder in eval mode is a fixed function)."""
from __future__ import annotations

import torch

from .batching import BucketBatchSampler, TokenizedSplit
from .multitask import MultitaskBert


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class FeatureSource:
    """Head inputs for a task's batch; `cached` reads them from a per-split cache built on first use."""

    def __init__(self, model: MultitaskBert, data: dict[str, dict[str, TokenizedSplit]], device: torch.device,
                 cached: bool, eval_batch_size: int, bf16: bool):
        self.model, self.data, self.device = model, data, device
        self.cached, self.eval_batch_size, self.bf16 = cached, eval_batch_size, bf16
        self.cache: dict[tuple[str, str], torch.Tensor] = {}

    def autocast(self):
        """bf16 autocast when the config asks for it (CUDA, or CPUs that support it)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def __call__(self, task: str, split: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cached:
            key = (task, split)
            if key not in self.cache:
                self.cache[key] = self._encode_all(task, split)
            return self.cache[key][batch["index"].to(self.cache[key].device)]
        return self.model.features(task, to_device(batch, self.device))

    @torch.no_grad()
    def _encode_all(self, task: str, split: str) -> torch.Tensor:
        """Head inputs for every example of a split, in example order."""
        ts = self.data[task][split]
        was = self.model.encoder.training
        self.model.encoder.eval()
        out = None
        for idx in BucketBatchSampler(ts.lengths, self.eval_batch_size, shuffle=False):
            with self.autocast():
                f = self.model.features(task, to_device(ts.batch(idx), self.device)).float()
            if out is None:
                out = torch.empty(len(ts), f.shape[1], device=self.device)
            out[torch.tensor(idx, device=self.device)] = f
        self.model.encoder.train(was)  # only the encoder was switched; the heads keep their mode
        return out
