"""A study's processes die with it (issue 22): a killed, interrupted or terminated study leaves no
worker, kernel or training process behind, holds no lock after it, and its rerun completes with the
records of an uninterrupted study; a lost Dask worker's run is resumed by Dask's retry. Impossible
cluster requests are refused at once, and a local cluster is private (TLS).

The studies here run a two-run plan of tiny random BERTs; the process tests read /proc (Linux)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minbert_core.study import run_study

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
PLAN = ("profiles:\n  smoke: {common: {checkpoint: 'random:tiny', epochs: 2, train_limit: 32, eval_limit: 16,\n"
        "                       predict_test: false}}\n"
        "experiments:\n"
        "  - {table: 1, notebook: 01_sentiment, name: a, row: Default, grid: {task: sst}}\n"
        "  - {table: 1, notebook: 01_sentiment, name: b, row: Default, grid: {task: cfimdb, mode: pretrain}}\n")
RUNS = ("a", "b")
RERUN = "interrupted; run the same command again to continue"


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(PLAN)
    return path


@pytest.fixture(scope="module")
def reference(plan, tmp_path_factory, data_root) -> Path:
    """The plan run once, serially and uninterrupted: the records every other study must match."""
    out = tmp_path_factory.mktemp("reference") / "study"
    assert [r.status for r in run_study("smoke", out, plan_path=plan, report_notebook=False)] == ["complete"] * 2
    return out


def _records(run: Path) -> dict:
    """What a run computed: its scores, steps, history (less its speed) and config (less its paths)."""
    metrics = json.loads((run / "metrics.json").read_text())
    with open(run / "history.csv") as f:
        history = [{k: v for k, v in row.items() if k != "examples_per_s"} for row in csv.DictReader(f)]
    config = json.loads((run / "config.json").read_text())["config"]
    return {"best_dev": metrics["best_dev"], "steps": metrics["steps"], "history": history,
            "config": {k: v for k, v in config.items() if k not in ("runs_dir", "data_dir")}}


def assert_same_records(reference: Path, study: Path) -> None:
    for name in RUNS:
        assert (study / name / ".complete").is_file(), name
        assert _records(study / name) == _records(reference / name), name


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (/proc)."""
    out = {}
    for d in Path("/proc").iterdir():
        try:
            out[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    return out


def descendants(pid: int) -> set[int]:
    parents, found, todo = _parents(), set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p} - found
        found |= kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_until(cond, proc: subprocess.Popen | None = None, timeout: float = 300, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the study ended before {what}: {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_study(plan: Path, out: Path, *args: str) -> subprocess.Popen:
    """`minbert study` in its own session (so a signal to its group reaches nothing of the test's)."""
    cmd = [sys.executable, "-m", "minbert_core.cli", "study", "--profile", "smoke", "--plan", str(plan),
           "--out", str(out), "--no-report", *args]
    return subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def training(out: Path, names=RUNS) -> bool:
    return all((out / n / "config.json").is_file() for n in names)


@LINUX
def test_a_killed_study_leaves_nothing_running_and_a_rerun_completes_it(plan, reference, tmp_path):
    """kill -9 of `minbert study --jobs 2` mid-training: its pool workers and kernels die with it
    (before, they ran on, holding the study lock, and every rerun failed 'in use by process')."""
    out = tmp_path / "study"
    proc = start_study(plan, out, "--jobs", "2")
    wait_until(lambda: training(out), proc, what="both runs train")
    left = descendants(proc.pid)
    assert len(left) >= 4, [_cmdline(p) for p in left]  # two pool workers and their two kernels
    proc.kill()
    proc.communicate()
    wait_until(lambda: not any(_alive(p) for p in left), timeout=30, what="the study's processes to die")
    assert json.loads((out / "study.json").read_text())["profile"] == "smoke"  # recorded before any run settled
    runs = run_study("smoke", out, plan_path=plan, jobs=2, report_notebook=False)
    assert all(r.status in ("complete", "skipped (complete)") for r in runs), [(r.name, r.error) for r in runs]
    assert_same_records(reference, out)


@LINUX
@pytest.mark.parametrize("args,sig,group", [(("--jobs", "2"), signal.SIGINT, True),
                                            (("--cluster", "local:2"), signal.SIGTERM, False)],
                         ids=["ctrl-c-jobs-2", "sigterm-cluster"])
def test_an_interrupted_study_says_rerun_in_one_line_and_leaves_nothing_running(plan, tmp_path, args, sig, group,
                                                                                 data_root):
    """Ctrl-C (SIGINT to the terminal's whole process group) of a --jobs 2 study, and SIGTERM of a
    --cluster local:2 study: one line saying to rerun the command, no traceback, no process left."""
    if "--cluster" in args:
        pytest.importorskip("distributed")
    out = tmp_path / "study"
    proc = start_study(plan, out, *args)
    wait_until(lambda: training(out), proc, what="both runs train")
    left = descendants(proc.pid)
    (os.killpg if group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith(RERUN) and "Traceback" not in err, err
    wait_until(lambda: not any(_alive(p) for p in left), timeout=30, what="the study's processes to die")


@LINUX
def test_a_lost_dask_worker_ends_its_notebook_and_the_retry_resumes_the_run(plan, reference, tmp_path):
    """kill -9 of the worker running a notebook: its task process and kernel end with it (before, the
    kernel trained on and Dask's retry failed 'run folder in use'); Dask runs the task again, which
    resumes the run from its checkpoint; the cluster study's records are the serial study's."""
    pytest.importorskip("distributed")
    out = tmp_path / "study"
    proc = start_study(plan, out, "--cluster", "local:1")
    wait_until(lambda: (out / "a" / "checkpoints" / "last.pt").is_file(), proc, what="run a's first checkpoint")
    tasks = [p for p in descendants(proc.pid) if "--run-entry" in _cmdline(p)]
    assert len(tasks) == 1, [_cmdline(p) for p in descendants(proc.pid)]
    notebook_processes = {tasks[0]} | descendants(tasks[0])  # the task's process and its kernel
    os.kill(_parents()[tasks[0]], signal.SIGKILL)  # the Dask worker
    wait_until(lambda: not any(_alive(p) for p in notebook_processes), timeout=30, what="the task's processes to die")
    stdout, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + err
    assert_same_records(reference, out)
    injected = next(c for c in json.loads((out / "a" / "notebook.ipynb").read_text())["cells"]
                    if "injected-parameters" in c["metadata"].get("tags", []))
    assert "resume = True" in "".join(injected["source"])  # the retry continued the run
    again = run_study("smoke", out, plan_path=plan, cluster="local:1", report_notebook=False)
    assert [r.status for r in again] == ["skipped (complete)"] * 2  # completed runs are skipped, as locally


@pytest.mark.parametrize("args,message", [
    (["--cluster", "local:0"], "local:N needs a whole number N >= 1"),
    (["--cluster", "local:abc"], "local:N needs a whole number N >= 1"),
    (["--cluster", "local:"], "local:N needs a whole number N >= 1"),
    (["--cluster", "local:1", "--gpus-per-run", "1"], "a local cluster's workers declare no GPUs"),
    (["--cluster", "local:2", "--gpus-per-run", "-1"], "--gpus-per-run must be 0 or more"),
    (["--gpus-per-run", "1"], "--gpus-per-run applies to --cluster studies only"),
])
def test_an_impossible_cluster_request_is_refused_at_once(tmp_path, capsys, args, message):
    from minbert_core.cli import main

    (tmp_path / "plan.yaml").write_text(PLAN)
    t0 = time.monotonic()
    code = main(["study", "--profile", "smoke", "--plan", str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "s"),
                 *args])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and time.monotonic() - t0 < 60  # before any worker or notebook starts


def test_a_local_cluster_is_private():
    """Its scheduler speaks TLS with credentials made for this study: a client without them is refused."""
    pytest.importorskip("distributed")
    from distributed import Client

    from minbert_core.cluster import connect

    with connect("local:1") as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 2]).result() == 3  # the study's own client works
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="5s")
