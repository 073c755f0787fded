"""Progress lines for output that is not a terminal: nohup, batch jobs, papermill kernels.

A terminal gets tqdm's bar. Everywhere else a long run would be silent between epochs (on the full
data an epoch is many minutes), so `ProgressLog` prints one plain line at most every `every_s`
seconds: step/total, the mean per-task loss since the last line, examples/s and the ETA of the
remaining training steps; during evaluation, the rows done. Depends on the standard library alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

DEFAULT_EVERY_S = 20.0  # a line at most this often; with steps of a few seconds, gaps stay under 30 s


def progress_every_s() -> float:
    """Seconds between progress lines: `$MINBERT_PROGRESS_EVERY` (0: every step), else 20."""
    raw = os.environ.get("MINBERT_PROGRESS_EVERY", "")
    if not raw:
        return DEFAULT_EVERY_S
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"MINBERT_PROGRESS_EVERY={raw!r}: expected seconds, a number >= 0") from None
    if v < 0:
        raise ValueError(f"MINBERT_PROGRESS_EVERY={raw!r}: expected seconds, a number >= 0")
    return v


def format_duration(s: float) -> str:
    """12 s, 4m05s, 1h02m: short and unambiguous."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProgressLog:
    """Throttled one-line progress for a training run of `total_steps` steps."""

    def __init__(self, total_steps: int, done_steps: int = 0, every_s: float | None = None,
                 say: Callable[[str], None] = lambda m: print(m, flush=True),
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.every = total_steps, progress_every_s() if every_s is None else every_s
        self.say, self.clock = say, clock
        self.t_last = clock()
        self.steps0 = done_steps  # steps done before this process started (a resumed run)
        self._loss_sum: dict[str, float] = {}
        self._loss_n = 0
        self._examples, self._seconds = 0, 0.0  # since the last line: for examples/s
        self._train_s = 0.0  # all step time in this process: for the ETA (evaluation excluded)

    def _due(self) -> bool:
        return self.clock() - self.t_last >= self.every

    def step(self, global_step: int, epoch: int, epochs: int, losses: dict[str, float], examples: int,
             seconds: float) -> None:
        """Account one finished step (its losses, examples and duration); print a line when one is due."""
        self._seconds += seconds
        self._train_s += seconds
        for t, v in losses.items():
            self._loss_sum[t] = self._loss_sum.get(t, 0.0) + float(v)
        self._loss_n += 1
        self._examples += examples
        if not self._due():
            return
        rate = self._examples / self._seconds if self._seconds > 0 else 0.0
        loss = " ".join(f"{t}={v / self._loss_n:.3f}" for t, v in self._loss_sum.items())
        done_here = global_step - self.steps0
        eta_s = format_duration(self._train_s / done_here * (self.total - global_step)) if done_here > 0 else "?"
        pct = 100.0 * global_step / self.total if self.total else 100.0
        self.say(f"step {global_step}/{self.total} ({pct:.0f}%), epoch {epoch}/{epochs} | loss {loss} | "
                 f"{rate:.1f} ex/s | ETA {eta_s} (training steps) | {time.strftime('%H:%M:%S')}")
        self.t_last, self._loss_sum, self._loss_n, self._examples, self._seconds = self.clock(), {}, 0, 0, 0.0

    def rows(self, what: str, done: int, total: int) -> None:
        """During evaluation or prediction: rows done of a split, when a line is due."""
        if self._due():
            self.say(f"{what}: {done}/{total} rows | {time.strftime('%H:%M:%S')}")
            self.t_last = self.clock()
