"""A training run's config: TrainConfig, its string parsers and the renamed keys.

Its own module so that the study, the report and the CLI read a run's settings without importing the
training loop. Not in config.py: that holds the encoder's BertConfig, below the model, while a run's
config checks task and strategy names against their registries (above the model).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field

from .config import override
from .precision import PRECISIONS
from .strategies import STRATEGIES, TRAINING_RULES
from .tasks import get_task, head_owners


def _f(default, help_: str):
    """A config field with its one-line reason, which `minbert multitask --help` prints."""
    return field(default=default, metadata={"help": help_})


_SAFE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def valid_run_id(name: str) -> bool:
    """Whether `name` is one plain folder name (the --run-id rule): letters, digits, '.', '_', '-'."""
    return bool(_SAFE_RUN_ID.fullmatch(name)) and name not in (".", "..")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one run depends on. Defaults follow the original CS224N project."""

    tasks: tuple[str, ...] = _f(("sst", "para", "sts"), "tasks with heads, evaluated every epoch")
    strategy: str = _f("pcgrad", "gradient combination: a name in strategies.STRATEGIES")
    single_task: str = _f("sst", "the one task trained by strategy 'single'")
    checkpoint: str = _f("minilm-l6", "pretrained encoder: minilm-l6, a folder, a hub name, or random:<shape>")
    mode: str = _f("finetune", "finetune: train everything; pretrain: freeze the encoder, train heads")
    lr_pretrain: float = _f(1e-3, "learning rate in pretrain mode")
    lr_finetune: float = _f(1e-5, "learning rate in finetune mode")
    lr_head: float = _f(0.0,
        "learning rate of the layers trained from scratch (heads, bi-LSTM) when fine-tuning; 0 = "
        "lr_finetune (the original project: one rate). A fresh bi-LSTM at an encoder's fine-tuning "
        "rate learns too slowly")
    lr_task_weights: float = _f(0.0,
        "learning rate of the task weights a strategy learns itself (GradNorm's w, uncertainty weighting's "
        "log-variances); 0 = the heads' rate. Adam moves a weight by about its rate a step, so at an "
        "encoder's fine-tuning rate GradNorm's weights barely leave 1 in a few hundred steps")
    weight_decay: float = _f(0.0, "AdamW decoupled weight decay")
    epochs: int = _f(10, "passes, as counted by epoch_rule")
    batch_size: int = _f(8, "examples per task per step")
    eval_batch_size: int = _f(64, "examples per forward pass when evaluating")
    head_dropout: float = _f(0.3, "dropout in the task heads (BERT's own is encoder_dropout)")
    encoder_dropout: float = _f(-1.0, "encoder dropout (hidden and attention); -1 keeps the checkpoint's")
    seed: int = _f(11711, "seeds torch, numpy, random, samplers and PCGrad's task order")
    max_length: int = _f(128, "tokens per sequence (pairs: both sentences together)")
    pair_encoding: str = _f("cross", "cross: [CLS] a [SEP] b [SEP]; bi: encode apart (Sentence-BERT heads)")
    pooling: str = _f("mean",
        "mean: masked mean of token states (what MiniLM was trained with: its pooler.dense is "
        "untrained); cls: BERT's pooler over [CLS] (the CS224N starter's, right for "
        "bert-base-uncased)")
    lstm: bool = _f(False, "a shared bi-LSTM over the encoder's token states")
    task_layers: int = _f(0, "hidden layers in each task's own head")
    task_hidden: int = _f(256, "width of those layers")
    epoch_rule: str = _f("smallest", "steps per epoch: smallest | largest task's batches, or fixed")
    steps_per_epoch: int = _f(0, "steps per epoch when epoch_rule is 'fixed'")
    train_limit: int = _f(0, "training examples per task, a seeded sample (0 = all)")
    eval_limit: int = _f(0, "dev/test examples per task, a seeded sample (0 = all)")
    dev_limits: str = _f("", 'per-task dev caps overriding eval_limit for dev only, e.g. "para=5000"')
    predict_test: bool = _f(True, "write test-set submission files (off: dev files only, a faster study run)")
    loss_weights: str = _f("",
        'per-task loss weights, e.g. "sts=0.2" (unlisted tasks weigh 1): STS\'s squared error on a 0-5 '
        "scale starts ~10x the classification losses; '' is the paper's plain sum")
    telemetry_every: int = _f(10, "record task-gradient cosines every N steps (0 = never)")
    checkpoint_every: int = _f(200, "save a resumable checkpoint every N steps (and each epoch end)")
    keep_last: bool = _f(False, "keep checkpoints/last.pt (weights + optimizer state) once the run completes")
    target_overall: float = _f(0.0,
        "stop after the first epoch whose dev overall reaches this (0 = off): time-to-accuracy runs")
    time_budget_s: float = _f(0.0, "stop after the epoch in which training time passes this (0 = off)")
    cache_features: bool = _f(True, "pretrain mode without bi-LSTM: encode each example once")
    device: str = _f("auto", "auto (cuda if present), cpu, cuda, cuda:1 ...")
    precision: str = _f("fp32",
        "fp32 | bf16 (bf16 autocast: weights and optimizer state stay fp32) | auto (bf16 where the device "
        "multiplies bf16 natively: CUDA with bf16, a CPU with AMX or AVX512-BF16; else fp32). fp32 is the "
        "default, so that one command gives one arithmetic on any machine; the cpu profile's Table 6 found "
        "bf16 moving no score beyond the seed spread, and the quick profiles run at auto")
    runs_dir: str = _f("runs", "parent folder of run folders")
    run_id: str = _f("", "run folder name ("" = <time>-<strategy>-<tasks>)")
    data_dir: str = _f("", "data folder ("" = $MINBERT_DATA or ./data)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # types first: every later check can trust them
            object.__setattr__(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        # upper bounds: what no run means (an AdamW rate above 1, an overall score above 1, a seed numpy
        # refuses), so that a typo fails here, naming the key, not as a non-finite loss at step 1
        ranges = {"target_overall": (0.0, 1.0), "time_budget_s": (0.0, 1e7), "lr_pretrain": (0.0, 1.0),
                  "lr_finetune": (0.0, 1.0), "lr_head": (0.0, 1.0), "lr_task_weights": (0.0, 1.0), "weight_decay": (0.0, 10.0),
                  "seed": (0, 2**32 - 1), "task_layers": (0, None), "task_hidden": (1, None),
                  "steps_per_epoch": (0, None), "telemetry_every": (0, None), "checkpoint_every": (0, None)}
        for key, (lo, hi) in ranges.items():
            v = getattr(self, key)
            if v < lo or (hi is not None and v > hi):
                raise ValueError(f"{key} must be >= {lo}{'' if hi is None else f' and <= {hi}'}; got {v!r}")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1); got {self.head_dropout!r}")
        if self.encoder_dropout != -1.0 and not 0.0 <= self.encoder_dropout < 1.0:
            raise ValueError(f"encoder_dropout must be -1 (the checkpoint's) or in [0, 1); got {self.encoder_dropout!r}")
        choices = {"mode": ("pretrain", "finetune"), "strategy": TRAINING_RULES + tuple(STRATEGIES),
                   "pair_encoding": ("cross", "bi"), "pooling": ("cls", "mean"),
                   "epoch_rule": ("smallest", "largest", "fixed"), "precision": PRECISIONS}
        for key, ok in choices.items():
            if getattr(self, key) not in ok:
                raise ValueError(f"{key} must be one of {', '.join(ok)}; got {getattr(self, key)!r}")
        if self.run_id and not valid_run_id(self.run_id):
            raise ValueError(f"run_id (--run-id) must be one folder name of letters, digits, '.', '_' or '-' "
                             f"inside runs_dir; got {self.run_id!r}")
        if not self.tasks:
            raise ValueError("tasks is empty")
        head_owners(self.tasks)  # every task known; a tied head's owner among the tasks
        if self.strategy == "single" and self.single_task not in self.tasks:
            raise ValueError(f"single_task {self.single_task!r} is not among tasks {self.tasks}")
        if self.epoch_rule == "fixed" and self.steps_per_epoch < 1:
            raise ValueError("epoch_rule 'fixed' needs steps_per_epoch >= 1")
        for key in ("epochs", "batch_size", "eval_batch_size", "max_length"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1; got {getattr(self, key)}")
        for key in ("train_limit", "eval_limit"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0 (0 = all rows); got {getattr(self, key)}")
        for key, hi in (("dev_limits", 1e12), ("loss_weights", 1e3)):  # a row count; a loss weight
            for t, v in task_values(getattr(self, key), key).items():
                if not 0 <= v <= hi or (key == "dev_limits" and v != int(v)):
                    raise ValueError(f"{key}: {t}={v:g} must be a {'whole ' * (key == 'dev_limits')}number "
                                     f"in 0..{hi:g}")

    @property
    def train_tasks(self) -> tuple[str, ...]:
        """The tasks whose losses train the model: all of them, or the 'single' rule's one task."""
        return (self.single_task,) if self.strategy == "single" else tuple(self.tasks)

    @property
    def gradient_strategy(self) -> str:
        """The registered strategy that combines the trained tasks' gradients ('single': the plain sum)."""
        return "sum" if self.strategy == "single" else self.strategy

    @property
    def head_lr(self) -> float:
        """The learning rate of the heads and the bi-LSTM."""
        return self.lr_head if self.mode == "finetune" and self.lr_head > 0 else self.lr

    @property
    def task_weights_lr(self) -> float:
        """The learning rate of a strategy's own task weights."""
        return self.lr_task_weights if self.lr_task_weights > 0 else self.head_lr

    def weight(self, task: str) -> float:
        """The task's loss weight (1 unless loss_weights names it)."""
        return task_values(self.loss_weights, "loss_weights").get(task, 1.0)

    def dev_limit(self, task: str) -> int:
        """Dev rows evaluated for a task (0 = all)."""
        return int(task_values(self.dev_limits, "dev_limits").get(task, self.eval_limit))

    @property
    def lr(self) -> float:
        """The learning rate this mode uses."""
        return self.lr_pretrain if self.mode == "pretrain" else self.lr_finetune

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a dict (JSON, notebook parameters); unknown keys are an error naming them."""
        d = migrate_keys(d, "config")
        if "tasks" in d and isinstance(d["tasks"], (list, str)):
            d["tasks"] = tuple(d["tasks"].split(",")) if isinstance(d["tasks"], str) else tuple(d["tasks"])
        return override(cls(), d)


# Renamed keys, read under their old names for one release: hidden_dropout was the head dropout, easily
# taken for BERT's own hidden_dropout_prob (encoder_dropout sets that one)
DEPRECATED_KEYS = {"hidden_dropout": "head_dropout", "bf16": "precision"}
# old keys whose values change form under the new name: bf16 (a boolean) became precision (a name)
CONVERT_VALUES = {"bf16": lambda v: "bf16" if _coerce("bf16", "bool", v) else "fp32"}


def recorded_fields(config: dict, where: str) -> dict:
    """A run record's config (config.json's "config") as every TrainConfig field in JSON types: keys renamed
    since under their new names, fields added since at their defaults (the run trained that way). No
    warning: an old record is not the user's input."""
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))  # tuples as lists, as config.json
    return defaults | migrate_keys(config, where, warn=False)


def migrate_keys(d: dict, where: str, warn: bool = True) -> dict:
    """`d` with deprecated keys under their new names (a FutureWarning naming each, unless `warn` is off,
    as for records written before the rename); both names with different values is an error."""
    import warnings

    out = dict(d)
    for old, new in DEPRECATED_KEYS.items():
        if old not in out:
            continue
        v = out.pop(old)
        if old in CONVERT_VALUES:
            v = CONVERT_VALUES[old](v)
        if new in out and out[new] != v:
            raise ValueError(f"{where}: both {old}={v!r} and {new}={out[new]!r}; {old} is the old name of {new}")
        out.setdefault(new, v)
        if warn:
            warnings.warn(f"{where}: {old} is deprecated, use {new}", FutureWarning, stacklevel=3)
    return out


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, typ: str, v):
    """A config value of the field's type: unambiguous strings are read ("1e-5", "true"), the rest refused."""
    def bad(why: str = ""):
        return ValueError(f"{name} must be {typ}{why}; got {v!r} ({type(v).__name__})")

    if typ == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
            return v.strip().lower() in _TRUE
        raise bad(" (true or false)")
    if typ in ("int", "float"):
        number, hint = (int, " (a whole number)") if typ == "int" else (float, " (a number such as 1e-5)")
        if isinstance(v, bool):
            raise bad()
        if typ == "float" and isinstance(v, (int, float, str)) and not math.isfinite(_as_float(v)):
            raise bad(" (a finite number)")  # nan passes every range check; inf and 1e400 overflow
        if isinstance(v, int) or (typ == "float" and isinstance(v, float)):
            return number(v)
        if isinstance(v, float) and v.is_integer():  # an int field given 2.0
            return int(v)
        if isinstance(v, str):
            try:
                return number(v.strip())
            except ValueError:
                raise bad(hint) from None
        raise bad(hint if typ == "int" else "")
    if typ == "str":
        if not isinstance(v, str):
            raise bad()
        return v
    if typ.startswith("tuple"):
        if isinstance(v, str):
            v = tuple(x.strip() for x in v.split(",") if x.strip())
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
            return tuple(v)
        raise bad(" (task names)")
    return v


def _as_float(v) -> float:
    """float(v): inf for an int too large for one, 0.0 where v does not read as one (the type check
    that follows names the key)."""
    try:
        return float(v.strip() if isinstance(v, str) else v)
    except OverflowError:
        return math.inf
    except ValueError:
        return 0.0


def task_values(spec: str, key: str = "value") -> dict[str, float]:
    """Parse "sts=0.2,para=5000" (or "sts:0.2") into {task: number}; a bad entry is an error naming `key`."""
    out: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        task, sep, val = item.replace(":", "=", 1).partition("=")
        try:
            if not sep:
                raise ValueError
            get_task(task.strip())
            out[task.strip()] = float(val)
        except ValueError:
            raise ValueError(f"{key}: cannot read {item!r}; expected task=number with a known task, "
                             f"e.g. 'sts=0.2'") from None
        if not math.isfinite(out[task.strip()]):
            raise ValueError(f"{key}: {item!r} is not a finite number")
    return out


SMOKE = dict(checkpoint="random:tiny", epochs=2, train_limit=32, eval_limit=16, max_length=32, telemetry_every=1)


def smoke_config(**overrides) -> TrainConfig:
    """A run in seconds: a tiny random BERT on a few rows of each task, telemetry on every step. What
    notebook 04 trains when given no runs, and what tests build on (the plan's `smoke` profile is its
    YAML twin)."""
    return TrainConfig(**{**SMOKE, **overrides})
