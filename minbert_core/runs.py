"""Run folders: every file written atomically; what a run used (config, versions, data) recorded."""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import torch

from .atomic import atomic_write_bytes, atomic_write_text


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



@contextmanager
def folder_lock(folder: str | Path, what: str = "run"):
    """Hold an exclusive lock on `folder` (its `.lock` file) while the block runs.

    A second process asking for the same folder fails at once with an error naming the holder's PID.
    The lock is the kernel's (flock): it goes away with the process that held it, so a killed run
    leaves no stale lock behind and can be resumed.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / ".lock", "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise ValueError(f"{folder}: this {what} folder is in use by process {holder}; wait for it to finish "
                             "or choose another folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield folder
    finally:
        f.close()  # closing releases the lock
