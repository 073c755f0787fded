"""Scoring a model on a labelled split, and writing the CS224N submission files."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .atomic import atomic_write_text
from .batching import BucketBatchSampler, TokenizedSplit
from .features import FeatureSource
from .multitask import MultitaskBert
from .tasks import get_task, overall_score


class Evaluator:
    """Predictions, metrics and prediction files of every task of a run."""

    def __init__(self, model: MultitaskBert, data: dict[str, dict[str, TokenizedSplit]], features: FeatureSource,
                 tasks: tuple[str, ...], eval_batch_size: int,
                 on_rows: Callable[[str, str, int, int], None] | None = None):
        self.model, self.data, self.features, self.tasks = model, data, features, tasks
        self.eval_batch_size = eval_batch_size
        self.on_rows = on_rows  # progress: (task, split, rows done, rows in all)
        self.last_predictions: dict[str, torch.Tensor] = {}  # task -> the last evaluate()'s predictions

    @torch.no_grad()
    def predict(self, task: str, split: str) -> torch.Tensor:
        """Submitted values (class, 0/1, similarity) for every example of a split, in order."""
        ts = self.data[task][split]
        self.model.eval()
        spec = get_task(task)
        preds = torch.empty(len(ts), dtype=torch.float32)
        done = 0
        for idx in BucketBatchSampler(ts.lengths, self.eval_batch_size, shuffle=False):
            batch = ts.batch(idx)
            with self.features.autocast():
                out = self.model.heads[task](self.features(task, split, batch)).float()
            preds[idx] = spec.predict(out).float().cpu()
            done += len(idx)
            if self.on_rows is not None:
                self.on_rows(task, split, done, len(ts))
        return preds

    def evaluate(self, split: str = "dev") -> dict[str, float]:
        """Each task's metric on a labelled split, plus the overall score where defined."""
        m, self.last_predictions = {}, {}
        for task in self.tasks:
            ts = self.data[task][split]
            self.last_predictions[task] = self.predict(task, split)
            m[task] = get_task(task).metric(self.last_predictions[task], ts.labels.float())
        ov = overall_score(m)
        if ov is not None:
            m["overall"] = ov
        return m

    @staticmethod
    def selection_score(m: dict[str, float]) -> float:
        """What 'best dev' maximises: the overall score, or the mean task metric without it."""
        return m.get("overall", float(np.mean([v for k, v in m.items() if k != "overall"])))

    def write_predictions(self, run_dir: Path, known: dict[tuple[str, str], torch.Tensor] | None = None) -> list[str]:
        """CS224N submission files for dev and test of every task, into run_dir/predictions/. `known`
        holds (task, split) predictions already made by the same weights (the best epoch's dev)."""
        out = []
        for task in self.tasks:
            spec = get_task(task)
            for split in ("dev", "test"):
                if split not in self.data[task]:
                    continue
                preds = (known or {}).get((task, split))
                if preds is None:
                    preds = self.predict(task, split)
                ids = [e.id for e in self.data[task][split].split.examples]
                lines = [f"id \t {spec.pred_header} \n"] + [f"{i} , {spec.format_pred(v)} \n"
                                                            for i, v in zip(ids, preds.tolist())]
                path = run_dir / "predictions" / f"{task}-{split}-output.csv"
                atomic_write_text(path, "".join(lines))
                out.append(str(path.relative_to(run_dir)))
        return out
