"""A checkpoint and data files packed small enough to travel to a machine that has neither.

The project's device tool copies the repository (~23 MiB) plus what it is told to carry, 64 MiB in all;
the packaged MiniLM's weights alone are 91 MB in fp32 (41 MB as fp16 and xz). So the bundle keeps
- every weight rounded to fp16 (relative error below 2^-11; loaded back as fp32, so a run on the unpacked
  checkpoint is close to, not bit-equal with, one on the original);
- of the word embeddings only the rows of tokens the data can produce (plus ids below 1000: [PAD], [UNK],
  [CLS], [SEP], [MASK] and the unused slots). The other rows are unpacked as zeros: a row is read only
  for its own token and, with no weight decay, a row no batch reads never changes, so runs on that data
  are unaffected;
- each fp16 tensor as its two byte planes (high bytes, which hold sign and exponent, compress well; the
  low bytes hardly at all), the whole compressed with xz.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

FORMAT = "minbert-fp16-planes/1"
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
ALWAYS_KEPT = 1000  # ids below this: [PAD] 0, [unusedN], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103
CHECKPOINT_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PACKED = "weights.fp16-planes.safetensors"


def token_rows(tokenizer: Callable[..., dict], texts: Iterable[str]) -> list[int]:
    """Sorted vocabulary ids the tokenizer produces for `texts` (untruncated), with every id < ALWAYS_KEPT."""
    ids = set(range(ALWAYS_KEPT))
    batch: list[str] = []
    for t in [*texts, None]:
        if t is not None:
            batch.append(t)
        if batch and (t is None or len(batch) == 4096):
            for row in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
                ids.update(row)
            batch = []
    return sorted(ids)


def pack_weights(sd: dict[str, torch.Tensor],
                 keep_rows: Sequence[int] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) for safetensors: each float tensor as fp16 byte planes (2, n) uint8; with
    `keep_rows`, only those rows of the word embeddings.

    Raises ValueError when a weight does not fit in fp16 (|x| > 65504) or a kept row is out of range."""
    out, shapes = {}, {}
    for name, t in sd.items():
        shapes[name] = [list(t.shape), str(t.dtype).removeprefix("torch.")]
        if not t.is_floating_point():
            out[name] = t.contiguous()
            continue
        if name == WORD_EMBEDDINGS and keep_rows is not None:
            if keep_rows and not 0 <= min(keep_rows) <= max(keep_rows) < t.shape[0]:
                raise ValueError(f"{name}: kept rows must lie in 0..{t.shape[0] - 1}; "
                                 f"got {min(keep_rows)}..{max(keep_rows)}")
            out["__kept_rows__"] = torch.tensor(keep_rows, dtype=torch.int32)
            t = t[out["__kept_rows__"].long()]
        half = t.to(torch.float16)
        if not torch.isfinite(half).all():
            raise ValueError(f"{name}: a weight beyond fp16's range (|x| > 65504); this bundle cannot carry it")
        out[name] = half.contiguous().view(torch.uint8).reshape(-1, 2).T.contiguous()  # (2, n): low, high bytes
    return out, {"format": FORMAT, "shapes": json.dumps(shapes)}


def unpack_weights(packed: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    """The state dict pack_weights packed: fp16 values back as their original dtype, word embedding rows
    that were not kept as zeros.

    Raises ValueError for another format."""
    if metadata.get("format") != FORMAT:
        raise ValueError(f"packed weights: format {metadata.get('format')!r}, expected {FORMAT!r}; pack them again")
    out = {}
    for name, (shape, dtype) in json.loads(metadata["shapes"]).items():
        t = packed[name]
        if t.dtype == torch.uint8 and dtype != "uint8":
            t = t.T.contiguous().view(torch.float16).reshape(-1).to(getattr(torch, dtype))
            if name == WORD_EMBEDDINGS and "__kept_rows__" in packed:
                full = torch.zeros(shape, dtype=t.dtype)
                full[packed["__kept_rows__"].long()] = t.view(-1, shape[1])
                t = full
        out[name] = t.reshape(shape)
    return out


def write_bundle(dst: Path, checkpoint: Path, data_files: Sequence[Path],
                 keep_rows: Sequence[int] | None = None) -> dict:
    """`dst` (.tar.xz): data/<file> for each data file, minilm/ with the checkpoint's config and tokenizer
    files and its packed weights. Returns what it holds (bytes, rows kept, largest rounding error)."""
    from ..checkpoints import load_state_dict

    sd = load_state_dict(checkpoint)
    tensors, meta = pack_weights(sd, keep_rows)
    err = max(((unpack_weights(tensors, meta)[k] - v).abs().max().item() for k, v in sd.items()
               if v.is_floating_point() and k != WORD_EMBEDDINGS), default=0.0)
    from safetensors.torch import save

    with tarfile.open(dst, "w:xz", preset=6) as tar:
        for f in data_files:
            tar.add(f, arcname=f"data/{f.name}")
        for name in CHECKPOINT_FILES:
            if (checkpoint / name).is_file():
                tar.add(checkpoint / name, arcname=f"minilm/{name}")
        blob = save(tensors, metadata=meta)
        info = tarfile.TarInfo(f"minilm/{PACKED}")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    rows = sd[WORD_EMBEDDINGS].shape[0] if WORD_EMBEDDINGS in sd else 0
    return {"bundle": str(dst), "bytes": dst.stat().st_size, "data_files": [f.name for f in data_files],
            "word_rows_kept": len(keep_rows) if keep_rows is not None else rows, "word_rows": rows,
            "max_abs_rounding_error_fp16": err}


def open_bundle(bundle: Path, dst: Path) -> Path:
    """Extract `bundle` into `dst` (data/, minilm/) and write minilm/model.safetensors (fp32) from the packed
    weights. Returns `dst`.

    Raises FileNotFoundError when the bundle is missing."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if not bundle.is_file():
        raise FileNotFoundError(f"{bundle}: no bundle; make it with `python -m minbert_core.bench.gpu_slice bundle`")
    dst.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle, "r:xz") as tar:
        tar.extractall(dst, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    packed = dst / "minilm" / PACKED
    with safe_open(str(packed), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    save_file(unpack_weights(tensors, meta), str(dst / "minilm" / "model.safetensors"))
    packed.unlink()
    return dst
