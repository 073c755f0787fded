"""TensorBoard event files for a run, in <run>/tensorboard: what history.csv and telemetry.csv record,
as scalars, and at the end the run's config as hparams with its best dev scores (the HParams view).

`tensorboard --logdir runs` then shows every run of every study. The CSVs stay the record; the event
files are derived from the same rows, written when the run writes its CSVs (each checkpoint and the
end), so training pays no per-step flush. Only rank 0 writes them."""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("minbert.tracking")

FOLDER = "tensorboard"  # inside the run folder
_NOT_SCALARS = {"step", "epoch", "kind"}


def open_tensorboard(run_dir: Path) -> "TensorBoardLog | None":
    """A fresh TensorBoardLog for the run (an earlier attempt's event files are removed: a resumed run
    logs its restored records again, so the files hold exactly its rows); None, with a warning, where
    the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # a run must not fail over its dashboards
        log.warning("no TensorBoard event files for %s: %s; pip install tensorboard", run_dir.name, e)
        return None
    folder = run_dir / FOLDER
    if folder.is_symlink():  # never write (or delete) through a link
        folder.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    # a queue large enough that events are written when the run writes its CSVs, not one by one
    return TensorBoardLog(SummaryWriter(str(folder), max_queue=100_000, flush_secs=3600))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class TensorBoardLog:
    """Writes the run's history and telemetry rows as scalars, each row once, in the order recorded."""

    def __init__(self, writer: "SummaryWriter"):
        self.writer = writer
        self.done_history = 0  # rows of the history already written
        self.done_telemetry = 0

    def log(self, history: list[dict], telemetry: list[dict]) -> None:
        """Write the rows added since the last call, then flush (called where the CSVs are written).

        history rows become `<kind>/<key>` (train/loss_sst, train/lr, train/examples_per_s, dev/sst,
        dev/overall); telemetry rows become conflict/<layer group>/<task a>-<task b> (the cosine of the two
        tasks' gradients), and on the `overall` group grad_norm/<task> and weight/<task> (the strategy's
        weight of the task in the combined direction).
        """
        for row in history[self.done_history:]:
            kind = row.get("kind", "train")
            for k, v in row.items():
                if k not in _NOT_SCALARS and _finite(v):
                    self.writer.add_scalar(f"{kind}/{k.removeprefix(kind + '_')}", v, row["step"])
        seen: set[tuple[int, str]] = set()  # a task is in several pairs: its norm and weight once a step
        for row in telemetry[self.done_telemetry:]:
            self._telemetry_row(row, seen)
        self.done_history, self.done_telemetry = len(history), len(telemetry)
        self.writer.flush()

    def _telemetry_row(self, row: dict, seen: set[tuple[int, str]]) -> None:
        step, a, b = row["step"], row["task_a"], row["task_b"]
        if _finite(row.get("cosine")):
            self.writer.add_scalar(f"conflict/{row['group']}/{a}-{b}", row["cosine"], step)
        if row["group"] != "overall":
            return
        for side, task in (("a", a), ("b", b)):
            for key, tag in (("norm", "grad_norm"), ("weight", "weight")):
                if _finite(row.get(f"{key}_{side}")) and (step, f"{tag}/{task}") not in seen:
                    seen.add((step, f"{tag}/{task}"))
                    self.writer.add_scalar(f"{tag}/{task}", row[f"{key}_{side}"], step)

    def close(self, config: dict, metrics: dict) -> None:
        """The run's config as hparams, with its best dev scores as their metrics (best/<task>), then
        close the files."""
        from torch.utils.tensorboard.summary import hparams

        hp = {k: ",".join(v) if isinstance(v, (list, tuple)) else v for k, v in config.items()}
        hp = {k: v for k, v in hp.items() if isinstance(v, (str, bool, int, float))}
        scores = {f"best/{k}": v for k, v in (metrics.get("best_dev") or {}).items() if _finite(v)}
        step = int(metrics.get("steps") or 0)
        for summary in hparams(hp, scores):
            self.writer.file_writer.add_summary(summary, step)
        for tag, v in scores.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.close()
