"""The `minbert` command line: one subcommand per job, each a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _cmd_sanity(a: argparse.Namespace) -> int:
    from .sanity import format_table, sanity_table

    rows = sanity_table(checkpoint=a.checkpoint, opt_steps=a.opt_steps)
    print(format_table(rows))
    return 0 if all(r["ok"] for r in rows) else 1


def _cmd_fetch(a: argparse.Namespace) -> int:
    from .data import data_dir
    from .fetch import FetchError, fetch

    dest = Path(a.dest) if a.dest else data_dir()
    try:
        status = fetch(dest, base_url=a.base_url, src_dir=getattr(a, "from"), only=a.only, deadline=a.deadline)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, s in status.items():
        print(f"{name:<28} {s}")
    print(f"data in {dest}")
    return 0


def _cmd_stats(a: argparse.Namespace) -> int:
    from .batching import BucketBatchSampler, TokenizedSplit, padding_share, random_batches
    from .data import load_split
    from .tokenizer import load_tokenizer

    split = load_split(a.task, a.split)
    ts = TokenizedSplit.build(split, load_tokenizer(a.checkpoint), max_length=a.max_length)
    L = ts.lengths
    bucketed = padding_share(L, BucketBatchSampler(L, a.batch_size, seed=a.seed).batches())
    rand = padding_share(L, random_batches(len(L), a.batch_size, seed=a.seed))
    print(f"{split.path} ({len(L)} examples, batch size {a.batch_size}, max length {a.max_length})")
    print(f"padded-token share, length-bucketed batches: {bucketed:6.1%}")
    print(f"padded-token share, random batches:          {rand:6.1%}")
    return 0


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


class _Deprecated(argparse.Action):
    """An old flag name: sets the new field, and says so on stderr."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated, use --{self.dest.replace('_', '-')}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _add_config_flags(p: argparse.ArgumentParser, defaults, hidden: tuple[str, ...] = ()) -> None:
    """One --flag per TrainConfig field, with the field's default and its one-line reason as help; the
    `hidden` keys are accepted (so that using them gets a clear refusal) but not listed in --help."""
    import dataclasses

    from .train_config import CONVERT_VALUES, DEPRECATED_KEYS, TrainConfig

    for f in dataclasses.fields(TrainConfig):
        help_ = f.metadata.get("help", "")
        default = getattr(defaults, f.name)
        if f.name == "tasks":
            typ = lambda s: tuple(x for x in s.split(",") if x)  # noqa: E731
            shown = ",".join(default)
        else:
            typ = _bool if isinstance(default, bool) else type(default)
            shown = default
        if f.name == "strategy":  # the registry, not a comment, names every strategy
            from .strategies import STRATEGIES, TRAINING_RULES

            help_ = (f"{' | '.join(TRAINING_RULES)} (train single_task alone), or a gradient combination: "
                     f"{' | '.join(STRATEGIES)} (README: each with its paper)")
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None,
                       help=argparse.SUPPRESS if f.name in hidden else f"{help_} (default: {shown})")
    for old, new in DEPRECATED_KEYS.items():  # old flag names, for one release
        p.add_argument(f"--{old.replace('_', '-')}", dest=new, type=CONVERT_VALUES.get(old, type(getattr(defaults, new))),
                       action=_Deprecated, help=f"deprecated: use --{new.replace('_', '-')}")


# TrainConfig keys that make a multi-task model: `minbert train` (one sentiment run) refuses them
MULTITASK_KEYS = ("tasks", "strategy", "single_task", "lstm", "task_layers", "task_hidden", "loss_weights",
                  "pair_encoding")


def _cmd_train(a: argparse.Namespace) -> int:
    import dataclasses

    from .config import override
    from .distributed import Dist
    from .resume import flag, resume_config
    from .train import train
    from .train_config import TrainConfig

    given = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig) if getattr(a, f.name) is not None}
    if a.cmd == "train":
        multi = [flag(k) for k in MULTITASK_KEYS if k in given]
        if multi:
            raise ValueError(f"minbert train is one sentiment run; {', '.join(multi)} make a multi-task model: "
                             "use minbert multitask")
        if a.task:
            given.update(tasks=(a.task,), single_task=a.task)
    if a.resume:  # the run's own recorded config; a flag given again must match it (or be a MAY_CHANGE one)
        cfg = resume_config(given.get("run_id", ""), given)
    else:
        cfg = override(a.defaults, given)
    dist = Dist.from_env()  # under torchrun: this process is one rank of the run
    run_dir = train(cfg, resume=a.resume, dist=dist)
    if dist.is_main:
        print(f"run folder: {run_dir}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .export import export_run

    written = export_run(a.run, a.out)
    print(f"exported {a.run} to {a.out}: {', '.join(written)}")
    return 0


def _cmd_study(a: argparse.Namespace) -> int:
    from .plan import describe, plan_runs
    from .study import run_study

    if a.dry_run or a.json:
        out = Path(a.out or f"runs/study-{a.profile}").resolve()
        print(describe(plan_runs(a.plan, a.profile, out, a.notebooks)[1], as_json=a.json), end="")
        return 0

    runs = run_study(a.profile, a.out, plan_path=a.plan, notebooks_dir=a.notebooks, report_dir=a.report_dir,
                     jobs=a.jobs, cluster=a.cluster, gpus_per_run=a.gpus_per_run, report_notebook=not a.no_report)
    return 1 if any(r.status == "failed" for r in runs) else 0


def _cmd_report(a: argparse.Namespace) -> int:
    from .report import build_report

    written = build_report(a.study_dir, a.report_dir or Path(a.study_dir) / "report")
    for kind, paths in written.items():
        print(f"{kind}: {len(paths)} files")
        for p in paths:
            print(f"  {p}")
    return 0


def _cmd_tune(a: argparse.Namespace) -> int:
    from .tune import run_tune
    from .tune_report import write_report

    study, folder = run_tune(a.profile, a.out, trials=a.trials, add=a.add, timeout_s=a.timeout, cluster=a.cluster,
                             storage=a.storage, seed=a.seed, keep_checkpoints=a.keep_checkpoints)
    written = write_report(study, folder / "report")
    for kind, paths in written.items():
        print(f"{kind}: " + " ".join(paths))
    return 0


def _add_tune_parser(sub) -> None:
    """`minbert tune`: its options."""
    from .tune import PRESETS

    tp = sub.add_parser("tune", help="an Optuna search over learning rates, head dropout and batch size",
                        description="Optuna search (TPE, median pruning on each epoch's dev score) over the "
                        "hyperparameters the paper tuned. Its storage is <out>/tune.db (SQLite): the same "
                        "command continues it, and several processes or Dask workers share it. Report: "
                        "<out>/report/ (best.json, importance.json, trials.csv, report.md, Optuna's plots).")
    tp.add_argument("--profile", default="smoke", choices=list(PRESETS),
                    help="; ".join(f"{k}: {p.description}" for k, p in PRESETS.items()) + " (default: smoke)")
    tp.add_argument("--out", help="the search's folder (default: runs/tune-<profile>)")
    n = tp.add_mutually_exclusive_group()
    n.add_argument("--trials", type=int, help="finished (complete or pruned) trials the search should have in all; "
                   "a rerun after an interruption completes them (default: the profile's)")
    n.add_argument("--add", type=int, help="this many finished trials more than the storage holds")
    tp.add_argument("--timeout", type=float, metavar="S",
                    help="seconds after which a worker starts no new trial (0: none; default: the profile's)")
    tp.add_argument("--cluster", metavar="ADDRESS",
                    help="run trials on Dask workers, one trial at a time each: local:N (N processes here, "
                         "sharing the cores) or a scheduler's address whose workers share this folder's "
                         "filesystem (minbert_core/cluster.py); default: one trial at a time in this process")
    tp.add_argument("--storage", metavar="URL", help="an Optuna RDB URL instead of <out>/tune.db (postgresql://...: "
                    "workers on several machines, where SQLite's file locks are not to be trusted)")
    tp.add_argument("--seed", type=int, default=0, help="the sampler's seed (default: 0)")
    tp.add_argument("--keep-checkpoints", action="store_true",
                    help="keep each trial's best weights (default: only its records; best.json has the command "
                         "that trains the best configuration)")
    tp.set_defaults(fn=_cmd_tune, on_interrupt="interrupted; run the same command again to continue: the "
                    "interrupted trial resumes from its last checkpoint")


def _cmd_bench(a: argparse.Namespace) -> int:
    from .bench import run_all

    if a.render_only:
        from .bench import rerender

        rerender(a.out)
        return 0
    if a.race:
        from .bench import run_race

        run_race(a.out, checkpoint=a.checkpoint, budget=a.race_budget, seeds=a.race_seeds,
                 precision=a.race_precision)
        return 0
    if a.only:
        from .bench import run_parts

        run_parts([p for p in a.only.split(",") if p], a.out, checkpoint=a.checkpoint, steps=a.steps)
        return 0
    run_all(a.out, checkpoint=a.checkpoint, steps=a.steps, study_jobs=a.study_jobs or None)
    return 0


def _add_bench_parser(sub) -> None:
    """`minbert bench`: its options."""
    bp = sub.add_parser("bench", help="speed and memory benchmarks; writes BENCHMARKS.md")
    bp.add_argument("--out", default="BENCHMARKS.md")
    bp.add_argument("--checkpoint", default="minilm-l6")
    bp.add_argument("--steps", type=int, default=10, help="measured steps per contender (after warm-up)")
    bp.add_argument("--study-jobs", default="smoke", metavar="PROFILE",
                    help="time this profile's whole study with --jobs 1 and 2 ('' to skip; default: smoke)")
    bp.add_argument("--race", action="store_true",
                    help="only the time-to-accuracy race (about 1.5 hours on a 2-core CPU at 3 seeds): three transformers "
                         "single-task models (fp32, then bf16) against one minbert multi-task model, each choosing "
                         "on one half of the dev rows and scored on the other; adds its section to --out and "
                         "figures/bench/race.png beside it; each finished side is kept in <--out's stem>.race.json beside "
                         "--out (BENCHMARKS.race.json), and the same command run again resumes from it")
    bp.add_argument("--race-budget", type=float, default=1.5,
                    help="with --race: the multi-task model's training-time cap, in multiples of the slower "
                         "transformers side's total (default: 1.5)")
    bp.add_argument("--race-seeds", type=int, default=3, metavar="N",
                    help="with --race: seeds per side (default: 3; the study's 11711, 21111, 100 first)")
    bp.add_argument("--race-precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="with --race: the multi-task model's precision (default: auto, bf16 where the device "
                         "multiplies bf16 natively); the transformers side always runs both fp32 and bf16")
    bp.add_argument("--only", default="", metavar="PARTS",
                    help="re-measure only these comma-separated parts (model, attempts, optimizer, dropout, "
                         "precision, precision_study, attempts_bf16, multitask, strategies, bucketing, utilisation, "
                         "profile, ddp) and keep the rest of "
                         "BENCHMARKS.json; the header dates each re-measured part")
    bp.add_argument("--render-only", action="store_true",
                    help="measure nothing: rewrite --out from its JSON and the committed GPU records (gpu_check.json)")
    bp.set_defaults(fn=_cmd_bench)


RESUME_HELP = ("continue run --run-id from its last checkpoint with its recorded config (other flags may change "
               "only --epochs upwards, the stopping rules, --checkpoint-every, --keep-last, --device, --runs-dir, "
               "--data-dir)")


def _version() -> str:
    """The installed distribution's version (pyproject's), or a note where the package is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minbert")
    except PackageNotFoundError:
        return "(not installed: pip install -e .)"


def _plan_profiles() -> list[str]:
    """The profiles of the packaged study plan, in its order (for --profile's help)."""
    from importlib import resources

    import yaml

    return list(yaml.safe_load(resources.files("minbert_core").joinpath("study.yaml").read_text())["profiles"])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = argparse.ArgumentParser(prog="minbert", description="minBERT multi-task study toolkit")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("sanity", help="model parity with transformers and the AdamW check, as a table")
    s.add_argument("--checkpoint", default="minilm-l6")
    s.add_argument("--opt-steps", type=int, default=1000)
    s.set_defaults(fn=_cmd_sanity)

    from .train_config import TrainConfig

    sentiment = TrainConfig(tasks=("sst",), strategy="single", single_task="sst")
    t = sub.add_parser("train", help="one sentiment run (SST-5 or CFIMDB; pretrain or finetune)")
    t.add_argument("--task", choices=["sst", "cfimdb"], default=None, help="sentiment task (default: sst)")
    t.add_argument("--resume", action="store_true", help=RESUME_HELP)
    _add_config_flags(t, sentiment, hidden=MULTITASK_KEYS)
    t.set_defaults(fn=_cmd_train, defaults=sentiment)
    m = sub.add_parser("multitask", help="one multi-task run (strategy single, sum, pcgrad or another of --strategy)")
    m.add_argument("--resume", action="store_true", help=RESUME_HELP)
    _add_config_flags(m, TrainConfig())
    m.set_defaults(fn=_cmd_train, defaults=TrainConfig())

    sp = sub.add_parser("study", help="run the study plan's notebooks with papermill, then the report")
    sp.add_argument("--profile", default="quick", help=f"{' | '.join(_plan_profiles())} (default: quick)")
    sp.add_argument("--dry-run", action="store_true", help="print every run with its resolved parameters; run nothing")
    sp.add_argument("--json", action="store_true", help="with --dry-run: one JSON object per run and line")
    sp.add_argument("--out", help="study folder (default: runs/study-<profile>)")
    sp.add_argument("--plan", help="a study plan YAML (default: the packaged minbert_core/study.yaml)")
    sp.add_argument("--notebooks", help="folder of the notebooks (default: the project's notebooks/)")
    sp.add_argument("--report-dir", help="where figures and tables/ go (default: <out>/report)")
    sp.add_argument("--jobs", type=int, default=1, help="notebooks run at once (default: 1)")
    sp.add_argument("--cluster", metavar="ADDRESS", help="run the notebooks on a Dask scheduler (tcp://host:8786), "
                    "or local:N for N local worker processes; needs pip install -e '.[cluster]'")
    sp.add_argument("--no-report", action="store_true", help="run the notebooks only, not the report")
    sp.add_argument("--gpus-per-run", type=int, default=0,
                    help="with --cluster: the GPU resource each training run asks of the workers (default: 0)")
    sp.set_defaults(fn=_cmd_study, on_interrupt="interrupted; run the same command again to continue: completed "
                    "runs are skipped and interrupted training runs resume from their last checkpoint")
    _add_bench_parser(sub)
    ex = sub.add_parser("export", help="a run's best weights as a Hugging Face / sentence-transformers folder, "
                        "its task heads in minbert_heads.safetensors (README: Export)")
    ex.add_argument("run", help="the run folder")
    ex.add_argument("out", help="the folder to write (must not exist, or be empty)")
    ex.set_defaults(fn=_cmd_export)
    _add_tune_parser(sub)
    rp = sub.add_parser("report", help="rebuild a study's tables and figures from its run folders")
    rp.add_argument("study_dir")
    rp.add_argument("--report-dir")
    rp.set_defaults(fn=_cmd_report)

    _add_data_commands(sub)
    return p


def _add_data_commands(sub) -> None:
    """`minbert data fetch` and `minbert data stats`."""
    d = sub.add_parser("data", help="get and inspect the data files").add_subparsers(dest="data_cmd", required=True)
    f = d.add_parser("fetch", help="download the CS224N data files, verified against their git blob ids")
    f.add_argument("--dest", help="target folder (default: $MINBERT_DATA or ./data)")
    f.add_argument("--from", metavar="DIR", help="copy from a local folder instead of downloading")
    f.add_argument("--base-url", help="download from this URL prefix instead of upstream GitHub")
    f.add_argument("--only", nargs="+", metavar="FILE", help="fetch only these files")
    f.add_argument("--deadline", type=float, default=600.0, metavar="S",
                   help="seconds one file's whole download may take (default 600)")
    f.set_defaults(fn=_cmd_fetch)
    st = d.add_parser("stats", help="padded-token share of length-bucketed vs random batches")
    st.add_argument("--task", default="sst")
    st.add_argument("--split", default="train")
    st.add_argument("--batch-size", type=int, default=32)
    st.add_argument("--max-length", type=int, default=128)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--checkpoint", default="minilm-l6")
    st.set_defaults(fn=_cmd_stats)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `minbert` console script."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("papermill").setLevel(logging.WARNING)  # its per-notebook INFO lines drown the progress
    if not a.verbose:  # Dask logs every connection of a --cluster study, and its shutdown, at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    from .train import TrainingDiverged

    try:
        return a.fn(a)
    except (ValueError, FileNotFoundError) as e:  # the user's input: a flag, a file, a key
        if a.debug:
            raise
        for line in str(e).splitlines() or [""]:  # a plan's mistakes: one line each
            print(f"error: {line}", file=sys.stderr)
        return 2
    except (TrainingDiverged, OSError, RuntimeError) as e:  # the run itself failed
        if a.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM of a study: one line, no traceback
        print(getattr(a, "on_interrupt", "interrupted; run the same command with --resume to continue"),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
