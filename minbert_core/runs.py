"""Run folders: every file written atomically; what a run used (config, versions, data) recorded."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import platform
import re
import stat
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
