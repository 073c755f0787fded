"""`minbert study --cluster ADDRESS`: the study's notebooks as tasks of a Dask cluster.

Why Dask (not Ray): a study is a few dozen independent, hour-long notebook executions with a handful
of dependencies, which `Client.submit` with futures as arguments expresses directly; Dask's
scheduler and workers are pure Python, installed by pip alone, start with one command each
(`dask scheduler`, `dask worker ADDRESS --resources GPU=1`) and have a SLURM launcher
(dask-jobqueue). Ray would do too, with a heavier install.

What this assumes: every worker sees the study folder and the data at the same paths (a shared
filesystem; the client passes absolute paths), and has this project installed with the `minbert`
Jupyter kernel. Each task runs its notebook in a fresh Python process (nbclient must own its
process's main thread, which a worker's task thread is not). That process and its kernel die with
the worker (minbert_core.lifeline): a task whose worker is lost leaves nothing running, and Dask
runs it again on another worker, where it resumes the run from its last checkpoint, as a local
study does. A local cluster's workers end with the study that started them (Dask's own watch of
their parent), and so, in turn, do their tasks' processes.

`local:N` starts N worker processes here, private to this user: the scheduler listens on TLS with
credentials made for this study alone (distributed's Security.temporary(), or openssl where the
`cryptography` package is missing), so another local user cannot submit work to it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .lifeline import die_with_parent


def local_workers(address: str, gpus_per_run: int = 0) -> int | None:
    """N for `local:N`, None for a scheduler's address; an impossible request is a ValueError at once
    (it would otherwise wait forever for a worker that can run it)."""
    if gpus_per_run < 0:
        raise ValueError(f"--gpus-per-run must be 0 or more; got {gpus_per_run}")
    if not address.startswith("local:"):
        return None
    n = address.split(":", 1)[1]
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"--cluster {address}: local:N needs a whole number N >= 1 of worker processes, e.g. local:2")
    if gpus_per_run:
        raise ValueError(f"--cluster {address} --gpus-per-run {gpus_per_run}: a local cluster's workers declare no "
                         "GPUs, so no training run could start; use a scheduler whose workers do "
                         "(dask worker ADDRESS --resources GPU=1), or --gpus-per-run 0")
    return int(n)


@contextmanager
def connect(address: str, gpus_per_run: int = 0) -> Iterator:
    """A Dask client for a study, closed on exit with the local cluster it started (`local:N`)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("--cluster needs Dask's scheduler: pip install -e '.[cluster]' "
                         "(or pip install 'dask[distributed]')") from None
    n = local_workers(address, gpus_per_run)
    if n is None:
        client = Client(address)
        try:
            _check_gpu_workers(client, address, gpus_per_run)
            yield client
        finally:
            client.close()
        return
    security = _private_security()
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1", protocol="tls://", security=security)
    try:
        client = Client(cluster, security=security)
        try:
            yield client  # its worker processes end with this process (Dask's own parent watch)
        finally:
            client.close()
    finally:
        cluster.close()


def _check_gpu_workers(client, address: str, gpus_per_run: int) -> None:
    """Where runs ask for GPUs, some worker must have that many: else no run could ever start."""
    if not gpus_per_run:
        return
    workers = client.scheduler_info().get("workers", {}).values()
    if not any(w.get("resources", {}).get("GPU", 0) >= gpus_per_run for w in workers):
        raise ValueError(f"--gpus-per-run {gpus_per_run}: no worker of {address} declares GPU={gpus_per_run} or "
                         f"more, so no training run could start; start them with `dask worker {address} "
                         f"--resources GPU={gpus_per_run}` first")


def _private_security():
    """TLS credentials for this study alone (scheduler, workers and client share one self-signed
    pair, kept in memory): a connection without them is refused."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError:  # no `cryptography`: the same pair from the openssl command
        pass
    with tempfile.TemporaryDirectory(prefix="minbert-dask-") as tmp:
        key, cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30",
                            "-subj", "/CN=dask-internal"], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise ValueError(f"--cluster local:N needs TLS credentials for a private cluster: pip install "
                             f"cryptography, or install the openssl command ({e})") from None
        k, c = key.read_text(), cert.read_text()
    return Security(require_encryption=True, tls_ca_file=c, tls_client_key=k, tls_client_cert=c,
                    tls_scheduler_key=k, tls_scheduler_cert=c, tls_worker_key=k, tls_worker_cert=c)


def run_entry_task(notebook: str, folder: str, params: dict, kernel: str, name: str, needed: list) -> tuple:
    """A cluster task: one plan entry, in a fresh process that dies with this worker. `needed` are the
    results of the runs it reads (Dask hands them over once they are done): one that failed fails this
    one too."""
    failed = [n for n, (status, _, _) in needed if status.startswith("failed")]
    if failed:
        return "failed", f"needs a failed run: {', '.join(failed)}", 0.0
    res = subprocess.run([sys.executable, "-m", "minbert_core.cluster", "--run-entry", str(os.getpid())],
                         capture_output=True, text=True, input=json.dumps([notebook, folder, params, kernel, name]))
    if res.returncode:
        return "failed", f"{folder}: worker process exited {res.returncode}: {res.stderr.strip()[-500:]}", 0.0
    return tuple(json.loads(res.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":  # the task's own process: python -m minbert_core.cluster --run-entry PARENT_PID < [args]
    if len(sys.argv) == 3 and sys.argv[1] == "--run-entry" and sys.argv[2].isdigit():
        die_with_parent(int(sys.argv[2]))  # the worker lost: this process (and its kernel) ends too
        from .notebook_run import run_entry

        print(json.dumps(list(run_entry(*json.loads(sys.stdin.read())))))
    else:
        sys.exit("usage: python -m minbert_core.cluster --run-entry PARENT_PID (a cluster task's own process)")
