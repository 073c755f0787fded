"""Resuming a run from its own record: `--run-id X --resume` reads X's recorded config, and a setting
given again must equal the record unless it is one a resumed run may change."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from .train_config import TrainConfig

# What a resumed run may change, each with why that is safe. Everything else decides what the run
# trains (data, model, optimizer, strategy, seeds), so a different value would make a different run.
MAY_CHANGE = {
    "epochs": "extend a run (not shorten it): the loop continues from the checkpoint's epoch",
    "target_overall": "a stopping rule, read after each epoch",
    "time_budget_s": "a stopping rule, read after each epoch",
    "checkpoint_every": "how often the state is saved, not what is trained",
    "keep_last": "whether last.pt is kept once the run completes (keep it to extend the run later)",
    "device": "where the run computes",
    "runs_dir": "where the run folder lives: a folder moved to another machine or path resumes there",
    "data_dir": "where the data files are read from (the same files)",
}


def flag(key: str) -> str:
    """The command-line flag of a TrainConfig key: batch_size -> --batch-size."""
    return "--" + key.replace("_", "-")


def _plain(cfg: Any) -> dict:
    """A config dataclass as JSON types (tuples as lists), as config.json holds it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def recorded_config(run_dir: Path) -> dict:
    """The config a run recorded in its config.json, keys renamed since under their new names, and
    fields added since at their defaults (the run trained that way).

    Raises ValueError where the folder holds no run record to resume.
    """
    from .runs import read_json
    from .train_config import recorded_fields

    f = run_dir / "config.json"
    if not f.is_file():
        raise ValueError(f"--resume: {run_dir} holds no run to resume (no config.json); drop --resume to "
                         "start it, or check --run-id and --runs-dir")
    rec = read_json(f, "run record")
    if not isinstance(rec.get("config"), dict):
        raise ValueError(f"{f}: no 'config' object; not a run record written by training, so it cannot resume")
    return recorded_fields(rec["config"], str(f))


def resume_config(run_id: str, given: Mapping[str, Any]) -> "TrainConfig":
    """The TrainConfig to resume run `run_id` with: its recorded config, with the settings `given`
    (command-line flags) over it. `given` may hold runs_dir (default: TrainConfig's); check_resume
    later refuses a given setting that differs from the record unless MAY_CHANGE allows it."""
    from .config import override
    from .train_config import TrainConfig

    if not run_id:
        raise ValueError("--resume needs --run-id (the run folder's name inside --runs-dir)")
    runs_dir = given.get("runs_dir") or TrainConfig.runs_dir
    TrainConfig(run_id=run_id)  # a run id that is not one safe folder name is refused before any file is read
    saved = recorded_config(Path(runs_dir) / run_id)
    return override(TrainConfig.from_dict({**saved, "runs_dir": runs_dir, "run_id": run_id}), dict(given))


def check_resume(cfg: "TrainConfig", run_dir: Path) -> None:
    """Refuse to resume `run_dir` with a config it was not trained with: every differing key named with
    its flag and both values; MAY_CHANGE's keys may differ (epochs only upwards).

    A finished run whose last.pt is gone (keep_last off) cannot be extended: an error says so.
    """
    saved, now = recorded_config(run_dir), _plain(cfg)
    bad = []
    for k in sorted(set(saved) | set(now)):
        was, given = saved.get(k), now.get(k)
        if was == given or (k in MAY_CHANGE and not (k == "epochs" and given < was)):
            continue
        if k == "precision":
            resolved, arithmetic = _same_arithmetic(run_dir, was, given, now["device"])
            if resolved == arithmetic:
                continue
            given = f"{given} ({arithmetic} here)" if given == "auto" else given
            was = f"{was} ({resolved})" if was == "auto" else was
            bad.append(f"{k} ({flag(k)}: recorded {was}, given {given})")
            continue
        bad.append(f"{k} ({flag(k)}: recorded {was!r}, given {given!r})")
    if bad:
        allowed = ", ".join(flag(k) for k in MAY_CHANGE)
        raise ValueError(f"{run_dir / 'config.json'}: config differs from the saved run in {'; '.join(bad)}; "
                         f"resume with --run-id alone (it reads the recorded config), changing at most {allowed} "
                         "(--epochs only upwards)")
    if now["epochs"] > saved["epochs"] and finished_without_state(run_dir):
        raise ValueError(f"{run_dir}: cannot extend it to {now['epochs']} epochs: it finished its "
                         f"{saved['epochs']} and removed checkpoints/last.pt (keep_last off); start a new run "
                         "with --keep-last true to extend it later")


def _same_arithmetic(run_dir: Path, was: str, given: str, device: str) -> tuple[str, str]:
    """(what the run's precision resolved to, what `given` resolves to on `device`): a precision may be
    given differently on resume when it means the same arithmetic ('auto' for a run recorded at fp32, on a
    machine where auto is fp32), never when it changes it mid-run. A record from before `auto` resolved to
    its configured value."""
    from .build import resolve_device
    from .precision import resolve_precision
    from .runs import read_json

    resolved = read_json(run_dir / "config.json", "run record").get("resolved", {}).get("precision", was)
    return resolved, resolve_precision(given, resolve_device(device))


def finished_without_state(run_dir: Path) -> bool:
    """A finished run whose last.pt was removed (keep_last off): resuming it has nothing left to do. A
    metrics.json that is missing or unreadable (cut short) is not a finished run."""
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return False
    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("status") == "complete"
    except (OSError, ValueError, AttributeError):  # AttributeError: JSON that is not an object
        return False
