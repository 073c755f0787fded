"""The one training loop: every experiment of the study (sentiment, multi-task, structure) runs here.

Tasks, heads and gradient strategies are registry entries; nothing in the loop branches on them. The
loop's side jobs (records, progress, checkpoints, stop rules) are hooks (train_hooks), called at its events.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn, Sequence

import torch

from .batching import TaskStream
from .build import build_model, build_optimizer, fit_inputs, load_run_data, resolve_device
from .distributed import Dist
from .evaluation import Evaluator
from .features import FeatureSource
from .multitask import MultitaskBert
from .precision import hardware_record, resolve_precision
from .run_state import TrainState, load_best, seed_everything
from .run_folder import COMPLETE, new_run_dir, open_run_folder, run_label  # noqa: F401  (run_label: re-exported)
from .runs import environment, write_json
from .step import train_step
from .strategies import NonFiniteLoss, get_strategy
from .tasks import beats_trivial, get_task
# the config lives in train_config; re-exported for notebooks and scripts that import it from here
from .train_config import (DEPRECATED_KEYS, SMOKE, TrainConfig, migrate_keys, smoke_config,  # noqa: F401
                           task_values, valid_run_id)
from .train_hooks import Hook, OnStep, StepInfo, default_hooks, last_checkpoint, resume_from


class TrainingDiverged(RuntimeError):
    """A non-finite loss stopped the run; the last good checkpoint is kept."""


class TaskLoss:
    """Builds each step's loss closures: a task's mean loss on its batch, times its loss weight and this
    rank's share of the global batch (1 in a single process), so that summing gradients over ranks gives
    the global mean's. It is the Trainer's `task_loss`; wrap it there to change or poison a task's loss."""

    def __init__(self, model: MultitaskBert, features: FeatureSource, weights: dict[str, float],
                 device: torch.device):
        self.model, self.features, self.weights, self.device = model, features, weights, device

    def __call__(self, task: str, batch: dict[str, torch.Tensor], share: float = 1.0) -> Callable[[], torch.Tensor]:
        """A closure giving `task`'s weighted scalar loss on `batch` (a TaskStream batch with 'labels')."""
        spec, w = get_task(task), self.weights[task] * share

        def fn() -> torch.Tensor:
            with self.features.autocast():
                out = self.model.heads[task](self.features(task, "train", batch))
            loss = spec.loss(out.float(), batch["labels"].to(self.device))
            return loss if w == 1.0 else w * loss
        return fn


class Trainer:
    """Builds data, model, optimizer and strategy for a config, then runs (or resumes) it.

    `hooks` (train_hooks.Hook) see every event of the loop after the default ones (records, progress,
    checkpoints, stop rules); `task_loss` (a TaskLoss) builds each step's loss closures and may be wrapped.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path, progress: bool | None = None, dist: Dist | None = None,
                 hooks: Sequence[Hook] = ()):
        self.cfg, self.run_dir, self.dist = cfg, run_dir, dist or Dist()
        self.main = self.dist.is_main  # only rank 0 evaluates, prints and writes
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.main
        self.hooks: list[Hook] = [*default_hooks(), *hooks]
        self._active = self.hooks  # plus run()'s on_step while it runs
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)  # auto: bf16 where the device has it
        self.strategy = get_strategy(cfg.gradient_strategy, seed=cfg.seed)
        self.train_tasks = cfg.train_tasks
        self.strategy.bind(self.train_tasks)
        self.data, self.data_record, self.warnings = load_run_data(cfg, self.train_tasks)
        self.model = build_model(cfg, self.device)
        self.shared = self.model.shared_groups()
        self.optimizer = build_optimizer(cfg, self.model, self.strategy.parameters())
        self.weights = {t: cfg.weight(t) for t in cfg.tasks}  # parsed once, not on every step
        # a frozen encoder in eval mode is a fixed function: each example is encoded once
        self.features = FeatureSource(self.model, self.data, self.device,
                                      cfg.mode == "pretrain" and cfg.cache_features and not cfg.lstm,
                                      cfg.eval_batch_size, self.precision == "bf16")
        self.task_loss = TaskLoss(self.model, self.features, self.weights, self.device)
        self.evaluator = Evaluator(self.model, self.data, self.features, cfg.tasks, cfg.eval_batch_size,
                                   on_rows=lambda *a: self._emit("on_rows", *a))
        self.streams = {t: TaskStream(self.data[t]["train"], cfg.batch_size, cfg.seed + i, self.dist)
                        for i, t in enumerate(self.train_tasks)}
        n = [len(s.sampler) for s in self.streams.values()]
        self.steps_per_epoch = {"smallest": min(n), "largest": max(n), "fixed": cfg.steps_per_epoch}[cfg.epoch_rule]
        self.state = TrainState()
        self.stop_reason = ""  # why the run stopped before its last epoch (target_overall, time_budget_s)
        if self.dist.enabled:
            self.dist.broadcast_params_(self.model)  # the same start on every rank
            torch.manual_seed(cfg.seed + 7919 * self.dist.rank)  # but each rank its own dropout masks

    @property
    def cached(self) -> bool:
        """Whether heads read cached features (a frozen encoder without a bi-LSTM)."""
        return self.features.cached

    def evaluate(self, split: str = "dev") -> dict[str, float]:
        """Each task's metric on a labelled split, plus the overall score where defined."""
        return self.evaluator.evaluate(split)

    def run(self, resume: bool = False, on_step: Callable[[int], None] | None = None) -> dict:
        """Train to the end (or from the last checkpoint), then write metrics and predictions.

        on_step(steps this call has run) is called after every step and its checkpoint (tests use it
        to stop a run mid-epoch)."""
        self._active = [*self.hooks, *([OnStep(on_step)] if on_step is not None else [])]
        epoch, step0, gstep = self._start(resume)
        steps_now, dev = 0, None  # dev stays None only when resuming a run whose last epoch had already finished
        try:
            for epoch in range(epoch, self.cfg.epochs):
                self._train_mode()
                self._emit("on_epoch_start", epoch, step0)
                for step in range(step0, self.steps_per_epoch):
                    gstep, steps_now = gstep + 1, steps_now + 1
                    self._emit("on_step_end", self._step(epoch, step + 1, gstep, steps_now))
                step0 = 0
                dev = self.evaluate("dev") if self.main else None  # the other ranks wait at the next collective
                self._emit("on_epoch_end", epoch, dev, gstep)
                if self._should_stop(epoch, dev):
                    break
        except KeyboardInterrupt:
            self.say(f"interrupted at step {gstep}; continue with resume (the last checkpoint is "
                     f"{last_checkpoint(self.run_dir)})")
            raise
        self.note_elapsed()
        self.dist.barrier()  # every rank's last checkpoint contribution is in
        metrics = (_run_metrics(self, dev if dev is not None else self.evaluate("dev"), gstep) if self.main
                   else {"status": "complete", "rank": self.dist.rank, "warnings": []})
        self._emit("on_finish", metrics)
        return metrics

    def _start(self, resume: bool) -> tuple[int, int, int]:
        """Fresh records, or those of the last checkpoint; returns (epoch, step in epoch, global step)."""
        self.state, self.stop_reason = TrainState(), ""
        self.best_dev_predictions: dict[tuple[str, str], torch.Tensor] = {}  # filled when an epoch is the best
        epoch = step0 = gstep = 0
        last = last_checkpoint(self.run_dir)
        if resume and last.is_file():
            epoch, step0, gstep = resume_from(self, last)
            self.say(f"resuming {self.run_dir.name} at epoch {epoch + 1}, step {gstep}")
        self.t_start = time.perf_counter() - self.state.elapsed
        self._emit("on_start", gstep)
        return epoch, step0, gstep

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.mode == "pretrain":
            self.model.encoder.eval()  # frozen: no dropout, so its features are fixed

    def _step(self, epoch: int, step: int, gstep: int, steps_now: int) -> StepInfo:
        """One optimizer step on one batch of every trained task; what it leaves for the hooks."""
        cfg, t0 = self.cfg, time.perf_counter()
        batches = {t: s.next() for t, s in self.streams.items()}
        shares = {t: len(b["index"]) / self.streams[t].last_global for t, b in batches.items()}
        record = cfg.telemetry_every > 0 and (gstep - 1) % cfg.telemetry_every == 0
        loss_fns = {t: self.task_loss(t, b, shares[t]) for t, b in batches.items()}
        try:
            out = train_step(self.strategy, loss_fns, self.shared, self.model, self.optimizer, self.dist, record)
        except NonFiniteLoss as e:
            self._diverged(f"step {gstep - 1} (epoch {epoch + 1}), {e}")
        dt = time.perf_counter() - t0
        n = sum(self.streams[t].last_global for t in batches)  # examples of the global batch
        losses = {t: v / self.weights[t] if self.weights[t] else v for t, v in out.losses.items()}
        return StepInfo(epoch, step, gstep, steps_now, losses, out.result.losses, n, dt, out.result.telemetry)

    def _should_stop(self, epoch: int, dev: dict | None) -> bool:
        """Whether a hook stops the run after this epoch (every rank gets the same answer)."""
        why = next((w for h in self._active if (w := h.should_stop(self, epoch, dev))), "")
        if why:
            self.stop_reason = f"stopped after epoch {epoch + 1} of {self.cfg.epochs}: {why}"
            self.say(self.stop_reason)
        return bool(why)

    def _diverged(self, msg: str) -> NoReturn:
        last = last_checkpoint(self.run_dir)
        kept = f"last good checkpoint kept: {last}" if last.is_file() else "no checkpoint was saved yet"
        self._emit("on_finish", {"status": "diverged", "error": msg, "warnings": self.warnings})
        raise TrainingDiverged(f"non-finite loss at {msg}; run stopped ({kept})") from None

    def _emit(self, event: str, *args) -> None:
        for hook in self._active:
            getattr(hook, event)(self, *args)

    def note_elapsed(self) -> None:
        """Record the run's wall time so far (a resumed run's earlier attempts included) in its state."""
        self.state.elapsed = time.perf_counter() - self.t_start

    def say(self, msg: str) -> None:
        """Print a line of the run's output (rank 0 only)."""
        if self.main:
            print(msg, flush=True)


def _run_metrics(tr: Trainer, final_dev: dict, gstep: int) -> dict:
    """Rank 0, after the loop: the best weights' prediction files, each task against its trivial baseline,
    and the run's metrics (metrics.json)."""
    tr.model.load_state_dict(load_best(tr.run_dir / "checkpoints", tr.device))
    files = tr.evaluator.write_predictions(tr.run_dir, known=tr.best_dev_predictions)
    best, st = tr.state.best, tr.state
    baselines = {t: {**beats_trivial(t, best["dev"][t], tr.data[t]["dev"].labels.float()),
                     "trained": t in tr.train_tasks} for t in tr.cfg.tasks}
    for t, b in baselines.items():
        if b["trained"] and not b["learned"]:
            tr.warnings.append(
                f"did not learn {t}: best dev {get_task(t).metric_name} {b['value']:.3f} does not beat the "
                f"{b['trivial']} baseline {b['baseline']:.3f} by its margin {b['margin']:.3f} "
                f"({b['rows']} dev rows)")
    return {
        "status": "complete", "best_epoch": best["epoch"], "best_dev": best["dev"],
        "baselines": baselines, "learned": all(b["learned"] for b in baselines.values() if b["trained"]),
        "final_dev": final_dev, "metric_names": {t: get_task(t).metric_name for t in tr.cfg.tasks},
        "steps": gstep, "wall_time_s": st.elapsed, "train_time_s": st.train_time,
        "train_examples_per_s": st.examples / st.train_time if st.train_time else None,
        "predictions": files, "warnings": tr.warnings, "stopped": tr.stop_reason,
    }


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None,
          on_step: Callable[[int], None] | None = None, dist: Dist | None = None,
          hooks: Sequence[Hook] = ()) -> Path:
    """Run one experiment into runs_dir/run_id and return its folder.

    resume=True continues the run in runs_dir/run_id from its last checkpoint; its saved config
    must equal `cfg` (a differing key is an error naming it). `dist` (from `Dist.from_env()` under
    torchrun): this process is one rank of the run; rank 0 holds the folder and writes every record.
    `hooks`: train_hooks.Hook objects that see the loop's events after the default ones.
    """
    dist = dist or Dist()
    if resume and not cfg.run_id:
        raise ValueError("resume needs run_id (the run folder's name)")
    fit_inputs(cfg)  # before the run folder is made: a checkpoint whose tables cannot take the data fails here
    run_dir = new_run_dir(cfg) if dist.is_main else None
    run_dir = dist.broadcast_object(run_dir)  # every rank: rank 0's folder
    if not dist.is_main:
        error = dist.broadcast_object(None)  # rank 0's verdict on the folder and config
        if error == COMPLETE:
            return run_dir
        if error:
            raise ValueError(error)
        Trainer(cfg, run_dir, progress=False, dist=dist, hooks=hooks).run(resume=resume, on_step=on_step)
        return run_dir
    with contextlib.ExitStack() as stack:
        try:
            done = open_run_folder(cfg, run_dir, resume, stack)
        except Exception as e:
            dist.broadcast_object(str(e))  # the other ranks stop with the same error instead of waiting
            raise
        dist.broadcast_object(COMPLETE if done else None)
        if done:
            print(f"{run_dir.name}: already complete (see its metrics.json); nothing to resume", flush=True)
            return run_dir
        return _train_locked(cfg, run_dir, resume, progress, on_step, dist, hooks)


def _train_locked(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool | None,
                  on_step: Callable[[int], None] | None, dist: Dist, hooks: Sequence[Hook]) -> Path:
    cfg_file = run_dir / "config.json"
    trainer = Trainer(cfg, run_dir, progress=progress, dist=dist, hooks=hooks)
    params = sum(p.numel() for p in trainer.model.parameters())
    write_json(cfg_file, {
        "config": dataclasses.asdict(cfg),
        "resolved": {"lr": cfg.lr, "train_tasks": list(trainer.train_tasks),
                     "steps_per_epoch": trainer.steps_per_epoch, "feature_cache": trainer.cached,
                     "precision": trainer.precision},
        "model": {"encoder": dataclasses.asdict(trainer.model.encoder.config), "parameters": params,
                  "trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)},
        "environment": {**environment(trainer.device), **hardware_record(trainer.device), "world_size": dist.world},
        "data": trainer.data_record,
    })
    metrics = trainer.run(resume=resume, on_step=on_step)
    for w in metrics["warnings"]:
        if w.startswith("did not learn"):
            print(f"warning: {run_dir.name}: {w}", file=sys.stderr, flush=True)
    return run_dir
