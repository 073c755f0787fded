"""Run folders: every file written atomically; what a run used (config, versions, data) recorded; and
read back, every damage found named by its file."""
from __future__ import annotations

import csv
import errno
import io
import json
import logging
import math
import os
import platform
import re
import stat
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch

from .atomic import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # the reading side only; training writes its records without pandas
    import pandas as pd


def write_json(path: str | Path, obj: Any) -> None:
    """Pretty JSON, atomically (non-finite floats become null so the file stays valid JSON)."""
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def _finite(o: Any) -> Any:
    if isinstance(o, float) and (o != o or o in (float("inf"), float("-inf"))):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_csv(path: str | Path, rows: Iterable[dict]) -> None:
    """A CSV with the union of the rows' keys as header, atomically."""
    rows = list(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through a temporary file and a rename."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def git_commit() -> str | None:
    """The commit of the code that ran (with '+dirty' for uncommitted changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, machine and device a run used."""
    import transformers

    from . import __version__

    env = {"minbert": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
           "git_commit": git_commit(), "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def new_run_id(label: str) -> str:
    """A sortable, unique-enough run folder name: <UTC time>-<label>."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{label}"



def inside(folder: str | Path, parent: str | Path, what: str = "run") -> Path:
    """`folder`, once it resolves inside `parent` and no link in it points out of it.

    A run folder that is a symlink to somewhere else (or holds one, e.g. `checkpoints/`) would get
    every record written there; git can commit such a link. Raises ValueError naming the link.
    """
    folder, root = Path(folder), Path(parent).resolve()
    real = folder.resolve()
    if root not in real.parents:
        raise ValueError(f"{folder}: this {what} folder resolves to {real}, outside {root}; a {what} folder must "
                         "lie inside its parent folder: remove the link (or pick another folder) and run again")
    for base, dirs, files in os.walk(real):  # does not follow links: each link is judged here
        for name in dirs + files:
            link = Path(base) / name
            if link.is_symlink() and real not in link.resolve().parents:
                raise ValueError(f"{link}: a link out of the {what} folder {folder} (to {link.resolve()}); "
                                 "records would be written there: remove the link and run again")
    return folder


# what a lock file holds: the PID of its last holder, or nothing yet
_LOCK_TEXT = re.compile(rb"\s*(\d+\s*)?")
_LOCK_MAX = 64  # bytes: more than any lock file of ours


def _open_lock_file(path: Path) -> int:
    """A read-write descriptor of the lock file `path`, created here or one a lock created before.

    Never through a symlink (O_NOFOLLOW), and never a file that is not ours to rewrite: a directory,
    a FIFO, a device, a file with a second name (hard link) or with other content is refused.
    """
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # NONBLOCK: a FIFO
    try:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, flags)
    except OSError as e:
        what = {errno.ELOOP: "is a symbolic link", errno.EISDIR: "is a directory"}.get(e.errno, e.strerror)
        raise ValueError(f"{path}: {what}; a folder's lock must be a regular file (nothing was written): "
                         "remove it and run again") from None
    st = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(st.st_mode) else
               f"has {st.st_nlink} names (a hard link)" if st.st_nlink > 1 else
               "holds something other than a PID" if st.st_size > _LOCK_MAX
               or not _LOCK_TEXT.fullmatch(os.pread(fd, _LOCK_MAX, 0)) else "")
    if problem:
        os.close(fd)
        raise ValueError(f"{path}: {problem}, so it is not a lock file of this project and was left untouched; "
                         "move it away and run again")
    return fd


@contextmanager
def folder_lock(folder: str | Path, what: str = "run"):
    """Hold an exclusive lock on `folder` (its `.lock` file) while the block runs.

    A second process asking for the same folder fails at once with an error naming the holder's PID.
    The lock is the kernel's (flock): it goes away with the process that held it, so a killed run
    leaves no stale lock behind and can be resumed. `.lock` is never opened through a symlink, and
    its content (the holder's PID) is only rewritten where it is a lock file: a `.lock` linked to a
    committed file destroys nothing (ValueError naming it).
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(folder / ".lock")
    with os.fdopen(fd, "r+") as f:  # closing releases the lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = f.read(_LOCK_MAX).strip() or "unknown"
            raise ValueError(f"{folder}: this {what} folder is in use by process {holder}; wait for it to finish "
                             "or choose another folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield folder


# --- Reading run records back: every damage found names its file --------------------------------------------

log = logging.getLogger("minbert.runs")

# The range each metric can take; a recorded value outside it is refused (a damaged record or a bug)
METRIC_RANGES: dict[str, tuple[float, float]] = {"acc": (0.0, 1.0), "pearson": (-1.0, 1.0), "overall": (0.0, 1.0)}
HISTORY_TEXT = ("kind",)  # history.csv's non-numeric columns; every other one must hold numbers
TELEMETRY_TEXT = ("strategy", "group", "task_a", "task_b", "projected_a", "projected_b")
TELEMETRY_COLUMNS = ("step", "group", "task_a", "task_b", "cosine", "norm_a", "norm_b", "projected_a", "projected_b")


@dataclass
class RunRecord:
    """A run folder, loaded. `scores` holds best_dev's checked values only; `problems` says, naming the
    file, what was left out of it (a null or non-finite metric, one outside its range, a cut CSV line)."""

    path: Path
    config: dict
    metrics: dict
    history: pd.DataFrame
    telemetry: pd.DataFrame | None
    scores: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> dict:
        """The run's TrainConfig fields: renamed keys migrated (records from before a rename), and fields
        added since at their defaults (the run trained that way), so that an old record and a new one of the
        same setting read alike."""
        from .train_config import recorded_fields

        return recorded_fields(self.config["config"], str(self.path))


@dataclass
class StudyRecords:
    """A study folder, read: its plan record (study.json), its complete runs by name, and the runs left
    out because their records are damaged, each with why (naming the file)."""

    study: dict
    runs: dict[str, RunRecord]
    skipped: dict[str, str]
    folder: Path = Path(".")


def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`; a damaged (e.g. cut short) or non-object file is a ValueError naming it."""
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e}); the {what} is damaged (cut short?): "
                         "rewrite it by running again, or remove the folder") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a JSON object; not a {what}")
    return obj


def checked_scores(metrics: dict, where: Path) -> tuple[dict[str, float], list[str]]:
    """best_dev's values that are finite numbers within their metric's range (METRIC_RANGES), and a line
    per value left out. A null is what write_json leaves of a NaN or infinity (a diverged run)."""
    from .tasks import TASKS

    best, names = metrics.get("best_dev"), metrics.get("metric_names") or {}
    if not isinstance(best, dict):
        return {}, [f"{where}: no best_dev scores; the record is damaged: every metric left out"]
    scores, problems = {}, []
    for key, v in best.items():
        metric = "overall" if key == "overall" else names.get(key) or getattr(TASKS.get(key), "metric_name", None)
        lo, hi = METRIC_RANGES.get(metric, (-math.inf, math.inf))
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            problems.append(f"{where}: best_dev.{key} is {json.dumps(v)}, not a number (null: it was NaN or "
                            "infinite): left out")
        elif not math.isfinite(v):
            problems.append(f"{where}: best_dev.{key} is {v}, not finite: left out")
        elif not lo <= v <= hi:
            problems.append(f"{where}: best_dev.{key} = {v} is outside [{lo:g}, {hi:g}], the range of {metric}: "
                            "refused")
        else:
            scores[key] = float(v)
    return scores, problems


def _unscored(tasks: list[str], metrics: dict, where: Path) -> list[str]:
    """A line per score the run should have (each task it ran; overall with SST, PD and STS) that
    best_dev lacks: left out as a null is, not silently."""
    best = metrics.get("best_dev")
    if not isinstance(best, dict):
        return []  # said by checked_scores
    expected = list(tasks) + (["overall"] if {"sst", "para", "sts"} <= set(tasks) else [])
    return [f"{where}: best_dev has no {k}, which the run scores (config.json tasks): left out"
            for k in expected if k not in best]


def read_csv_checked(path: Path, text_columns: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str]]:
    """A run's CSV (history, telemetry): a last line cut mid-line (no line end: the writer was stopped) is
    left out and said; any other ragged line, or a non-number in a numeric column, is a ValueError
    naming the file and the line."""
    import pandas as pd

    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not text ({e}); the file is damaged: rerun the run") from None
    problems = []
    if text and not text.endswith("\n"):
        kept = text[:text.rfind("\n") + 1]
        problems.append(f"{path}: line {kept.count(chr(10)) + 1} is cut mid-line (the file ends without a line "
                        "end): left out")
        text = kept
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path}: no header line; the file is damaged (cut short?): rerun the run")
    for row in reader:
        if len(row) != len(header):
            raise ValueError(f"{path}: line {reader.line_num} has {len(row)} fields, the header {len(header)}; "
                             "the file is damaged: rerun the run")
    df = pd.read_csv(io.StringIO(text))
    for col in df.columns:
        if col not in text_columns and not pd.api.types.is_numeric_dtype(df[col]):
            bad = pd.to_numeric(df[col], errors="coerce").isna() & df[col].notna()
            line = int(bad.to_numpy().argmax()) + 2  # +1 for the header, +1 from 0-based
            raise ValueError(f"{path}: line {line}, column {col}: {df[col][bad].iloc[0]!r} is not a number; "
                             "the file is damaged: rerun the run")
    return df, problems


def read_telemetry(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """telemetry.csv, checked as read_csv_checked does, with every column the explorer plots present."""
    df, problems = read_csv_checked(path, TELEMETRY_TEXT)
    missing = [c for c in TELEMETRY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)}; not a telemetry file written by training")
    df["group"] = df["group"].astype(str)
    return df, problems


def load_run(path: str | Path) -> RunRecord:
    """Load a run folder. A missing file is a FileNotFoundError naming it; a damaged one a ValueError
    naming it; metrics and CSV lines left out are in the record's `problems`."""
    path = Path(path)
    for f in ("config.json", "metrics.json", "history.csv"):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f}: not found; is {path} a finished run folder?")
    config = read_json(path / "config.json", "run record")
    if not isinstance(config.get("config"), dict):
        raise ValueError(f"{path / 'config.json'}: no 'config' object; not a run record written by training")
    metrics = read_json(path / "metrics.json", "run record")
    scores, problems = checked_scores(metrics, path / "metrics.json")
    problems += _unscored(config["config"].get("tasks") or [], metrics, path / "metrics.json")
    history, cut = read_csv_checked(path / "history.csv", HISTORY_TEXT)
    tele = None
    if (path / "telemetry.csv").is_file():
        tele, cut_t = read_telemetry(path / "telemetry.csv")
        cut += cut_t
    for p in problems + cut:
        log.warning(p)
    return RunRecord(path, config, metrics, history, tele, scores, problems + cut)


def read_study_json(study_dir: Path) -> dict:
    """study.json of a study folder, checked to be one `minbert study` wrote (a 'runs' list of named runs)."""
    f = study_dir / "study.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: not found; run `minbert study` first")
    study = read_json(f, "study record")
    runs = study.get("runs")
    if not isinstance(runs, list):
        raise ValueError(f"{f}: no 'runs' list; not a study record written by `minbert study`: "
                         "point the report at a study folder")
    for i, e in enumerate(runs):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise ValueError(f"{f}: runs[{i}] has no run name; the study record is damaged: "
                             "run `minbert study` again to rewrite it")
    return study


def load_study(study_dir: str | Path) -> StudyRecords:
    """The study's plan record and every complete run in it; a run whose record is damaged is left out
    and listed in `skipped` with why, and the others are read."""
    study_dir = Path(study_dir)
    study = read_study_json(study_dir)
    runs, skipped = {}, {}
    for e in study["runs"]:
        p = study_dir / e["name"]
        if not all((p / f).is_file() for f in ("metrics.json", "config.json", "history.csv")):
            continue  # not run yet, or not a training run: the report lists the planned ones as missing
        try:
            rec = load_run(p)
        except (ValueError, FileNotFoundError) as err:
            skipped[e["name"]] = str(err)
            log.warning("%s: left out of the report: %s", e["name"], err)
            continue
        if rec.metrics.get("status") == "complete":
            runs[e["name"]] = rec
    return StudyRecords(study, runs, skipped, study_dir)
