"""The one training loop: every experiment of the study (sentiment, multi-task, structure) runs here.

Tasks, heads and gradient strategies are registry entries; nothing in the loop branches on them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .batching import TaskStream
from .build import build_model, build_optimizer, fit_inputs, load_run_data, resolve_device
from .distributed import Dist
from .evaluation import Evaluator
from .features import FeatureSource
from .precision import hardware_record, resolve_precision
from .progress import ProgressLog
from .run_state import TrainState, load_best, load_checkpoint, restore_rng, rng_state, save_best, seed_everything
from .run_folder import COMPLETE, new_run_dir, open_run_folder, run_label  # noqa: F401  (run_label: re-exported)
from .runs import atomic_torch_save, environment, write_csv, write_json
from .step import train_step
from .strategies import NonFiniteLoss, get_strategy
from .tasks import beats_trivial, get_task
from .tracking import TensorBoardLog, open_tensorboard
# the config lives in train_config; re-exported for notebooks and scripts that import it from here
from .train_config import (DEPRECATED_KEYS, SMOKE, TrainConfig, migrate_keys, smoke_config,  # noqa: F401
                           task_values, valid_run_id)


class TrainingDiverged(RuntimeError):
    """A non-finite loss stopped the run; the last good checkpoint is kept."""


class Trainer:
    """Builds data, model, optimizer and strategy for a config, then runs (or resumes) it."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, progress: bool | None = None, dist: Dist | None = None):
        self.cfg, self.run_dir, self.dist = cfg, run_dir, dist or Dist()
        self.main = self.dist.is_main  # only rank 0 evaluates, prints and writes
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.main
        self.progress_log: ProgressLog | None = None  # plain progress lines where there is no bar (set by run)
        self.tensorboard: TensorBoardLog | None = None  # rank 0's event files (opened by run)
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
        self.evaluator = Evaluator(self.model, self.data, self.features, cfg.tasks, cfg.eval_batch_size,
                                   on_rows=self._rows_progress)
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

    def _loss_fn(self, task: str, batch: dict[str, torch.Tensor], share: float = 1.0) -> Callable[[], torch.Tensor]:
        """The task's mean loss on this batch, times its loss weight and this rank's share of the global
        batch (1 in a single process), so that summing gradients over ranks gives the global mean's."""
        spec, w = get_task(task), self.weights[task] * share

        def fn() -> torch.Tensor:
            with self.features.autocast():
                out = self.model.heads[task](self.features(task, "train", batch))
            loss = spec.loss(out.float(), batch["labels"].to(self.device))
            return loss if w == 1.0 else w * loss
        return fn

    # ---- evaluation ---------------------------------------------------------------------------
    def evaluate(self, split: str = "dev") -> dict[str, float]:
        """Each task's metric on a labelled split, plus the overall score where defined."""
        return self.evaluator.evaluate(split)

    def _rows_progress(self, what: str, done: int, total: int) -> None:
        if self.progress_log is not None:
            self.progress_log.rows(what, done, total)

    # ---- checkpoints --------------------------------------------------------------------------
    def _state(self, epoch: int, step_in_epoch: int, global_step: int) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "strategy": self.strategy.state_dict(),
                "streams": {t: s.state_dict() for t, s in self.streams.items()},
                "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                **self.state.to_dict(),
                # plain types only, so resuming loads with weights_only=True (no pickled code)
                "rng": rng_state(), "world": 1}

    def _checkpoint(self, epoch: int, step_in_epoch: int, global_step: int, last: Path) -> None:
        """The resumable state to last.pt (rank 0), with every rank's RNG state when there are several."""
        rngs = self.dist.gather_objects(rng_state()) if self.dist.enabled else None  # a collective: all ranks
        if not self.main:
            return
        st = self._state(epoch, step_in_epoch, global_step)
        if rngs is not None:
            st.update(rng=rngs, world=self.dist.world)
        atomic_torch_save(st, last)
        self._save_records()

    def _restore(self, st: dict) -> tuple[int, int, int]:
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.strategy.load_state_dict(st["strategy"])
        for t, s in st["streams"].items():
            self.streams[t].load_state_dict(s)
        self.state = TrainState.from_dict(st)
        if st.get("world", 1) != self.dist.world:
            raise ValueError(f"{self.run_dir}: its checkpoint was written by a run on {st.get('world', 1)} "
                             f"process(es); resume it with the same number (torchrun --nproc_per_node "
                             f"{st.get('world', 1)}), not {self.dist.world}")
        restore_rng(st["rng"][self.dist.rank] if isinstance(st["rng"], list) else st["rng"])
        return st["epoch"], st["step_in_epoch"], st["global_step"]

    def _save_records(self) -> None:
        write_csv(self.run_dir / "history.csv", self.state.history)
        if self.state.telemetry:
            write_csv(self.run_dir / "telemetry.csv", self.state.telemetry)
        if self.tensorboard is not None:
            self.tensorboard.log(self.state.history, self.state.telemetry)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self, resume: bool = False, on_step: Callable[[int], None] | None = None) -> dict:
        """Train to the end (or from the last checkpoint), then write metrics and predictions.

        on_step(steps this call has run) is called after every step and its checkpoint (tests use it
        to stop a run mid-epoch)."""
        cfg, last = self.cfg, self.run_dir / "checkpoints" / "last.pt"
        epoch, step0, gstep = self._start(resume, last)
        t_start, steps_now = time.perf_counter() - self.state.elapsed, 0
        dev = None  # stays None only when resuming a run whose last epoch had already finished
        try:
            for epoch in range(epoch, cfg.epochs):
                self._train_mode()
                bar = self._bar(epoch, step0)
                for step in range(step0, self.steps_per_epoch):
                    gstep += 1
                    self._step(epoch, gstep, bar, last)
                    steps_now += 1
                    if cfg.checkpoint_every and gstep % cfg.checkpoint_every == 0:
                        self.state.elapsed = time.perf_counter() - t_start
                        self._checkpoint(epoch, step + 1, gstep, last)
                    if on_step is not None:
                        on_step(steps_now)
                if bar is not None:
                    bar.close()
                step0 = 0
                dev = self._end_epoch(epoch, gstep)
                self.state.elapsed = time.perf_counter() - t_start
                self._checkpoint(epoch + 1, 0, gstep, last)
                if self._stop_early(dev, epoch):
                    break
        except KeyboardInterrupt:
            self._say(f"interrupted at step {gstep}; continue with resume (the last checkpoint is {last})")
            raise
        self.state.elapsed = time.perf_counter() - t_start
        self.dist.barrier()  # every rank's last checkpoint contribution is in
        if not self.main:
            return {"status": "complete", "rank": self.dist.rank, "warnings": []}
        return self._finish(dev if dev is not None else self.evaluate("dev"), gstep)

    def _stop_early(self, dev: dict | None, epoch: int) -> bool:
        """target_overall reached, or time_budget_s spent, after this epoch: rank 0 decides for every rank."""
        cfg = self.cfg
        if not (cfg.target_overall or cfg.time_budget_s) or epoch + 1 >= cfg.epochs:
            return False
        why = ""
        if self.main:
            if cfg.target_overall and dev and dev.get("overall", float("-inf")) >= cfg.target_overall:
                why = f"dev overall {dev['overall']:.4f} reached target_overall {cfg.target_overall:g}"
            elif cfg.time_budget_s and self.state.train_time >= cfg.time_budget_s:
                why = f"training time {self.state.train_time:.0f} s passed time_budget_s {cfg.time_budget_s:g}"
        why = self.dist.broadcast_object(why)
        if why:
            self.stop_reason = f"stopped after epoch {epoch + 1} of {cfg.epochs}: {why}"
            self._say(self.stop_reason)
        return bool(why)

    def _start(self, resume: bool, last: Path) -> tuple[int, int, int]:
        """Fresh records, or those of the last checkpoint; returns (epoch, step in epoch, global step)."""
        self.state = TrainState()
        self.best_dev_predictions: dict[tuple[str, str], torch.Tensor] = {}  # filled when an epoch is the best
        epoch = step0 = gstep = 0
        if resume and last.is_file():
            epoch, step0, gstep = self._restore(load_checkpoint(last, self.device))
            self._say(f"resuming {self.run_dir.name} at epoch {epoch + 1}, step {gstep}")
        if not self.progress and self.main:
            self.progress_log = ProgressLog(self.cfg.epochs * self.steps_per_epoch, done_steps=gstep)
        if self.main:
            self.tensorboard = open_tensorboard(self.run_dir)
        return epoch, step0, gstep

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.mode == "pretrain":
            self.model.encoder.eval()  # frozen: no dropout, so its features are fixed

    def _step(self, epoch: int, gstep: int, bar, last: Path) -> None:
        """One optimizer step on one batch of every trained task, and its records."""
        cfg, t0 = self.cfg, time.perf_counter()
        batches = {t: s.next() for t, s in self.streams.items()}
        shares = {t: len(b["index"]) / self.streams[t].last_global for t, b in batches.items()}
        record = cfg.telemetry_every > 0 and (gstep - 1) % cfg.telemetry_every == 0
        loss_fns = {t: self._loss_fn(t, b, shares[t]) for t, b in batches.items()}
        try:
            out = train_step(self.strategy, loss_fns, self.shared, self.model, self.optimizer, self.dist, record)
        except NonFiniteLoss as e:
            self._diverged(f"step {gstep - 1} (epoch {epoch + 1}), {e}", last)
        res, raw = out.result, out.losses
        dt = time.perf_counter() - t0
        n = sum(self.streams[t].last_global for t in batches)  # examples of the global batch
        st = self.state
        st.examples, st.train_time = st.examples + n, st.train_time + dt
        losses = {t: v / self.weights[t] if self.weights[t] else v for t, v in raw.items()}
        self.state.history.append({"step": gstep, "epoch": epoch + 1, "kind": "train", "lr": cfg.lr,
                             **{f"loss_{t}": v for t, v in losses.items()},  # unweighted
                             "examples_per_s": n / dt})
        self.state.telemetry += [{"step": gstep, "epoch": epoch + 1, "strategy": cfg.strategy, **r} for r in res.telemetry]
        if self.progress_log is not None:
            self.progress_log.step(gstep, epoch + 1, cfg.epochs, losses, n, dt)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({**{t: f"{v:.3f}" for t, v in res.losses.items()}, "ex/s": f"{n / dt:.0f}"})

    def _end_epoch(self, epoch: int, gstep: int) -> dict | None:
        """Rank 0 scores dev, keeps the best weights and prints the epoch's line; the other ranks
        wait for it at their next collective."""
        if not self.main:
            return None
        dev = self.evaluate("dev")
        self.state.history.append({"step": gstep, "epoch": epoch + 1, "kind": "dev", **{f"dev_{k}": v for k, v in dev.items()}})
        if Evaluator.selection_score(dev) > self.state.best["score"]:
            self.state.best = {"score": Evaluator.selection_score(dev), "epoch": epoch + 1, "dev": dev}
            # the best weights' dev predictions: the dev submission files need not predict them again
            self.best_dev_predictions = {(t, "dev"): p for t, p in self.evaluator.last_predictions.items()}
            save_best(self.model.state_dict(), self.run_dir / "checkpoints")
        self._say(self._epoch_line(epoch, gstep, dev))
        return dev

    def _finish(self, final_dev: dict, gstep: int) -> dict:
        self.model.load_state_dict(load_best(self.run_dir / "checkpoints", self.device))
        files = self.evaluator.write_predictions(self.run_dir, known=self.best_dev_predictions)
        baselines = {t: {**beats_trivial(t, self.state.best["dev"][t], self.data[t]["dev"].labels.float()),
                         "trained": t in self.train_tasks} for t in self.cfg.tasks}
        for t, b in baselines.items():
            if b["trained"] and not b["learned"]:
                self.warnings.append(
                    f"did not learn {t}: best dev {get_task(t).metric_name} {b['value']:.3f} does not beat the "
                    f"{b['trivial']} baseline {b['baseline']:.3f} by its margin {b['margin']:.3f} "
                    f"({b['rows']} dev rows)")
        metrics = {
            "status": "complete", "best_epoch": self.state.best["epoch"], "best_dev": self.state.best["dev"],
            "baselines": baselines, "learned": all(b["learned"] for b in baselines.values() if b["trained"]),
            "final_dev": final_dev, "metric_names": {t: get_task(t).metric_name for t in self.cfg.tasks},
            "steps": gstep, "wall_time_s": self.state.elapsed, "train_time_s": self.state.train_time,
            "train_examples_per_s": self.state.examples / self.state.train_time if self.state.train_time else None,
            "predictions": files, "warnings": self.warnings, "stopped": self.stop_reason,
        }
        self._save_records()
        write_json(self.run_dir / "metrics.json", metrics)
        if self.tensorboard is not None:
            self.tensorboard.close(dataclasses.asdict(self.cfg), metrics)
        if not self.cfg.keep_last:  # only resuming needs it, and a finished run is not resumed
            (self.run_dir / "checkpoints" / "last.pt").unlink(missing_ok=True)
        return metrics

    def _diverged(self, msg: str, last: Path) -> None:
        kept = f"last good checkpoint kept: {last}" if last.is_file() else "no checkpoint was saved yet"
        if self.main:
            write_json(self.run_dir / "metrics.json", {"status": "diverged", "error": msg, "warnings": self.warnings})
            self._save_records()
        raise TrainingDiverged(f"non-finite loss at {msg}; run stopped ({kept})") from None

    # ---- progress -----------------------------------------------------------------------------
    def _bar(self, epoch: int, start: int):
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                    leave=False, dynamic_ncols=True)

    def _epoch_line(self, epoch: int, gstep: int, dev: dict) -> str:
        rows = [r for r in self.state.history if r["kind"] == "train" and r["epoch"] == epoch + 1]
        loss = " ".join(f"{t}={np.mean([r[f'loss_{t}'] for r in rows]):.3f}" for t in self.train_tasks) if rows else ""
        devs = " ".join(f"{k}={v:.3f}" for k, v in dev.items())
        rate = self.state.examples / self.state.train_time if self.state.train_time else 0.0
        return (f"epoch {epoch + 1}/{self.cfg.epochs} step {gstep} | train loss {loss} | dev {devs} | "
                f"{rate:.0f} ex/s | {time.strftime('%H:%M:%S')}")

    def _say(self, msg: str) -> None:
        if self.main:
            print(msg, flush=True)


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None,
          on_step: Callable[[int], None] | None = None, dist: Dist | None = None) -> Path:
    """Run one experiment into runs_dir/run_id and return its folder.

    resume=True continues the run in runs_dir/run_id from its last checkpoint; its saved config
    must equal `cfg` (a differing key is an error naming it). `dist` (from `Dist.from_env()` under
    torchrun): this process is one rank of the run; rank 0 holds the folder and writes every record.
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
        Trainer(cfg, run_dir, progress=False, dist=dist).run(resume=resume, on_step=on_step)
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
        return _train_locked(cfg, run_dir, resume, progress, on_step, dist)


def _train_locked(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool | None,
                  on_step: Callable[[int], None] | None, dist: Dist) -> Path:
    cfg_file = run_dir / "config.json"
    trainer = Trainer(cfg, run_dir, progress=progress, dist=dist)
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
