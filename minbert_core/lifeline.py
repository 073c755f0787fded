"""Processes that die with the study that started them.

A study's pool workers, Jupyter kernels and cluster-task processes are children (or grandchildren)
of one `minbert study`. Killed with SIGKILL, a parent cannot clean up, so each child asks the
kernel itself (Linux's PR_SET_PDEATHSIG) to be killed when its parent dies: no orphan goes on
running queued notebooks or holding a run folder's lock. Elsewhere this is a no-op.

`python -I minbert_core/lifeline.py PID CMD...` runs CMD in this process (exec) with that signal
set, for programs started by code we do not own (jupyter_client's kernel launcher); PID is the
parent expected, so a parent that died before the signal was set is noticed too. It runs as a
script, not `-m`, so that it starts in milliseconds (the package's __init__ imports torch).
"""
from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Have this process sent `sig` when its parent process dies (Linux; elsewhere nothing).

    parent_pid: the parent expected; where the process has already been re-parented (its parent
    died before this call), it exits at once with status 1 instead.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def pool_worker_init() -> None:
    """A study's pool worker: killed with the study, and deaf to Ctrl-C (the study stops it itself,
    so one message is printed, not a traceback per worker)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def wrap(cmd: list[str]) -> list[str]:
    """`cmd` run through this module: it dies with the calling process (Linux; elsewhere `cmd` as is)."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-I", os.path.abspath(__file__), str(os.getpid()), *cmd]


if __name__ == "__main__":  # python -I minbert_core/lifeline.py PARENT_PID CMD [ARGS...]
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit("usage: python -I minbert_core/lifeline.py PARENT_PID CMD [ARGS...]")
    die_with_parent(int(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
