"""A trained run leaves the toolkit: its best weights as a Hugging Face folder (transformers.BertModel
and sentence-transformers load it), its task heads in a safetensors file of their own, and the loader
that puts encoder and heads back together as a MultitaskBert.

A run folder's own config.json is the run's record, not a Hugging Face config: `export_run` writes
one that is (model_type bert)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .multitask import MultitaskBert
    from .train_config import TrainConfig

HEADS_FILE = "minbert_heads.safetensors"  # task heads and the bi-LSTM, with the layout in its metadata
RUN_FILE = "minbert_run.json"  # where the export came from: the run's config and best dev scores
# MultitaskBert's construction arguments, as the heads file's metadata records them
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "special_tokens_map.json")
HEAD_KEYS = ("tasks", "pair_encoding", "pooling", "lstm", "task_layers", "task_hidden", "head_dropout")


def export_run(run: str | Path, out: str | Path) -> list[str]:
    """Write run folder `run`'s best weights to the new folder `out`; return the files written.

    `out` gets config.json (model_type bert) and model.safetensors (the encoder), the tokenizer files,
    HEADS_FILE (heads and bi-LSTM; read back by load_multitask), RUN_FILE, and, where the run's sentence
    vector is the encoder plus its pooling (no bi-LSTM), the sentence-transformers files (modules.json,
    sentence_bert_config.json, 1_Pooling/config.json, and 2_Dense/ for `cls` pooling's tanh pooler).
    The folder appears whole or not at all. Raises FileNotFoundError for a run without best weights,
    ValueError for a folder that is not a run record or an `out` that exists and is not empty.
    """
    from .run_state import load_best

    run, out = Path(run), Path(out)
    record, cfg = _read_run(run)
    state = load_best(run / "checkpoints")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; choose a new folder for the export")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.part-"))
    try:
        _write_encoder(tmp, record, cfg, state)
        save_heads(tmp / HEADS_FILE, {k: v for k, v in state.items() if not k.startswith("encoder.")},
                   {k: getattr(cfg, k) for k in HEAD_KEYS})
        if not cfg.lstm:  # sentence-transformers has no module for the run's bi-LSTM
            _write_sentence_transformers(tmp, cfg, state)
        metrics = run / "metrics.json"
        best = json.loads(metrics.read_text()).get("best_dev") if metrics.is_file() else None
        (tmp / RUN_FILE).write_text(json.dumps({"run": str(run.resolve()), "config": record["config"],
                                                "best_dev": best}, indent=2) + "\n")
        _readable(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def _readable(folder: Path) -> None:
    """Modes as a plain mkdir and open would give under the umask (mkdtemp and save_file make them private)."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    for p in [folder, *folder.rglob("*")]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def _read_run(run: Path) -> tuple[dict, "TrainConfig"]:
    """The run's config.json record and its TrainConfig; ValueError where it is not a run record."""
    from .train_config import TrainConfig, migrate_keys

    f = run / "config.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: not found; is {run} a run folder?")
    try:
        record = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e}); the run record is damaged") from None
    if not isinstance(record.get("config"), dict) or not isinstance(record.get("model", {}).get("encoder"), dict):
        raise ValueError(f"{f}: no 'config' and 'model.encoder' objects; not a run record written by training")
    return record, TrainConfig.from_dict(migrate_keys(record["config"], str(f), warn=False))


def _write_encoder(folder: Path, record: dict, cfg: "TrainConfig", state: dict[str, torch.Tensor]) -> None:
    """config.json + model.safetensors of the fine-tuned encoder, and its tokenizer's own files (the
    ones the run tokenized with), with model_max_length the run's max_length."""
    from .checkpoints import resolve_checkpoint
    from .config import BertConfig
    from .model import BertModel
    from .multitask import tokenizer_name

    encoder = BertModel(BertConfig(**record["model"]["encoder"]))
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")})
    encoder.save_pretrained(folder)
    src = resolve_checkpoint(tokenizer_name(cfg.checkpoint))
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, folder / name)
    tok_file = src / "tokenizer_config.json"
    tok_cfg = json.loads(tok_file.read_text()) if tok_file.is_file() else {}
    _write_json(folder / "tokenizer_config.json", {**tok_cfg, "model_max_length": cfg.max_length})


def _write_sentence_transformers(folder: Path, cfg: "TrainConfig", state: dict[str, torch.Tensor]) -> None:
    """modules.json and its modules: the encoder, then the run's pooling (mean; or [CLS] and BERT's
    tanh pooler as a Dense module, which is what `cls` pooling computes)."""
    from safetensors.torch import save_file

    dim = state["encoder.pooler.dense.weight"].shape[0]
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    pooling = {"word_embedding_dimension": dim, "pooling_mode_cls_token": cfg.pooling == "cls",
               "pooling_mode_mean_tokens": cfg.pooling == "mean", "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    _write_json(folder / "1_Pooling" / "config.json", pooling)
    if cfg.pooling == "cls":
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        _write_json(folder / "2_Dense" / "config.json", {
            "in_features": dim, "out_features": dim, "bias": True,
            "activation_function": "torch.nn.modules.activation.Tanh"})
        save_file({"linear.weight": state["encoder.pooler.dense.weight"].contiguous(),
                   "linear.bias": state["encoder.pooler.dense.bias"].contiguous()},
                  str(folder / "2_Dense" / "model.safetensors"))
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": cfg.max_length, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def save_heads(path: Path, tensors: dict[str, torch.Tensor], layout: dict) -> None:
    """The heads' (and bi-LSTM's) weights, MultitaskBert names, with `layout` (HEAD_KEYS) as metadata."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path),
              metadata={"minbert": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in layout.items()})})


def load_heads(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, layout) of a HEADS_FILE; ValueError naming the file where it is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; export the run with `minbert export RUN OUT`")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["minbert"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a damaged file; no metadata: KeyError
        raise ValueError(f"{path}: not a minbert heads file ({type(e).__name__}: {e}); export the run again") from None
    missing = [k for k in HEAD_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{path}: its metadata lacks {', '.join(missing)}; export the run again")
    return tensors, meta


def load_multitask(folder: str | Path, device: str | torch.device = "cpu") -> "MultitaskBert":
    """The exported run as a MultitaskBert (encoder, bi-LSTM, every task head), in eval mode.

    `folder` is what export_run wrote. Raises ValueError where the heads do not fit the encoder.
    """
    from .model import BertModel
    from .multitask import MultitaskBert

    folder = Path(folder)
    tensors, meta = load_heads(folder / HEADS_FILE)
    model = MultitaskBert(BertModel.from_pretrained(folder), **{k: meta[k] for k in HEAD_KEYS})
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(f"{folder / HEADS_FILE}: does not fit the model its layout describes (missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}); export the run again")
    return model.to(device).eval()
