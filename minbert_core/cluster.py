"""`minbert study --cluster ADDRESS`: the study's notebooks as tasks of a Dask cluster.

Why Dask (not Ray): a study is a few dozen independent, hour-long notebook executions with a handful
of dependencies, which `Client.submit` with futures as arguments expresses directly; Dask's
scheduler and workers are pure Python, installed by pip alone, start with one command each
(`dask scheduler`, `dask worker ADDRESS --resources GPU=1`) and have a SLURM launcher
(dask-jobqueue). Ray would do too, with a heavier install.

What this assumes: every worker sees the study folder and the data at the same paths (a shared
filesystem; the client passes absolute paths), and has this project installed with the `minbert`
Jupyter kernel. Each task runs its notebook in a fresh Python process (nbclient must own its
process's main thread, which a worker's task thread is not). A task whose worker is lost is run
again by Dask on another worker, and resumes the run from its last checkpoint, as a local study does.
"""
from __future__ import annotations

import json
import subprocess
import sys


def connect(address: str):
    """A Dask client: `local:N` starts N one-thread worker processes here (tests, one big machine)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("--cluster needs Dask's scheduler: pip install -e '.[cluster]' "
                         "(or pip install 'dask[distributed]')") from None
    if address.startswith("local:"):
        n = int(address.split(":", 1)[1])
        return Client(LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None))
    return Client(address)


def run_entry_task(notebook: str, folder: str, params: dict, kernel: str, name: str, needed: list) -> tuple:
    """A cluster task: one plan entry, in a fresh process. `needed` are the results of the runs it
    reads (Dask hands them over once they are done): one that failed fails this one too."""
    failed = [n for n, (status, _, _) in needed if status.startswith("failed")]
    if failed:
        return "failed", f"needs a failed run: {', '.join(failed)}", 0.0
    res = subprocess.run([sys.executable, "-m", "minbert_core.cluster", "--run-entry"], capture_output=True,
                         text=True, input=json.dumps([notebook, folder, params, kernel, name]))
    if res.returncode:
        return "failed", f"{folder}: worker process exited {res.returncode}: {res.stderr.strip()[-500:]}", 0.0
    return tuple(json.loads(res.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":  # the task's own process: python -m minbert_core.cluster --run-entry < [args]
    if sys.argv[1:] == ["--run-entry"]:
        from .notebook_run import run_entry

        print(json.dumps(list(run_entry(*json.loads(sys.stdin.read())))))
    else:
        sys.exit("usage: python -m minbert_core.cluster --run-entry (a cluster task's own process)")
