"""The resumable part of a training run: its records so far, and every RNG's state, as plain values
(tensors, lists, numbers) so a checkpoint loads with weights_only=True and runs no pickled code."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_write_bytes


@dataclass
class TrainState:
    """What a run has recorded so far; saved in every checkpoint and restored on resume."""

    history: list[dict] = field(default_factory=list)  # per step (train) and per epoch (dev)
    telemetry: list[dict] = field(default_factory=list)  # gradient conflicts, every telemetry_every steps
    best: dict = field(default_factory=lambda: {"score": -math.inf, "epoch": None, "dev": None})
    elapsed: float = 0.0  # wall time of the run so far, s
    examples: int = 0  # training examples seen (global batches)
    train_time: float = 0.0  # time spent in training steps, s

    def to_dict(self) -> dict:
        return {"history": self.history, "telemetry": self.telemetry, "best": self.best,
                "elapsed_s": self.elapsed, "examples": self.examples, "train_time_s": self.train_time}

    @classmethod
    def from_dict(cls, st: dict) -> "TrainState":
        return cls(st["history"], st["telemetry"], st["best"], st["elapsed_s"], st["examples"], st["train_time_s"])


def rng_state() -> dict:
    """This process's RNG states (torch, numpy, python, CUDA) as plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict) -> None:
    """Put back what rng_state returned."""
    torch.set_rng_state(rng["torch"])
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """torch.load with weights_only=True: tensors and plain containers, never code.

    A file that is not such a checkpoint (truncated, garbage, or a pickle that would run code) is an
    error naming it and saying what to do; nothing in it is executed.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a loadable minbert checkpoint ({first[:200]}); it was not executed. "
                         f"Delete it to restart the run from scratch (or from the best weights by hand)") from None


BEST = "best.safetensors"  # the best epoch's weights in a run's checkpoints/ folder
OLD_BEST = "best.pt"  # what runs saved before (torch.save of the state dict); still read


def save_best(state_dict: dict[str, torch.Tensor], checkpoints: Path) -> None:
    """The best epoch's weights to checkpoints/best.safetensors, atomically: tensors only, so loading
    them runs no code and needs no pickle. An older run's best.pt, now stale, is removed."""
    from safetensors.torch import save

    # copies: safetensors refuses tensors that share storage or are not contiguous
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(checkpoints / BEST, save(tensors))
    (checkpoints / OLD_BEST).unlink(missing_ok=True)


def load_best(checkpoints: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The best epoch's weights: best.safetensors, else the best.pt of a run saved before it.

    Raises FileNotFoundError where the folder has neither, ValueError naming a damaged file.
    """
    path = checkpoints / BEST
    if not path.is_file():
        if (checkpoints / OLD_BEST).is_file():
            return load_checkpoint(checkpoints / OLD_BEST, device)
        raise FileNotFoundError(f"{checkpoints}: no {BEST} (nor an older {OLD_BEST}); the run saved no best "
                                "weights yet: finish or resume it")
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises SafetensorError, OSError... for a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ValueError(f"{path}: not a loadable safetensors file ({first}); delete it and resume the run "
                         "to write it again") from None
