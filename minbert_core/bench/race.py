"""`minbert bench --race`: time to accuracy, several seeds per side (issues 14 and 23). Not run in CI; it
writes its own section of BENCHMARKS.md and a figure.

(a) three single-task models fine-tuned with plain `transformers`: the checkpoint's BertModel, mean
    pooling, one linear head, torch AdamW lr 3e-5, batch 32, length-bucketed batches; SST-5 1 epoch,
    STS-B 2 epochs, Quora (the available training rows) 1 epoch; pairs encoded together. Run twice: in
    fp32 (transformers' defaults, what a user gets) and under bf16 autocast (the fair peer on hardware
    that multiplies bf16 natively).
(b) one minbert multi-task model (the `cpu` profile's Table 2 setting, summed loss) at `precision`, scored
    on dev every `eval_every` steps until its selection-half overall reaches both (a) sides' selection-half
    overall, within `budget` x the slower (a) side's training time.

Seed i of (b) races seed i of each (a) side. The dev rows (the full SST and STS dev sets and the same seeded
5,000 Quora dev rows on both sides) are split once into two fixed halves (`dev_halves`), the same for every
side and seed: the selection half makes every choice ((b)'s stopping point, (a)'s epoch), and every number
reported comes from the report half, so no side is scored on the rows that chose its stopping point. Only
training time counts (evaluation is outside it on both sides).
"""
from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from ..tasks import get_task, overall_score
from ..train_hooks import Hook
from .harness import utc_minute

SINGLE = (("sst", 1), ("sts", 2), ("para", 1))  # (task, epochs) of side (a)
A_PRECISIONS = ("fp32", "bf16")  # side (a)'s two runs: transformers' default, and the fair bf16 peer
TARGETS = {"fp32": 0.5, "bf16": 0.7}  # (b)'s time to (a)'s overall, at most this times (a)'s training time
HALVES = ("selection", "report")
HALF_SEED = 23  # the dev halves' seed: one split for every side and seed
STUDY_SEEDS = (11711, 21111, 100)  # the study's seeds (study.yaml), the race's first three


def race_seeds(n: int) -> list[int]:
    """The race's n seeds: the study's three first, then 101, 102, ... Raises ValueError for n < 1."""
    if n < 1:
        raise ValueError(f"--race-seeds must be at least 1; got {n}")
    return [*STUDY_SEEDS, *range(101, 101 + max(0, n - len(STUDY_SEEDS)))][:n]


def dev_halves(n: int, seed: int = HALF_SEED) -> dict[str, list[int]]:
    """n dev rows split once into two disjoint halves that cover them: {'selection': rows, 'report': rows},
    each a sorted list of row indices; sizes differ by at most one; depends on n and seed only.

    Raises ValueError for n < 2 (nothing to halve)."""
    if n < 2:
        raise ValueError(f"dev halves: {n} dev row(s) cannot be split in two; the race needs at least 2 "
                         "dev rows per task (raise dev_limits)")
    perm = random.Random(seed).sample(range(n), n)
    return {"selection": sorted(perm[: n // 2]), "report": sorted(perm[n // 2:])}


def half_scores(preds: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                halves: dict[str, dict[str, list[int]]]) -> dict[str, dict[str, float]]:
    """Each task's dev metric on each half, with the overall where sst, para and sts are all present:
    {'selection': {task: metric, 'overall': ...}, 'report': {...}}. preds and labels: task -> (rows,) over
    the task's whole dev set, in its row order; halves: task -> dev_halves(rows)."""
    out = {}
    for h in HALVES:
        m = {t: get_task(t).metric(p[halves[t][h]], labels[t].float()[halves[t][h]]) for t, p in preds.items()}
        ov = overall_score(m)
        out[h] = m | ({"overall": ov} if ov is not None else {})
    return out


def rows_digest(ids: list[str], halves: dict[str, list[int]]) -> dict[str, str]:
    """A fingerprint of the example ids in each half ({'selection': hex, 'report': hex}): equal on two
    sides means that they chose and reported on the same rows."""
    return {h: hashlib.sha1("\n".join(ids[i] for i in halves[h]).encode()).hexdigest()[:12] for h in HALVES}


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock times it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _side_a_data(checkpoint: str, train_limit: int, dev_limits: dict[str, int], max_length: int) -> dict:
    """Side (a)'s rows, read and tokenized once for every seed and precision: {task: {'train', 'dev'}}
    (TokenizedSplit; dev: load_split's seeded sample of dev_limits[task] rows, as side (b) reads it)."""
    from ..batching import TokenizedSplit
    from ..data import load_split
    from ..multitask import tokenizer_name
    from ..tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_name(checkpoint))
    limits = {"train": lambda t: train_limit, "dev": lambda t: dev_limits.get(t, 0)}
    return {t: {s: TokenizedSplit.build(load_split(t, s, limit=lim(t) or None), tok, max_length)
                for s, lim in limits.items()} for t, _ in SINGLE}


def _single_model(task: str, checkpoint: str, seed: int, device: torch.device):
    """Side (a)'s seeded model for one task: (the checkpoint's BertModel, a fresh linear head)."""
    import transformers

    from ..checkpoints import resolve_checkpoint

    torch.manual_seed(seed)
    transformers.utils.logging.disable_progress_bar()
    model = transformers.BertModel.from_pretrained(str(resolve_checkpoint(checkpoint))).to(device)
    return model, torch.nn.Linear(model.config.hidden_size, get_task(task).out_dim).to(device)


def _forward(model, head, precision: str, device: torch.device) -> Callable[[dict], torch.Tensor]:
    """Side (a)'s forward pass at a precision: a batch's head outputs, in fp32."""
    from ..multitask import masked_mean

    def forward(b: dict) -> torch.Tensor:
        b = {k: v.to(device) for k, v in b.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                      token_type_ids=b["token_type_ids"]).last_hidden_state
            return head(masked_mean(h, b["attention_mask"])).float()
    return forward


@torch.no_grad()
def _predict(forward, model, task: str, dev) -> torch.Tensor:
    """Side (a)'s submitted values for every dev row, in row order."""
    from ..batching import BucketBatchSampler

    model.eval()
    preds = torch.empty(len(dev))
    for idx in BucketBatchSampler(dev.lengths, 64, shuffle=False):
        preds[idx] = get_task(task).predict(forward(dev.batch(idx))).float().cpu()
    model.train()
    return preds


def _single_task(task: str, epochs: int, *, data: dict, checkpoint: str, seed: int, precision: str,
                 device: torch.device, halves: dict[str, list[int]], lr: float = 3e-5, batch_size: int = 32) -> dict:
    """One plain-transformers model for one task (`data`: its 'train' and 'dev' TokenizedSplit): after each
    epoch its training time so far and its dev metric on each half (evaluation untimed); the epoch it
    reports is the one best on the selection half."""
    from ..batching import BucketBatchSampler

    model, head = _single_model(task, checkpoint, seed, device)
    train, dev = data["train"], data["dev"]
    spec, forward = get_task(task), _forward(model, head, precision, device)
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=lr)
    sampler, train_s, steps, by_epoch = BucketBatchSampler(train.lengths, batch_size, seed=seed), 0.0, 0, []
    model.train()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for idx in sampler.batches():
            t0 = time.perf_counter()
            b = train.batch(idx)
            opt.zero_grad(set_to_none=True)
            spec.loss(forward(b), b["labels"].to(device)).backward()
            opt.step()
            _sync(device)
            train_s, steps = train_s + time.perf_counter() - t0, steps + 1
        s = half_scores({task: _predict(forward, model, task, dev)}, {task: dev.labels}, {task: halves})
        by_epoch.append({"epoch": epoch + 1, "steps": steps, "train_time_s": train_s,
                         **{h: s[h][task] for h in HALVES}})
    best = max(by_epoch, key=lambda e: e["selection"])  # the first of equals: the earlier epoch
    return {"task": task, "epochs": epochs, "steps": steps, "train_rows": len(train), "dev_rows": len(dev),
            "train_time_s": train_s, "by_epoch": by_epoch, "chosen_epoch": best["epoch"],
            "time_s": best["train_time_s"], "selection": best["selection"], "report": best["report"],
            "rows": rows_digest([e.id for e in dev.split.examples], halves)}


def side_a(precision: str, seed: int, halves: dict[str, dict[str, list[int]]], data: dict, **kw) -> dict:
    """Side (a) at one precision and seed: three single-task models (SINGLE; `data` from _side_a_data), each
    at its selection-half epoch; their overall on each half, and `time_s`, the training time to those epochs
    (when (a) had that overall: its three models exist only once all are trained). kw: _single_task's
    checkpoint and device."""
    runs = [_single_task(t, e, data=data[t], seed=seed, precision=precision, halves=halves[t], **kw)
            for t, e in SINGLE]
    scores = {h: {r["task"]: r[h] for r in runs} for h in HALVES}
    return {"precision": precision, "seed": seed, "runs": runs, "time_s": sum(r["time_s"] for r in runs),
            "train_time_s": sum(r["train_time_s"] for r in runs), "steps": sum(r["steps"] for r in runs),
            **{h: s | {"overall": overall_score(s)} for h, s in scores.items()}}


class RaceReferee(Hook):
    """Side (b)'s referee: after each dev evaluation, the run's metrics on each dev half (from that
    evaluation's own predictions: no second pass), the first point at which the selection-half overall
    reached each target, and a stop once every target is reached."""

    def __init__(self, halves: dict[str, dict[str, list[int]]], targets: dict[str, float]):
        self.halves, self.targets = halves, targets
        self.curve: list[dict] = []  # per evaluation: step, train_time_s, selection and report scores
        self.reached: dict[str, dict] = {}  # target name -> the curve point where it was first reached
        self.rows: dict[str, dict[str, str]] = {}  # task -> rows_digest of the run's dev halves

    def on_start(self, trainer, global_step: int) -> None:
        for t, h in self.halves.items():
            dev, n = trainer.data[t]["dev"], len(h["selection"]) + len(h["report"])
            if len(dev) != n:
                raise ValueError(f"race: (b)'s {t} dev set has {len(dev)} rows and its halves {n}; both sides "
                                 "must read the same dev rows (pass the same dev_limits to both)")
            self.rows[t] = rows_digest([e.id for e in dev.split.examples], h)

    def on_epoch_end(self, trainer, epoch: int, dev: dict | None, global_step: int) -> None:
        if dev is None:  # a rank that does not evaluate
            return
        preds = {t: trainer.evaluator.last_predictions[t] for t in self.halves}
        s = half_scores(preds, {t: trainer.data[t]["dev"].labels for t in self.halves}, self.halves)
        point = {"step": global_step, "train_time_s": trainer.state.train_time, **s}
        self.curve.append(point)
        for name, target in self.targets.items():
            if name not in self.reached and s["selection"]["overall"] >= target:
                self.reached[name] = point

    def should_stop(self, trainer, epoch: int, dev: dict | None) -> str:
        if not self.targets or len(self.reached) < len(self.targets):
            return ""
        return "selection-half overall reached " + ", ".join(f"(a) {k}'s {v:.4f}" for k, v in self.targets.items())


def side_b(mt: dict, seed: int, halves: dict[str, dict[str, list[int]]], targets: dict[str, float]) -> dict:
    """Side (b) at one seed: the multi-task run (TrainConfig fields `mt`) refereed by RaceReferee; per (a)
    side, the training time and step at which its selection-half overall first reached that side's
    (None where it did not), and the report-half scores there."""
    from ..train import TrainConfig, train

    ref = RaceReferee(halves, targets)
    with tempfile.TemporaryDirectory() as d:
        run = train(TrainConfig(**(mt | {"seed": seed}), runs_dir=d, run_id="race"), progress=False, hooks=[ref])
        m = json.loads((run / "metrics.json").read_text())
        precision = json.loads((run / "config.json").read_text())["resolved"]["precision"]
    reached = {k: ({"time_s": p["train_time_s"], "step": p["step"], "report": p["report"],
                    "selection_overall": p["selection"]["overall"]} if (p := ref.reached.get(k)) else None)
               for k in targets}
    return {"seed": seed, "precision": precision, "steps": m["steps"], "train_time_s": m["train_time_s"],
            "stopped": m["stopped"], "targets": targets, "reached": reached, "curve": ref.curve, "rows": ref.rows}


def _multitask_settings(checkpoint: str, eval_every: int, train_limit: int, dev_limits: dict[str, int],
                        max_length: int, precision: str, device: str) -> dict:
    """Side (b)'s TrainConfig fields: the `cpu` profile's Table 2 setting, summed loss, every dev row."""
    return dict(checkpoint=checkpoint, strategy="sum", tasks=("sst", "para", "sts"), pooling="mean",
                pair_encoding="cross", batch_size=16, lr_finetune=5e-5, lr_head=1e-3, loss_weights="sts=0.5",
                max_length=max_length, train_limit=train_limit, eval_limit=0,
                dev_limits=",".join(f"{t}={n}" for t, n in dev_limits.items() if n), epoch_rule="fixed",
                steps_per_epoch=eval_every, epochs=100, target_overall=0.0, telemetry_every=0,
                checkpoint_every=0, predict_test=False, precision=precision, device=device)


def race(checkpoint: str = "minilm-l6", seeds: int = 3, budget: float = 1.5, eval_every: int = 50,
         train_limit: int = 0, dev_limits: dict | None = None, max_length: int = 128, precision: str = "auto",
         device: str = "cpu", multitask: dict | None = None, say: Callable[[str], None] = print,
         progress: Path | None = None) -> dict:
    """Per seed: side (a) in fp32 and in bf16, then side (b) until its selection-half overall reaches both,
    within `budget` x the slower (a) side's training time. `precision`: (b)'s (fp32 | bf16 | auto);
    `multitask`: TrainConfig fields overriding (b)'s settings. Returns the results BENCHMARKS.json keeps.

    `progress`: a JSON file that keeps every finished side (one (a) precision or (b) at one seed) as it
    ends, so that a race stopped part way resumes where it stopped; its sides are reused only when the
    race it records is this one (same settings, seeds so far, dev rows and hardware), else ValueError
    naming the file and the first key that differs."""
    from ..build import resolve_device
    from ..precision import hardware_record

    seed_list = race_seeds(seeds)  # a bad count fails before minutes of loading
    dev_limits = {"sst": 0, "sts": 0, "para": 5000} if dev_limits is None else dev_limits
    data, dev = _side_a_data(checkpoint, train_limit, dev_limits, max_length), resolve_device(device)
    halves = {t: dev_halves(len(d["dev"])) for t, d in data.items()}  # both sides read these rows
    mt = _multitask_settings(checkpoint, eval_every, train_limit, dev_limits, max_length, precision, str(dev))
    mt |= multitask or {}
    head = {"format": 2, "checkpoint": checkpoint, "hardware": hardware_record(dev),
            "torch_threads": torch.get_num_threads(), "versions": _versions(), "budget": budget,
            "targets": TARGETS, "half_seed": HALF_SEED,
            "dev_rows": {t: {h: len(v[h]) for h in HALVES} for t, v in halves.items()}, "settings": mt}
    rows = {t: rows_digest([e.id for e in d["dev"].split.examples], halves[t]) for t, d in data.items()}
    done, t0 = _resume(progress, head, seed_list, rows), time.perf_counter()
    a: dict[str, list[dict]] = {p: [] for p in A_PRECISIONS}
    b: list[dict] = []
    for seed in seed_list:
        for p in A_PRECISIONS:
            if (x := _finished(done["a"][p], seed)) is None:
                say(f"race, seed {seed}, (a) {p}: three transformers models ...")
                x = side_a(p, seed, halves, data, checkpoint=checkpoint, device=dev) | {"date_utc": utc_minute()}
            else:
                say(f"race, seed {seed}, (a) {p}: finished earlier ({progress}, {x.get('date_utc', '?')} UTC)")
            a[p].append(x)
            _save(progress, head, a, b)
            say(f"    report-half overall {x['report']['overall']:.4f} after {x['time_s']:.0f} s")
        targets = {p: a[p][-1]["selection"]["overall"] for p in A_PRECISIONS}
        if (x := _finished(done["b"], seed)) is None:
            cap = budget * max(a[p][-1]["train_time_s"] for p in A_PRECISIONS)
            say(f"race, seed {seed}, (b): minbert multi-task until its selection-half overall reaches "
                f"{max(targets.values()):.4f}, within {cap:.0f} s of training ...")
            x = side_b(mt | {"time_budget_s": cap}, seed, halves, targets) | {"date_utc": utc_minute()}
        else:
            say(f"race, seed {seed}, (b): finished earlier ({progress}, {x.get('date_utc', '?')} UTC)")
        b.append(x)
        _save(progress, head, a, b)
    return head | {"date_utc": utc_minute(), "wall_s_this_session": time.perf_counter() - t0, "seeds": seed_list,
                   "a": a, "b": b}


def _versions() -> dict[str, str]:
    """What a resumed race must share with the sides it reuses: torch's and transformers' versions and a
    digest of minbert_core's Python sources (any code change starts the race afresh)."""
    import transformers

    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha1()
    for f in sorted(pkg.rglob("*.py")):
        h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes())
    return {"torch": torch.__version__, "transformers": transformers.__version__, "minbert_core": h.hexdigest()[:12]}


def _finished(sides: list[dict], seed: int) -> dict | None:
    """The side recorded for `seed` among a progress file's finished sides, or None."""
    return next((x for x in sides if x["seed"] == seed), None)


def _resume(progress: Path | None, head: dict, seeds: list[int], rows: dict[str, dict[str, str]]) -> dict:
    """The finished sides of a progress file that records this race ({'a': {precision: [..]}, 'b': [..]});
    none without the file. `rows`: task -> rows_digest of this race's dev halves, which every reused side
    must have read. Raises ValueError naming the file: damaged or not a progress record, a key that differs
    from `head`, a seed not among this race's, a side that read other dev rows, or a (b) side without the
    (a) sides whose targets it raced."""
    none = {"a": {p: [] for p in A_PRECISIONS}, "b": []}
    if progress is None or not progress.is_file():
        return none
    away = "move it away to start this race afresh"
    try:
        rec = json.loads(progress.read_text())
        fresh = json.loads(json.dumps(head, default=str))  # as it would be written: tuples as lists
        for k, v in fresh.items():
            if rec.get(k) != v:
                raise ValueError(f"{progress}: its {k!r} differs from this race's ({rec.get(k)!r} != {v!r}); "
                                 f"it records another race: {away}")
        done = {"a": {p: list(rec["a"][p]) for p in A_PRECISIONS}, "b": list(rec["b"])}
        sides = [*(("(a) " + p, x) for p in A_PRECISIONS for x in done["a"][p]), *(("(b)", x) for x in done["b"])]
        for name, x in sides:
            read = {r["task"]: r["rows"] for r in x["runs"]} if name != "(b)" else x["rows"]
            if x["seed"] not in seeds:
                raise ValueError(f"{progress}: it has {name} at seed {x['seed']}, not among this race's {seeds}; "
                                 "move it away or pass the --race-seeds it was run with")
            if read != rows:
                raise ValueError(f"{progress}: its {name} at seed {x['seed']} read other dev rows than this race's "
                                 f"(the data changed?): {away}")
        for x in done["b"]:  # a (b) side is reused only with the (a) sides it raced
            sides_a = {p: _finished(done["a"][p], x["seed"]) for p in A_PRECISIONS}
            raced = {p: side and side["selection"]["overall"] for p, side in sides_a.items()}
            if x["targets"] != raced:
                raise ValueError(f"{progress}: its (b) at seed {x['seed']} raced targets {x['targets']}, not its (a) "
                                 f"sides' {raced}: {away}")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError) as e:
        raise ValueError(f"{progress}: not a race progress record ({type(e).__name__}: {e}); {away}") from None
    return done


def _save(progress: Path | None, head: dict, a: dict, b: list) -> None:
    """Write the finished sides so far to the progress file (atomically), when there is one."""
    if progress is not None:
        from ..atomic import atomic_write_text

        progress.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(progress, json.dumps(head | {"a": a, "b": b}, indent=1, default=str))
