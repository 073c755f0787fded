"""The study's tasks: what each predicts, its loss, its metric and its submission-file header."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


def accuracy(pred: torch.Tensor, gold: torch.Tensor) -> float:
    """Share of exact matches."""
    return (pred == gold).float().mean().item()


def majority_baseline(gold: torch.Tensor) -> tuple[float, float]:
    """Accuracy of always predicting the most frequent label, and 2 standard errors of it."""
    n = len(gold)
    p = torch.unique(gold, return_counts=True)[1].max().item() / n if n else 0.0
    return p, 2.0 * math.sqrt(p * (1.0 - p) / n) if n else 0.0


def zero_correlation_baseline(gold: torch.Tensor) -> tuple[float, float]:
    """r = 0 (a constant or unrelated prediction), and 2 standard errors of r under no correlation."""
    n = len(gold)
    return 0.0, 2.0 / math.sqrt(max(n - 1, 1))


def pearson(pred: torch.Tensor, gold: torch.Tensor) -> float:
    """Pearson correlation; 0.0 where either side is constant (correlation undefined)."""
    p, g = pred.double() - pred.double().mean(), gold.double() - gold.double().mean()
    denom = p.norm() * g.norm()
    return (p @ g / denom).item() if denom > 0 else 0.0


@dataclass(frozen=True)
class TaskSpec:
    """How one task turns head outputs into a loss, a prediction and a score."""

    key: str
    pair: bool  # sentence pair (para, sts) or single sentence
    out_dim: int  # head output width: classes, or 1 for a logit / a score
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor], torch.Tensor]  # head output -> submitted value
    metric_name: str
    metric: Callable[[torch.Tensor, torch.Tensor], float]
    pred_header: str  # second column name of the CS224N prediction file
    # gold labels -> (trivial predictor's metric, the margin a run must beat it by to count as learned)
    trivial: Callable[[torch.Tensor], tuple[float, float]]
    trivial_name: str  # what the trivial predictor is, for reports
    label: str  # display name in figures ("SST-5")
    short: str  # column name in tables ("SST")
    metric_label: str  # the metric in words, for axes
    format_pred: Callable[[float], str] = lambda v: str(int(v))  # a submitted value as the file writes it
    bi_head: str = ""  # head for sentences encoded apart ('bi'): '' (plain MLP), 'pair_diff' or 'cosine'
    head_of: str | None = None  # the task whose head this task uses (weight tying); None: a head of its own


def _ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def _argmax(out: torch.Tensor) -> torch.Tensor:
    return out.argmax(-1)


TASKS: dict[str, TaskSpec] = {
    "sst": TaskSpec("sst", False, 5, _ce, _argmax, "acc", accuracy, "Predicted_Sentiment",
                   majority_baseline, "majority class", "SST-5", "SST", "accuracy"),
    "cfimdb": TaskSpec("cfimdb", False, 2, _ce, _argmax, "acc", accuracy, "Predicted_Sentiment",
                       majority_baseline, "majority class", "CFIMDB", "CFIMDB", "accuracy"),
    # one logit, binary cross-entropy; label 1 = paraphrase
    "para": TaskSpec("para", True, 1,
                     lambda o, y: F.binary_cross_entropy_with_logits(o.squeeze(-1), y.float()),
                     lambda o: (o.squeeze(-1) > 0).long(), "acc", accuracy, "Predicted_Is_Paraphrase",
                     majority_baseline, "majority class", "Quora", "PD", "accuracy", bi_head="pair_diff"),
    # a similarity score on 0..5, mean squared error; header spelled as upstream spells it
    "sts": TaskSpec("sts", True, 1, lambda o, y: F.mse_loss(o.squeeze(-1), y.float()),
                    lambda o: o.squeeze(-1).clamp(0.0, 5.0), "pearson", pearson, "Predicted_Similiary",
                    zero_correlation_baseline, "r = 0", "STS-B", "STS", "Pearson r",
                    format_pred=lambda v: f"{v:.4f}", bi_head="cosine"),
}
# Table 5's "more SST signal" condition: SST with its labels reversed (y -> 4 - y) on the same sentences,
# scored like SST against its own labels. Not a conflict control: its own head absorbs the reversal (it
# learns the mirrored mapping), so the encoder sees SST's sentiment signal twice. Measured on the cpu study's
# t5-control-sum (telemetry.csv, group 'overall'): the sst/sst_rev encoder cosine has median +0.013 and is
# negative on 7 of its 15 recorded steps (47%), no more conflict than any other pair.
TASKS["sst_rev"] = dataclasses.replace(TASKS["sst"], key="sst_rev", label="SST-5 reversed", short="SST-rev")
# The positive control for gradient conflict: the same reversed labels read through SST's own head (tied
# weights), so one head must map a sentence to y for SST and to 4 - y for this task, and the encoder is pulled
# both ways along the polarity the head reads (its rows for y against 4 - y). Neutral sentences (2 -> 2)
# agree, and so does fitting the label shares (nearly symmetric in SST): a random head shows little conflict.
TASKS["sst_rev_tied"] = dataclasses.replace(TASKS["sst_rev"], key="sst_rev_tied", label="SST-5 reversed, SST's head",
                                            short="SST-rev (tied)", head_of="sst")


def display_label(key: str) -> str:
    """Figure label of a task (its name and metric) or of the overall score."""
    if key == "overall":
        return "overall\nscore"
    spec = TASKS.get(key)
    return f"{spec.label}\n({spec.metric_label})" if spec else key


def get_task(key: str) -> TaskSpec:
    """Look a task up; an unknown key is an error naming the known ones."""
    if key not in TASKS:
        raise ValueError(f"unknown task {key!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


def head_owners(tasks: Sequence[str]) -> dict[str, str]:
    """Which task's head each task uses: itself, or the task its TaskSpec.head_of names (weight tying).

    Raises ValueError naming both tasks where a tied task's owner is not among `tasks`, has a head of a
    different shape (output width, sentence or pair), or is itself tied to another.
    """
    out = {}
    for t in tasks:
        owner = get_task(t).head_of
        if owner is None:
            out[t] = t
            continue
        spec, own = get_task(t), get_task(owner)
        if owner not in tasks:
            raise ValueError(f"task {t!r} uses the head of task {owner!r} (head_of), but {owner!r} is not among "
                             f"the tasks {list(tasks)}: add {owner!r} to tasks, or drop {t!r}")
        if own.head_of is not None or (own.out_dim, own.pair, own.bi_head) != (spec.out_dim, spec.pair, spec.bi_head):
            raise ValueError(f"task {t!r} cannot use the head of task {owner!r} (head_of): {owner!r} must have a head "
                             "of its own with the same output width and input (sentence or pair); fix TASKS")
        out[t] = owner
    return out


def overall_score(metrics: dict[str, float]) -> float | None:
    """The CS224N leaderboard score (sst_acc + para_acc + (sts_r + 1) / 2) / 3, where all three exist."""
    if not {"sst", "para", "sts"} <= set(metrics):
        return None
    return (metrics["sst"] + metrics["para"] + (metrics["sts"] + 1) / 2) / 3


def beats_trivial(task: str, value: float, gold: torch.Tensor) -> dict:
    """Did a dev metric beat the task's trivial predictor on these rows?

    The margin is 2 standard errors of the trivial predictor's metric on the evaluated rows
    (binomial for the majority class, 1/sqrt(n-1) for r = 0): a one-sided test at about 2%.
    """
    spec = get_task(task)
    base, margin = spec.trivial(gold)
    return {"trivial": spec.trivial_name, "baseline": base, "margin": margin, "rows": len(gold),
            "value": value, "learned": bool(value > base + margin)}
