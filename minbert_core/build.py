"""Building a run from its config: the device, the tokenized data of every task, the model, and its optimizer."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from .batching import TokenizedSplit
from .checkpoints import resolve_checkpoint
from .config import BertConfig
from .data import DATASETS, Split, data_dir, load_split
from .multitask import RANDOM_SHAPES, MultitaskBert, load_encoder, tokenizer_name
from .optim import AdamW
from .tokenizer import load_tokenizer, min_length

log = logging.getLogger("minbert.build")


def encoder_config(checkpoint: str) -> BertConfig:
    """The encoder's shape without building it: a random shape's, or the checkpoint's config.json,
    checked (a bad key is a ValueError naming the file and key)."""
    if checkpoint.startswith("random:"):
        shape = checkpoint.split(":", 1)[1]
        if shape not in RANDOM_SHAPES:
            raise ValueError(f"unknown random encoder shape {shape!r}; known: {', '.join(RANDOM_SHAPES)}")
        return RANDOM_SHAPES[shape]
    return BertConfig.from_json_file(resolve_checkpoint(checkpoint) / "config.json")


@dataclass(frozen=True)
class InputFit:
    """How a run tokenizes its data so that every id fits the encoder's embedding tables."""

    max_length: int  # tokens per sequence: the config's, capped at the encoder's positions
    token_types: bool  # False: every token gets type 0 (the checkpoint has a one-row token-type table)
    notes: tuple[str, ...]  # one line per change made, for the run's warnings


def fit_inputs(cfg) -> InputFit:
    """Check that what the tokenizer and the data will feed fits the checkpoint's tables (words, positions,
    token types) before anything is trained. A vocabulary larger than the word table is a ValueError
    naming both sizes; where the answer is clear the input is fitted and the note says so: sequences cut
    at the encoder's positions, token type 0 for cross-encoded pairs on a one-row token-type table."""
    enc, tok = encoder_config(cfg.checkpoint), load_tokenizer(tokenizer_name(cfg.checkpoint))
    where = f"checkpoint {cfg.checkpoint}"
    if len(tok) > enc.vocab_size:
        raise ValueError(f"{where}: its tokenizer has {len(tok)} tokens but the word-embedding table has "
                         f"{enc.vocab_size} rows (vocab_size); use the vocab.txt that came with the checkpoint")
    pairs = cfg.pair_encoding == "cross" and [t for t in cfg.tasks if len(DATASETS[t].text_columns) > 1]
    notes, max_length = [], min(cfg.max_length, enc.max_position_embeddings)
    if max_length <= min_length(bool(pairs)):  # the tokenizer would not truncate at all
        raise ValueError(f"max_length {max_length} (the config's, or {where}'s positions) leaves no room for a "
                         f"token beside [CLS] and [SEP]: use at least {min_length(bool(pairs)) + 1}")
    if max_length < cfg.max_length:
        notes.append(f"max_length {cfg.max_length} is above the {enc.max_position_embeddings} positions of "
                     f"{where} (max_position_embeddings): sequences are cut at {max_length} tokens")
    if pairs and enc.type_vocab_size < 2:
        notes.append(f"{where} has {enc.type_vocab_size} token type (type_vocab_size) and cross-encoded pairs "
                     f"({', '.join(pairs)}) use 2: every token gets type 0, as checkpoints without a segment "
                     "table are used")
    return InputFit(max_length, not (pairs and enc.type_vocab_size < 2), tuple(notes))


def _check_fits(ts: TokenizedSplit, enc: BertConfig, where: str) -> None:
    """Every token id, token type and position of a tokenized split within the encoder's tables."""
    for feats in (ts.features, ts.b_features or []):
        for what, top, rows, name in (
                ("token ids", max((max(f["input_ids"], default=0) for f in feats), default=0), enc.vocab_size,
                 "vocab_size"),
                ("token types", max((max(f["token_type_ids"], default=0) for f in feats), default=0),
                 enc.type_vocab_size, "type_vocab_size"),
                ("positions", max((len(f["input_ids"]) for f in feats), default=1) - 1,
                 enc.max_position_embeddings, "max_position_embeddings")):
            if top >= rows:
                raise ValueError(f"{where}: the tokenized data uses {what} up to {top}, but the checkpoint's "
                                 f"table has {rows} rows ({name}); use the checkpoint's own tokenizer files")


def _one_token_type(ts: TokenizedSplit) -> None:
    """Type 0 for every token of a split (a checkpoint whose token-type table has one row)."""
    for feats in (ts.features, ts.b_features or []):
        for f in feats:
            f["token_type_ids"] = [0] * len(f["token_type_ids"])


def _split_record(s: Split) -> dict:
    """What was read of one file: rows, rows used, and every skipped or repaired row (the first 20)."""
    return {"path": str(s.path), "rows_read": s.rows_read, "used": len(s), "skipped": len(s.skipped),
            "skipped_rows": [f"line {ln}: {r}" for ln, r in s.skipped[:20]], "repaired": len(s.repaired),
            "repaired_rows": [f"line {ln}: {r}" for ln, r in s.repaired[:20]]}


def _split_warnings(task: str, s: Split) -> list[str]:
    """What a run's records must say about a split: rows kept despite a fault, a test file sampled."""
    out = [f"{task} {s.split}: {len(s.repaired)} row(s) of {s.path} kept despite a fault (first: line "
           f"{s.repaired[0][0]}: {s.repaired[0][1]})"] if s.repaired else []
    if s.split == "test" and len(s) < s.rows_read:
        out.append(f"{task} test: {len(s)} of {s.rows_read} rows predicted (eval_limit): "
                   f"{task}-test-output.csv is a sample, not a complete submission")
    return out


def load_run_data(cfg, train_tasks: tuple[str, ...]) -> tuple[dict, dict, list[str]]:
    """Every split a run uses, tokenized to fit the encoder (see fit_inputs): (data[task][split], what
    was read of each file, warnings). Training rows only for the trained tasks; dev for every task, and
    test (which may be absent) unless cfg.predict_test is off."""
    root = Path(cfg.data_dir) if cfg.data_dir else data_dir()
    tok, fit, enc = load_tokenizer(tokenizer_name(cfg.checkpoint)), fit_inputs(cfg), encoder_config(cfg.checkpoint)
    for note in fit.notes:
        log.warning("%s", note)
    data: dict[str, dict[str, TokenizedSplit]] = {}
    record: dict[str, dict] = {}
    warnings: list[str] = list(fit.notes)
    for task in cfg.tasks:
        data[task], record[task] = {}, {}
        for split in (["train"] if task in train_tasks else []) + ["dev"] + (["test"] if cfg.predict_test else []):
            limit = {"train": cfg.train_limit, "dev": cfg.dev_limit(task)}.get(split, cfg.eval_limit)
            s = load_split(task, split, root=root, limit=limit or None)
            if s is None:
                warnings.append(f"{task} {split}: {root / DATASETS[task].files[split]} not found; "
                                "no test predictions for it")
                continue
            ts = data[task][split] = TokenizedSplit.build(s, tok, fit.max_length, cfg.pair_encoding)
            if not fit.token_types:
                _one_token_type(ts)
            _check_fits(ts, enc, f"{task} {split}")
            record[task][split], warnings = _split_record(s), warnings + _split_warnings(task, s)
    return data, record, warnings


def build_model(cfg, device) -> MultitaskBert:
    """The encoder (pretrained or random) with a head per task; frozen in pretrain mode."""
    drop = {} if cfg.encoder_dropout < 0 else dict(hidden_dropout_prob=cfg.encoder_dropout,
                                                    attention_probs_dropout_prob=cfg.encoder_dropout)
    encoder = load_encoder(cfg.checkpoint, seed=cfg.seed, **drop)
    model = MultitaskBert(encoder, cfg.tasks, cfg.pair_encoding, cfg.pooling, cfg.lstm,
                          cfg.task_layers, cfg.task_hidden, cfg.head_dropout).to(device)
    if cfg.mode == "pretrain":
        model.encoder.requires_grad_(False)
    return model


def build_optimizer(cfg, model: MultitaskBert, extra: list) -> AdamW:
    """AdamW with the encoder at the mode's rate, the new layers (heads, bi-LSTM) at the heads' rate, and
    what the strategy learns itself (`extra`) at lr_task_weights (0: the heads' rate)."""
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    new = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
    groups = [{"params": enc, "lr": cfg.lr}] if enc else []
    groups.append({"params": new, "lr": cfg.head_lr})
    if extra:  # a strategy's own weights (log-variances, GradNorm's w) are not decayed: decay would pull
        groups.append({"params": extra, "lr": cfg.task_weights_lr, "weight_decay": 0.0})  # them to 0 (Kendall)
    return AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when present, else CPU; an unavailable CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (use device='cpu' or 'auto')")
    return dev
