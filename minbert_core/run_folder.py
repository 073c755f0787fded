"""A run folder's lifecycle checks: its name, its lock, and whether it may be started or resumed.

Beside the run records (runs.py), below the training loop: train() calls these before it builds anything.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

from .runs import folder_lock, inside, new_run_id
from .train_config import TrainConfig, migrate_keys


def run_label(cfg: TrainConfig) -> str:
    """Default run name: strategy and tasks (and mode for single-task runs)."""
    tasks = "-".join(cfg.tasks)
    return f"{cfg.strategy}-{tasks}" + (f"-{cfg.mode}" if len(cfg.tasks) == 1 else "")


COMPLETE = "complete"  # rank 0's verdict: the run to resume has finished


def already_complete(run_dir: Path) -> bool:
    """A finished run whose last.pt was removed (keep_last off): resuming it has nothing left to do."""
    metrics = run_dir / "metrics.json"
    if (run_dir / "checkpoints" / "last.pt").is_file() or not metrics.is_file():
        return False
    return json.loads(metrics.read_text()).get("status") == "complete"


# where a run lives and computes, not what it trains: a run folder moved to another machine or path
# (a study continued elsewhere) resumes
_WHERE_KEYS = frozenset({"device", "runs_dir", "data_dir"})


def check_run_folder(cfg: TrainConfig, run_dir: Path, resume: bool) -> None:
    """Refuse to resume a missing or different run, or to overwrite a finished one."""
    cfg_file = run_dir / "config.json"
    if resume and not cfg_file.is_file():
        raise ValueError(f"--resume: {run_dir} holds no run to resume (no config.json); "
                         "drop --resume to start it, or check --run-id and --runs-dir")
    if resume and cfg_file.is_file():
        saved = migrate_keys(json.loads(cfg_file.read_text())["config"], str(cfg_file), warn=False)
        # a field added since the run was saved has its default there: the run trained that way
        saved = json.loads(json.dumps(dataclasses.asdict(TrainConfig()))) | saved
        now = json.loads(json.dumps(dataclasses.asdict(cfg)))
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in _WHERE_KEYS)
        if diff:
            raise ValueError(f"{cfg_file}: config differs from the saved run in {', '.join(diff)}; "
                             "resume with the same settings")
    elif (run_dir / "metrics.json").is_file() and not resume:
        status = json.loads((run_dir / "metrics.json").read_text()).get("status")
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
    return resume and already_complete(run_dir)
