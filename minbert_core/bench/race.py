"""`minbert bench --race`: time to accuracy (issue 14). Not run in CI; writes its own section.

(a) three single-task models fine-tuned with plain `transformers`: the checkpoint's BertModel, mean
    pooling, one linear head, torch AdamW lr 3e-5, batch 32, length-bucketed batches; SST-5 1 epoch,
    STS-B 2 epochs, Quora (the available training rows) 1 epoch. Pairs are encoded together.
(b) one minbert multi-task model (the `cpu` profile's Table 2 setting, summed loss) trained until its
    dev overall reaches (a)'s (`target_overall`), evaluated every `eval_every` steps, within a training
    time budget of `budget` x (a)'s total.

Both are scored on the full SST and STS dev sets and the same seeded sample of Quora dev rows; only
training time counts (evaluation is outside it on both sides)."""
from __future__ import annotations

import csv
import json
import tempfile
import time

import torch

SINGLE = (("sst", 1), ("sts", 2), ("para", 1))  # (task, epochs) of side (a)


def _single_task(task: str, epochs: int, checkpoint: str, train_limit: int, dev_limit: int, max_length: int,
                 seed: int = 0, lr: float = 3e-5, batch_size: int = 32) -> dict:
    """One plain-transformers model for one task: its training time and dev metric."""
    import transformers

    from ..batching import BucketBatchSampler, TokenizedSplit
    from ..checkpoints import resolve_checkpoint
    from ..data import load_split
    from ..multitask import masked_mean, tokenizer_name
    from ..tasks import get_task
    from ..tokenizer import load_tokenizer

    torch.manual_seed(seed)
    spec, tok = get_task(task), load_tokenizer(tokenizer_name(checkpoint))
    train = TokenizedSplit.build(load_split(task, "train", limit=train_limit or None), tok, max_length)
    dev = TokenizedSplit.build(load_split(task, "dev", limit=dev_limit or None), tok, max_length)
    transformers.utils.logging.disable_progress_bar()
    model = transformers.BertModel.from_pretrained(str(resolve_checkpoint(checkpoint))).train()
    head = torch.nn.Linear(model.config.hidden_size, spec.out_dim)
    opt = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=lr)
    sampler, train_s, steps = BucketBatchSampler(train.lengths, batch_size, seed=seed), 0.0, 0

    def forward(b):
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                  token_type_ids=b["token_type_ids"]).last_hidden_state
        return head(masked_mean(h, b["attention_mask"]))
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for idx in sampler.batches():
            t0 = time.perf_counter()
            b = train.batch(idx)
            opt.zero_grad(set_to_none=True)
            spec.loss(forward(b), b["labels"]).backward()
            opt.step()
            train_s += time.perf_counter() - t0
            steps += 1
    model.eval()
    preds = torch.empty(len(dev))
    with torch.no_grad():
        for idx in BucketBatchSampler(dev.lengths, 64, shuffle=False):
            preds[idx] = spec.predict(forward(dev.batch(idx))).float()
    return {"task": task, "epochs": epochs, "steps": steps, "train_rows": len(train), "dev_rows": len(dev),
            "train_time_s": train_s, "dev": spec.metric(preds, dev.labels.float())}


def race(checkpoint: str = "minilm-l6", budget: float = 1.0, eval_every: int = 50, train_limit: int = 0,
         dev_limits: dict | None = None, max_length: int = 128, multitask: dict | None = None,
         say=print) -> dict:
    """Side (a), then side (b) with (a)'s overall as its target."""
    from ..tasks import overall_score
    from ..train import TrainConfig, train

    dev_limits = {"sst": 0, "sts": 0, "para": 5000} if dev_limits is None else dev_limits
    a = []
    for task, epochs in SINGLE:
        say(f"race (a): transformers, {task}, {epochs} epoch(s) ...")
        a.append(_single_task(task, epochs, checkpoint, train_limit, dev_limits.get(task, 0), max_length))
        say(f"    {task}: dev {a[-1]['dev']:.4f} after {a[-1]['train_time_s']:.0f} s of training")
    a_dev = {r["task"]: r["dev"] for r in a}
    target = overall_score(a_dev)
    a_time = sum(r["train_time_s"] for r in a)
    mt = dict(checkpoint=checkpoint, strategy="sum", tasks=("sst", "para", "sts"), pooling="mean",
              pair_encoding="cross", batch_size=16, lr_finetune=5e-5, lr_head=1e-3, loss_weights="sts=0.5",
              max_length=max_length, train_limit=train_limit, eval_limit=0,
              dev_limits=",".join(f"{t}={n}" for t, n in dev_limits.items() if n), epoch_rule="fixed",
              steps_per_epoch=eval_every, epochs=100, target_overall=target, time_budget_s=budget * a_time,
              telemetry_every=0, checkpoint_every=0, seed=11711) | (multitask or {})
    say(f"race (b): minbert multi-task until dev overall {target:.4f}, within {budget * a_time:.0f} s of training ...")
    with tempfile.TemporaryDirectory() as d:
        run = train(TrainConfig(**mt, runs_dir=d, run_id="race"), progress=False)
        m = json.loads((run / "metrics.json").read_text())
        with (run / "history.csv").open() as f:
            dev_curve = [{"step": int(r["step"]), **{k[4:]: float(r[k]) for k in r if k.startswith("dev_") and r[k]}}
                         for r in csv.DictReader(f) if r["kind"] == "dev"]
    b = {"steps": m["steps"], "train_time_s": m["train_time_s"], "best_dev": m["best_dev"], "stopped": m["stopped"],
         "final_dev": m["final_dev"], "reached": m["best_dev"].get("overall", 0) >= target, "settings": mt}
    return {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "checkpoint": checkpoint,
            "a": {"runs": a, "dev": a_dev | {"overall": target}, "train_time_s": a_time}, "b": b,
            "time_ratio": b["train_time_s"] / a_time, "target_ratio": 0.8, "budget": budget,
            "dev_curve": dev_curve}
