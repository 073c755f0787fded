"""The training loop's side jobs as small hook objects: records, progress, checkpoints, stop rules.

`Trainer.run` is the loop (epochs, steps, the dev evaluation); at each event it calls every hook in turn,
as Lightning's callbacks and minGPT's trainer callbacks do. A test or an experiment adds its own hook with
`train(cfg, hooks=[...])` or `Trainer(..., hooks=[...])` instead of patching the trainer.

Every event reaches every rank. A hook that writes does so on rank 0 (`trainer.main`); a hook that runs a
collective (the checkpoint's RNG gather, the stop decision's broadcast) runs it on every rank at the same
event, so the ranks meet in the same order. This module does not import `train` (train imports it):
`trainer` is a minbert_core.train.Trainer, read through its public attributes.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .evaluation import Evaluator
from .progress import ProgressLog
from .run_state import TrainState, load_checkpoint, restore_rng, rng_state, save_best
from .runs import atomic_torch_save, write_csv, write_json
from .tracking import TensorBoardLog, open_tensorboard

Trainer = Any  # a minbert_core.train.Trainer (a name only: importing train here would be a circle)


@dataclass(frozen=True)
class StepInfo:
    """What one optimizer step leaves for the hooks."""

    epoch: int  # 0-based
    step: int  # steps of this epoch done, this one included (where a checkpoint taken now resumes)
    global_step: int  # steps of the run done, this one included
    steps_now: int  # steps this call of run() has done (a resumed run counts from 0)
    losses: dict[str, float]  # per task: the global batch's mean loss, unweighted
    rank_losses: dict[str, float]  # per task: this rank's weighted loss (what the bar shows)
    examples: int  # rows of the global batch
    seconds: float  # the step's wall time, s
    telemetry: list[dict]  # the strategy's gradient-conflict rows; empty on steps that record none


class Hook:
    """One side job of a training run. Every event is a no-op here; a hook overrides those it needs."""

    def on_start(self, trainer: Trainer, global_step: int) -> None:
        """Before run()'s first step; `global_step` steps are already done (a resumed run)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int, step: int) -> None:
        """An epoch (0-based) begins, or resumes after its first `step` steps."""

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        """After each optimizer step."""

    def on_rows(self, trainer: Trainer, task: str, split: str, done: int, rows: int) -> None:
        """During a prediction pass (dev evaluation, prediction files): `done` of the split's `rows` rows."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, dev: dict[str, float] | None, global_step: int) -> None:
        """After the epoch's dev evaluation; `dev` is None on ranks other than 0 (only rank 0 evaluates)."""

    def should_stop(self, trainer: Trainer, epoch: int, dev: dict[str, float] | None) -> str:
        """After on_epoch_end: why the run stops after this epoch ('' to go on); the same on every rank."""
        return ""

    def on_finish(self, trainer: Trainer, metrics: dict) -> None:
        """The run ended. metrics['status']: 'complete' (on rank 0 the content of metrics.json; elsewhere
        status, rank and warnings only) or 'diverged' (with 'error'; TrainingDiverged is raised next)."""


class Records(Hook):
    """history.csv (a row per step, and per epoch its dev scores), telemetry.csv and the TensorBoard event
    files; rank 0 writes them beside each checkpoint (`save`) and at the end, with metrics.json."""

    def __init__(self) -> None:
        self.tensorboard: TensorBoardLog | None = None  # rank 0's event files (opened by on_start)

    def on_start(self, trainer: Trainer, global_step: int) -> None:
        if trainer.main:
            self.tensorboard = open_tensorboard(trainer.run_dir)

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        cfg, st = trainer.cfg, trainer.state
        st.examples, st.train_time = st.examples + info.examples, st.train_time + info.seconds
        st.history.append({"step": info.global_step, "epoch": info.epoch + 1, "kind": "train", "lr": cfg.lr,
                           **{f"loss_{t}": v for t, v in info.losses.items()},  # unweighted
                           "examples_per_s": info.examples / info.seconds})
        st.telemetry += [{"step": info.global_step, "epoch": info.epoch + 1, "strategy": cfg.strategy, **r}
                         for r in info.telemetry]

    def on_epoch_end(self, trainer: Trainer, epoch: int, dev: dict[str, float] | None, global_step: int) -> None:
        if dev is not None:
            trainer.state.history.append({"step": global_step, "epoch": epoch + 1, "kind": "dev",
                                          **{f"dev_{k}": v for k, v in dev.items()}})

    def save(self, trainer: Trainer) -> None:
        """Rank 0: history.csv, telemetry.csv (where there are rows) and the new TensorBoard scalars."""
        st = trainer.state
        write_csv(trainer.run_dir / "history.csv", st.history)
        if st.telemetry:
            write_csv(trainer.run_dir / "telemetry.csv", st.telemetry)
        if self.tensorboard is not None:
            self.tensorboard.log(st.history, st.telemetry)

    def on_finish(self, trainer: Trainer, metrics: dict) -> None:
        if not trainer.main:
            return
        self.save(trainer)
        write_json(trainer.run_dir / "metrics.json", metrics)
        if self.tensorboard is not None and metrics["status"] == "complete":
            self.tensorboard.close(dataclasses.asdict(trainer.cfg), metrics)


class Progress(Hook):
    """On a terminal a tqdm bar per epoch; elsewhere ProgressLog's throttled lines (steps, prediction rows);
    and each epoch's summary line. Rank 0 only (trainer.progress is False on the other ranks)."""

    def __init__(self) -> None:
        self.log: ProgressLog | None = None
        self.bar: Any = None  # the epoch's tqdm bar

    def on_start(self, trainer: Trainer, global_step: int) -> None:
        if trainer.main and not trainer.progress:
            self.log = ProgressLog(trainer.cfg.epochs * trainer.steps_per_epoch, done_steps=global_step)

    def on_epoch_start(self, trainer: Trainer, epoch: int, step: int) -> None:
        if trainer.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=trainer.steps_per_epoch, initial=step, desc=f"epoch {epoch + 1}/{trainer.cfg.epochs}",
                            leave=False, dynamic_ncols=True)

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        if self.log is not None:
            self.log.step(info.global_step, info.epoch + 1, trainer.cfg.epochs, info.losses, info.examples,
                          info.seconds)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({**{t: f"{v:.3f}" for t, v in info.rank_losses.items()},
                                  "ex/s": f"{info.examples / info.seconds:.0f}"})

    def on_rows(self, trainer: Trainer, task: str, split: str, done: int, rows: int) -> None:
        if self.log is not None:
            self.log.rows(f"predicting {task} {split}", done, rows)

    def on_epoch_end(self, trainer: Trainer, epoch: int, dev: dict[str, float] | None, global_step: int) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if dev is not None:
            trainer.say(epoch_line(trainer, epoch, global_step, dev))


def epoch_line(trainer: Trainer, epoch: int, global_step: int, dev: dict[str, float]) -> str:
    """The line printed after each epoch: mean train losses of the epoch, dev scores, examples/s, time."""
    st = trainer.state
    rows = [r for r in st.history if r["kind"] == "train" and r["epoch"] == epoch + 1]
    loss = " ".join(f"{t}={np.mean([r[f'loss_{t}'] for r in rows]):.3f}" for t in trainer.train_tasks) if rows else ""
    devs = " ".join(f"{k}={v:.3f}" for k, v in dev.items())
    rate = st.examples / st.train_time if st.train_time else 0.0
    return (f"epoch {epoch + 1}/{trainer.cfg.epochs} step {global_step} | train loss {loss} | dev {devs} | "
            f"{rate:.0f} ex/s | {time.strftime('%H:%M:%S')}")


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps its resumable state."""
    return run_dir / "checkpoints" / "last.pt"


class Checkpoints(Hook):
    """checkpoints/last.pt (the resumable state) every checkpoint_every steps and after each epoch; the best
    epoch's weights (best.safetensors); last.pt removed when the run completes, unless keep_last."""

    def __init__(self, on_saved: Callable[[Trainer], None] = lambda trainer: None):
        self.on_saved = on_saved  # rank 0, after each last.pt: the records that go beside it

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        every = trainer.cfg.checkpoint_every
        if every and info.global_step % every == 0:
            self.save(trainer, info.epoch, info.step, info.global_step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, dev: dict[str, float] | None, global_step: int) -> None:
        if dev is not None:
            self.keep_best(trainer, epoch, dev)
        self.save(trainer, epoch + 1, 0, global_step)

    @staticmethod
    def keep_best(trainer: Trainer, epoch: int, dev: dict[str, float]) -> None:
        """Where the epoch's dev selection score beats the best so far: record it, keep its dev predictions
        (the dev files need not predict them again) and save its weights."""
        score = Evaluator.selection_score(dev)
        if score > trainer.state.best["score"]:
            trainer.state.best = {"score": score, "epoch": epoch + 1, "dev": dev}
            trainer.best_dev_predictions = {(t, "dev"): p for t, p in trainer.evaluator.last_predictions.items()}
            save_best(trainer.model.state_dict(), trainer.run_dir / "checkpoints")

    def save(self, trainer: Trainer, epoch: int, step_in_epoch: int, global_step: int) -> None:
        """last.pt, written by rank 0 with every rank's RNG state where there are several: the gather is a
        collective, so every rank calls this at the same point."""
        trainer.note_elapsed()
        dist = trainer.dist
        rngs = dist.gather_objects(rng_state()) if dist.enabled else None
        if not trainer.main:
            return
        st = checkpoint_state(trainer, epoch, step_in_epoch, global_step)
        if rngs is not None:
            st.update(rng=rngs, world=dist.world)
        atomic_torch_save(st, last_checkpoint(trainer.run_dir))
        self.on_saved(trainer)

    def on_finish(self, trainer: Trainer, metrics: dict) -> None:
        # only resuming needs last.pt, and a finished run is not resumed; a diverged one keeps its last good one
        if trainer.main and metrics["status"] == "complete" and not trainer.cfg.keep_last:
            last_checkpoint(trainer.run_dir).unlink(missing_ok=True)


def checkpoint_state(trainer: Trainer, epoch: int, step_in_epoch: int, global_step: int) -> dict:
    """The resumable state of a run at a position, as plain types only, so that resuming loads it with
    weights_only=True (no pickled code)."""
    return {"model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "strategy": trainer.strategy.state_dict(),
            "streams": {t: s.state_dict() for t, s in trainer.streams.items()},
            "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            **trainer.state.to_dict(), "rng": rng_state(), "world": 1}


def resume_from(trainer: Trainer, path: Path) -> tuple[int, int, int]:
    """Put the state of the checkpoint at `path` back into the trainer; returns its (epoch, step in epoch,
    global step). Raises ValueError where the file is no checkpoint, or was written by a run on another
    number of processes."""
    st = load_checkpoint(path, trainer.device)
    trainer.model.load_state_dict(st["model"])
    trainer.optimizer.load_state_dict(st["optimizer"])
    trainer.strategy.load_state_dict(st["strategy"])
    for t, s in st["streams"].items():
        trainer.streams[t].load_state_dict(s)
    trainer.state = TrainState.from_dict(st)
    world, now = st.get("world", 1), trainer.dist.world
    if world != now:
        raise ValueError(f"{trainer.run_dir}: its checkpoint was written by a run on {world} process(es); "
                         f"resume it with the same number (torchrun --nproc_per_node {world}), not {now}")
    restore_rng(st["rng"][trainer.dist.rank] if isinstance(st["rng"], list) else st["rng"])
    return st["epoch"], st["step_in_epoch"], st["global_step"]


class StopRules(Hook):
    """target_overall reached, or time_budget_s of training time spent, after an epoch that is not the last:
    rank 0 decides and every rank gets its answer (a broadcast, on every rank)."""

    def should_stop(self, trainer: Trainer, epoch: int, dev: dict[str, float] | None) -> str:
        cfg, st = trainer.cfg, trainer.state
        if not (cfg.target_overall or cfg.time_budget_s) or epoch + 1 >= cfg.epochs:
            return ""
        why = ""
        if trainer.main:
            if cfg.target_overall and dev and dev.get("overall", float("-inf")) >= cfg.target_overall:
                why = f"dev overall {dev['overall']:.4f} reached target_overall {cfg.target_overall:g}"
            elif cfg.time_budget_s and st.train_time >= cfg.time_budget_s:
                why = f"training time {st.train_time:.0f} s passed time_budget_s {cfg.time_budget_s:g}"
        return trainer.dist.broadcast_object(why)


class OnStep(Hook):
    """train()'s `on_step` callback: fn(steps this call of run() has done), after each step and its
    checkpoint (tune's pruning reads history.csv there; tests interrupt a run mid-epoch)."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn = fn

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> None:
        self.fn(info.steps_now)


def default_hooks() -> list[Hook]:
    """The hooks of every run, in the order each event reaches them: records, progress, checkpoints (which
    write the records beside each last.pt; at the end metrics.json is written before last.pt goes), stop rules."""
    records = Records()
    return [records, Progress(), Checkpoints(on_saved=records.save), StopRules()]
