"""`minbert tune`: an Optuna search over the hyperparameters the paper tuned (learning rates, head dropout,
batch size), pruned on each epoch's dev score, in a storage file that resumes and that many workers share.

Layout of a tune folder: `tune.db` (Optuna's SQLite storage: every trial, its parameters, each epoch's dev
score), `trials/trial-NNNN/` (each trial's ordinary run folder: config.json, history.csv, metrics.json)
and `report/` (best.json, importance.json, trials.csv, report.md and the Optuna plots as PNG and PDF).

Pruning hook: `train(cfg, on_step=...)` calls back after every step and its checkpoint, and the trainer
rewrites `history.csv` (with the epoch's dev row) at every epoch end, so the callback reports each new dev
row to the trial and raises `optuna.TrialPruned` where the pruner says so: one step into the next epoch.
train.py is not changed.

Workers: with `--cluster` (minbert_core.cluster: `local:N` or a Dask scheduler's address) each Dask worker
runs one `python -m minbert_core.tune --worker` process (it dies with the worker) that draws trials from
the shared storage until the study has its trials. SQLite wants one filesystem with working locks: for
workers on several machines give `--storage` a database server's URL (postgresql://...).
A trial whose process was killed stops sending heartbeats; after `GRACE_S` Optuna marks it failed and
runs it again with the same parameters, and that retry resumes the killed run from its last checkpoint.
"""
from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import optuna

from .evaluation import Evaluator
from .train_config import TrainConfig

STUDY_NAME = "minbert-tune"
HEARTBEAT_S, GRACE_S = 60, 180  # a trial silent for GRACE_S is failed and retried (its process died)


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a float range (log-uniform if `log`) or a list of choices."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False  # sample log-uniformly (learning rates span orders of magnitude)
    choices: tuple = ()  # categorical values; when set, low/high are unused

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """The trial's value of this parameter."""
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclasses.dataclass(frozen=True)
class TunePreset:
    """What a search runs: the setting every trial shares, the searched space, and its budget."""

    description: str
    base: Mapping[str, Any]  # TrainConfig fields every trial shares
    space: Mapping[str, Param]  # TrainConfig fields searched
    trials: int  # finished trials (complete or pruned) the study should have
    timeout_s: float = 0.0  # a worker starts no trial after this many seconds (0 = no limit)
    startup: int = 2  # trials sampled at random, and trials finished before the pruner prunes


def paper_space(batches: tuple[int, ...]) -> dict[str, Param]:
    """What the paper's Table 1 tuned: the learning rates, the head dropout and the batch size (Yang & Dange,
    CS224N); the encoder and the freshly initialised heads each get their own rate, as the study's runs do."""
    return {"lr_finetune": Param(1e-5, 3e-4, log=True), "lr_head": Param(1e-4, 3e-3, log=True),
            "head_dropout": Param(0.0, 0.5), "batch_size": Param(choices=batches)}


_MULTITASK = dict(tasks=("sst", "para", "sts"), strategy="sum", mode="finetune", telemetry_every=0,
                  predict_test=False, pooling="mean", pair_encoding="cross", loss_weights="sts=0.5")
PRESETS: dict[str, TunePreset] = {
    # a tiny random BERT learns no SST class in seconds (every trial scores the majority rate), but STS's r
    # moves with the parameters: SST and STS, without Quora's large files, so the search has scores to rank
    "smoke": TunePreset(
        "tiny random-init BERT, SST and STS on 32 rows, 2 epochs: the pipeline in seconds (tests)",
        {**_MULTITASK, "tasks": ("sst", "sts"), "checkpoint": "random:tiny", "epochs": 2,
         "train_limit": 32, "eval_limit": 16, "max_length": 32, "checkpoint_every": 0},
        paper_space((8, 16)), trials=4, startup=2),
    # quick's Table 2 setting (MiniLM, max length 64, 400 dev rows, STS weighted 0.5), cut to 3 epochs of 40
    # steps so that the pruner has epochs to act on; the summed loss (PCGrad matched it in every table of
    # the cpu study, at more cost). From the cpu study's records a step of 16 rows per task takes 1.4-2 s on
    # one core, so a full trial is about 4 minutes, and two workers finish about 25-30 trials an hour with
    # pruning; the timeout makes it an hour whatever the machine's speed
    "minilm-cpu": TunePreset(
        "packaged MiniLM, quick's multi-task setting in 3 epochs of 40 steps; about 1 hour on a 2-core CPU "
        "with --cluster local:2",
        {**_MULTITASK, "checkpoint": "minilm-l6", "epochs": 3, "epoch_rule": "fixed", "steps_per_epoch": 40,
         "train_limit": 0, "eval_limit": 400, "max_length": 64},
        paper_space((8, 16, 32)), trials=40, timeout_s=3300, startup=6),
}


def get_preset(name: str) -> TunePreset:
    """A preset by name; an unknown one is a ValueError naming the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown tune profile {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_record(p: TunePreset) -> dict:
    """The preset as plain JSON data, stored with the study so a resumed search is checked against it."""
    d = json.loads(json.dumps(dataclasses.asdict(p)))
    return {k: d[k] for k in ("base", "space", "startup")}


def _retry_callback():
    """Optuna's retry of a trial whose heartbeat stopped (renamed in Optuna 4.9; both names are read)."""
    import warnings

    storages = optuna.storages
    cls = getattr(storages, "RetryHeartbeatStaleTrialCallback", None) or storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=2)


# Optuna 4.9 renamed the RDB storage's argument for what to do with a trial whose heartbeat stopped
_STALE_KW = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
             in inspect.signature(optuna.storages.RDBStorage).parameters else "failed_trial_callback")


def storage_url(folder: Path, storage: str | None = None) -> str:
    """The study's storage: `storage` (an RDB URL) if given, else SQLite in the tune folder."""
    return storage or f"sqlite:///{(folder / 'tune.db').resolve()}"


def open_study(folder: Path, preset_name: str, storage: str | None = None, seed: int = 0,
               worker: int = 0) -> optuna.Study:
    """Create or load the tune folder's study; a study made with another preset's setting or space is a
    ValueError naming the differing keys. The sampler's seed moves on with the trials already run, so a
    resumed search (or a second worker) does not repeat the first one's random draws."""
    import warnings

    preset = get_preset(preset_name)
    folder.mkdir(parents=True, exist_ok=True)
    url = storage_url(folder, storage)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S, **{_STALE_KW: _retry_callback()},
            engine_kwargs={"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None)
    study = optuna.create_study(storage=rdb, study_name=STUDY_NAME, direction="maximize", load_if_exists=True)
    saved, now = study.user_attrs.get("preset"), preset_record(preset)
    if saved is None:
        study.set_user_attr("preset", now)
        study.set_user_attr("profile", preset_name)
    elif saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ValueError(f"{url}: this search was made with profile {study.user_attrs.get('profile')!r}, whose "
                         f"{', '.join(diff)} differ from profile {preset_name!r}'s; use its profile or another --out")
    sampler = optuna.samplers.TPESampler(n_startup_trials=preset.startup,
                                         seed=seed + len(study.trials) + 1000 * worker)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=preset.startup, n_warmup_steps=0)
    return optuna.load_study(study_name=STUDY_NAME, storage=rdb, sampler=sampler, pruner=pruner)


class EpochReporter:
    """train()'s on_step callback: reports each epoch's dev score to the trial as soon as the trainer has
    written that epoch's dev row to history.csv, and raises optuna.TrialPruned where the pruner says so.
    The score is what the run's best epoch is chosen by (Evaluator.selection_score: the overall score)."""

    def __init__(self, trial: optuna.Trial, history: Path):
        self.trial, self.history = trial, history
        self.reported: set[int] = set()
        self._seen: tuple[int, int] | None = None

    def __call__(self, _steps: int = 0) -> None:
        """After a step: look at history.csv only when it changed (the trainer rewrites it at checkpoints)."""
        try:
            st = self.history.stat()
        except FileNotFoundError:
            return
        if (st.st_mtime_ns, st.st_size) == self._seen:
            return
        self._seen = (st.st_mtime_ns, st.st_size)
        if self.report_new() and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {max(self.reported)}")

    def report_new(self) -> bool:
        """Report the dev rows not yet reported; whether there were any."""
        new = False
        for epoch, score in dev_scores(self.history).items():
            if epoch not in self.reported:
                self.trial.report(score, step=epoch)
                self.reported.add(epoch)
                new = True
        return new


def dev_scores(history: Path) -> dict[int, float]:
    """Epoch -> dev selection score, from a run's history.csv (its `kind == dev` rows, columns dev_<key>)."""
    out: dict[int, float] = {}
    with open(history, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("kind") != "dev":
                continue
            dev = {k[4:]: float(v) for k, v in row.items() if k.startswith("dev_") and v not in ("", None)}
            if dev:
                out[int(row["epoch"])] = Evaluator.selection_score(dev)
    return out


def trial_config(preset: TunePreset, params: Mapping[str, Any], folder: Path, run_id: str,
                 data_dir: str = "") -> TrainConfig:
    """The TrainConfig of one trial: the preset's setting, the trial's parameters, its run folder."""
    return TrainConfig.from_dict({**preset.base, **params, "runs_dir": str(folder / "trials"), "run_id": run_id,
                                  "data_dir": data_dir})


def objective(trial: optuna.Trial, preset: TunePreset, folder: Path, data_dir: str = "",
              keep_checkpoints: bool = False) -> float:
    """Train one trial's run and return its best epoch's dev score. A retried trial (its process was killed
    or interrupted) has its predecessor's `run` attribute and resumes that run from its last checkpoint."""
    params = {name: p.suggest(trial, name) for name, p in preset.space.items()}
    run_id = trial.user_attrs.get("run")
    resume = run_id is not None
    run_id = run_id or f"trial-{trial.number:04d}"
    run_dir = folder / "trials" / run_id
    if not resume and run_dir.exists():
        raise ValueError(f"{run_dir} exists but {storage_url(folder)} has no trial for it: it is left from "
                         "another search; delete the folder's trials/ or choose another --out")
    trial.set_user_attr("run", run_id)
    trial.set_user_attr("interrupted", False)
    reporter = EpochReporter(trial, run_dir / "history.csv")
    cfg = trial_config(preset, params, folder, run_id, data_dir)
    try:
        from .train import train  # the training loop only where a trial runs (the CLI's --help does not)

        train(cfg, resume=resume and (run_dir / "config.json").is_file(), progress=False, on_step=reporter)
    except optuna.TrialPruned:
        _drop_checkpoints(run_dir, keep_checkpoints)
        raise
    except KeyboardInterrupt:  # the next call runs it again from its checkpoint (requeue_interrupted)
        trial.set_user_attr("interrupted", True)
        raise
    reporter.report_new()  # the last epoch: no step follows it
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    trial.set_user_attr("learned", bool(metrics.get("learned")))
    trial.set_user_attr("best_epoch", metrics.get("best_epoch"))
    _drop_checkpoints(run_dir, keep_checkpoints)
    return Evaluator.selection_score(metrics["best_dev"])


def _drop_checkpoints(run_dir: Path, keep: bool) -> None:
    """A search's runs are its records; their weights (90 MB each for MiniLM) go unless asked for."""
    if not keep:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Queue again, with their parameters and run folders, the trials a Ctrl-C stopped (Optuna marks them
    failed) that no trial retries yet; returns their numbers."""
    retried = {n for t in study.trials for n in t.system_attrs.get("retry_history", [])}
    todo = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL
            and t.user_attrs.get("interrupted") and t.number not in retried]
    callback = _retry_callback()
    for t in todo:
        callback(study, t)
    return [t.number for t in todo]


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def finished(study: optuna.Study) -> int:
    """Trials that count towards the search's size: complete or pruned (a failed one is replaced)."""
    return sum(t.state in FINISHED for t in study.trials)


def optimize(folder: Path, preset_name: str, trials: int, timeout_s: float = 0.0, storage: str | None = None,
             seed: int = 0, worker: int = 0, data_dir: str = "", keep_checkpoints: bool = False) -> int:
    """One worker: run trials until the study has `trials` finished ones (counting every worker's) or
    `timeout_s` passes; returns the study's finished trials. A diverged run fails its trial, not the search."""
    study = open_study(folder, preset_name, storage, seed, worker)
    todo = trials - finished(study)
    if todo <= 0:
        return finished(study)
    from .train import TrainingDiverged

    preset = get_preset(preset_name)
    study.optimize(lambda t: objective(t, preset, folder, data_dir, keep_checkpoints), n_trials=todo,
                   timeout=timeout_s or None, catch=(TrainingDiverged,),
                   callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED)])
    return finished(study)


def run_tune(preset_name: str, out: str | Path | None = None, trials: int | None = None, add: int | None = None,
             timeout_s: float | None = None, cluster: str | None = None, storage: str | None = None,
             seed: int = 0, keep_checkpoints: bool = False) -> tuple[optuna.Study, Path]:
    """`minbert tune`: continue (or start) the search in `out` until it has `trials` finished trials (or
    `add` more than it has; default the preset's), on a Dask cluster or in this process. Returns the
    search and its folder (tune_report.write_report writes its report)."""
    from .data import data_dir

    preset = get_preset(preset_name)
    for flag, v in (("--trials", trials), ("--add", add), ("--timeout", timeout_s)):
        if v is not None and v < 0:
            raise ValueError(f"{flag} must be 0 or more; got {v}")
    folder = Path(out or f"runs/tune-{preset_name}").resolve()
    study = open_study(folder, preset_name, storage, seed)  # a mismatched search fails before any work
    again = requeue_interrupted(study)
    if again:
        print(f"running again, from their checkpoints: trials {', '.join(map(str, again))} (interrupted)")
    target = trials if trials is not None else finished(study) + add if add is not None else preset.trials
    args = dict(folder=str(folder), preset_name=preset_name, trials=target, storage=storage, seed=seed,
                timeout_s=preset.timeout_s if timeout_s is None else timeout_s,
                data_dir=str(data_dir().resolve()), keep_checkpoints=keep_checkpoints)
    if cluster:
        run_on_cluster(cluster, args)
    else:
        optimize(**{**args, "folder": folder})
    return open_study(folder, preset_name, storage, seed), folder


def run_on_cluster(address: str, args: dict) -> None:
    """One worker process per Dask worker (minbert_core.cluster's `local:N` or a scheduler's address), each
    drawing trials from the shared storage; a local cluster's workers split this machine's cores."""
    from .cluster import connect, local_workers

    n_local = local_workers(address)
    threads = max(1, (os.cpu_count() or 1) // n_local) if n_local else 0
    with connect(address) as client:
        if n_local is None:
            client.wait_for_workers(1)
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        futures = [client.submit(worker_task, {**args, "worker": i + 1}, threads, key=f"minbert-tune-{i + 1}",
                                 workers=[w], pure=False) for i, w in enumerate(workers)]
        for f in futures:
            f.result()


def worker_task(args: dict, threads: int = 0) -> None:
    """A Dask task: `optimize` in a fresh process that dies with this worker (minbert_core.lifeline), so a
    lost worker leaves no training behind; its trial is then retried from its checkpoint. Its output (each
    trial's epochs, Optuna's line per trial) goes to the worker's."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-m", "minbert_core.tune", "--worker", str(os.getpid())],
                         input=json.dumps(args), text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"tune worker {args.get('worker')} exited {res.returncode} (its error is above)")


if __name__ == "__main__":  # a cluster task's own process: python -m minbert_core.tune --worker PARENT_PID < args
    if len(sys.argv) == 3 and sys.argv[1] == "--worker" and sys.argv[2].isdigit():
        from .lifeline import die_with_parent

        die_with_parent(int(sys.argv[2]))
        a = json.loads(sys.stdin.read())
        optimize(**{**a, "folder": Path(a["folder"])})
    else:
        sys.exit("usage: python -m minbert_core.tune --worker PARENT_PID (a tune task's own process)")
