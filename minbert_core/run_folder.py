"""A run folder's lifecycle checks: its name, its lock, and whether it may be started or resumed.

Beside the run records (runs.py), below the training loop: train() calls these before it builds anything.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from .resume import check_resume, finished_without_state
from .runs import folder_lock, inside, new_run_id, read_json
from .train_config import TrainConfig


def run_label(cfg: TrainConfig) -> str:
    """Default run name: strategy and tasks (and mode for single-task runs)."""
    tasks = "-".join(cfg.tasks)
    return f"{cfg.strategy}-{tasks}" + (f"-{cfg.mode}" if len(cfg.tasks) == 1 else "")


COMPLETE = "complete"  # rank 0's verdict: the run to resume has finished


def check_run_folder(cfg: TrainConfig, run_dir: Path, resume: bool) -> None:
    """Refuse to resume a missing or different run (resume.check_resume), or to overwrite a finished one."""
    if resume:
        check_resume(cfg, run_dir)
    elif (run_dir / "metrics.json").is_file():
        status = read_json(run_dir / "metrics.json", "run record").get("status")  # damaged: an error naming it
        if status == "diverged":
            raise ValueError(f"{run_dir} holds a run that diverged (see its metrics.json); delete the folder to "
                             "start again, or choose another --run-id")
        raise ValueError(f"{run_dir} already holds a finished run; choose another run_id or delete it")


def new_run_dir(cfg: TrainConfig) -> Path:
    """runs_dir/run_id, or, without a run_id, a fresh <time>-<label> folder no other run has taken."""
    run_dir = Path(cfg.runs_dir) / (cfg.run_id or new_run_id(run_label(cfg)))
    if not cfg.run_id:
        base, n = run_dir, 1
        while run_dir.exists():  # two runs started in the same second
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def open_run_folder(cfg: TrainConfig, run_dir: Path, resume: bool, stack: contextlib.ExitStack) -> bool:
    """Check that `run_dir` may hold this run and lock it for the life of `stack`; True when resuming a
    run that already completed. Raises ValueError naming the folder (linked elsewhere, locked by another
    writer, a finished or different run)."""
    inside(run_dir, cfg.runs_dir)  # a linked run folder would take its records elsewhere
    stack.enter_context(folder_lock(run_dir))  # one writer per run folder; a second fails naming the first
    check_run_folder(cfg, run_dir, resume)
    return resume and finished_without_state(run_dir)
