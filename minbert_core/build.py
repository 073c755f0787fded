"""Building a run from its config: the tokenized data of every task, the model, and its optimizer."""
from __future__ import annotations

from pathlib import Path

from .batching import TokenizedSplit
from .data import DATASETS, data_dir, load_split
from .multitask import MultitaskBert, load_encoder, tokenizer_name
from .optim import AdamW
from .tokenizer import load_tokenizer


def load_run_data(cfg, train_tasks: tuple[str, ...]) -> tuple[dict, dict, list[str]]:
    """Every split a run uses, tokenized: (data[task][split], what was read of each file, warnings).
    Training rows only for the trained tasks; dev for every task, and test (which may be absent) unless
    cfg.predict_test is off."""
    root = Path(cfg.data_dir) if cfg.data_dir else data_dir()
    tok = load_tokenizer(tokenizer_name(cfg.checkpoint))
    data: dict[str, dict[str, TokenizedSplit]] = {}
    record: dict[str, dict] = {}
    warnings: list[str] = []
    for task in cfg.tasks:
        data[task], record[task] = {}, {}
        for split in (["train"] if task in train_tasks else []) + ["dev"] + (["test"] if cfg.predict_test else []):
            limit = {"train": cfg.train_limit, "dev": cfg.dev_limit(task)}.get(split, cfg.eval_limit)
            s = load_split(task, split, root=root, limit=limit or None)
            if s is None:
                warnings.append(f"{task} {split}: {root / DATASETS[task].files[split]} not found; "
                                "no test predictions for it")
                continue
            data[task][split] = TokenizedSplit.build(s, tok, cfg.max_length, cfg.pair_encoding)
            record[task][split] = {"path": str(s.path), "rows_read": s.rows_read, "used": len(s),
                                   "skipped": len(s.skipped),
                                   "skipped_rows": [f"line {ln}: {r}" for ln, r in s.skipped[:20]]}
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
    """AdamW with the encoder at the mode's rate and the new layers (heads, bi-LSTM, and what the
    strategy learns itself, `extra`) at the heads' rate."""
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    new = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("encoder.")]
    groups = [{"params": enc, "lr": cfg.lr}] if enc else []
    groups.append({"params": new + extra, "lr": cfg.head_lr})
    return AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
