"""The benchmark cases: each measures one thing against its baseline in the same process."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Callable

import torch
import torch.nn.functional as F

from .harness import _ratio, _stats, alternate, matmul_peak, training_flops


# ---- 1. training step and evaluation: minBERT vs transformers.BertModel ----------------------------
def _models(checkpoint: str, device: torch.device):
    import transformers

    from ..checkpoints import resolve_checkpoint
    from ..model import BertModel

    transformers.utils.logging.disable_progress_bar()
    folder = resolve_checkpoint(checkpoint)
    ours = BertModel.from_pretrained(folder).to(device)
    ref = transformers.BertModel.from_pretrained(str(folder)).to(device)
    return ours, ref


def _batch(B: int, T: int, vocab: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (B, T), generator=g).to(device)
    am = torch.ones(B, T, dtype=torch.long, device=device)
    tt = torch.zeros(B, T, dtype=torch.long, device=device)
    y = torch.randint(0, 5, (B,), generator=g).to(device)
    return ids, am, tt, y


def _head_and_opt(model, fused: bool | None = None):
    """The benchmarked step's extras: a 5-way linear head on the pooled output, one AdamW over model and head."""
    head = torch.nn.Linear(model.config.hidden_size, 5).to(next(model.parameters()).device)
    return head, torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-5, fused=fused)


def _train_step(model, head, opt, batch, hf: bool, autocast: bool = False):
    ids, am, tt, y = batch

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=ids, attention_mask=am, token_type_ids=tt) if hf else model(ids, am, tt)
            loss = F.cross_entropy(head(out.pooler_output).float(), y)
        loss.backward()
        opt.step()
    return step


def _eval_step(model, batch, hf: bool):
    ids, am, tt, _ = batch

    @torch.no_grad()
    def step():
        model(input_ids=ids, attention_mask=am, token_type_ids=tt) if hf else model(ids, am, tt)
    return step


def bench_model(checkpoint: str = "minilm-l6", shapes=((32, 64), (32, 128)), steps: int = 10,
                warmup: int = 3, device: str = "cpu") -> list[dict]:
    """Training step (fwd + bwd + AdamW) and forward-only evaluation, ours vs transformers."""
    dev = torch.device(device)
    ours, ref = _models(checkpoint, dev)
    rows = []
    for B, T in shapes:
        batch = _batch(B, T, ours.config.vocab_size, dev)
        (h0, o0), (h1, o1) = _head_and_opt(ours), _head_and_opt(ref)
        ours.train(), ref.train()
        t = alternate({"ours": _train_step(ours, h0, o0, batch, False),
                       "transformers": _train_step(ref, h1, o1, batch, True)}, steps, warmup)
        rows.append({"what": f"training step {B}x{T}", "B": B, "T": T, "ours_s": _stats(t["ours"]),
                     "transformers_s": _stats(t["transformers"]), "speed_ratio": _ratio(t["transformers"], t["ours"]),
                     "tokens_per_s_ours": B * T / statistics.median(t["ours"])})
        ours.eval(), ref.eval()
        t = alternate({"ours": _eval_step(ours, batch, False), "transformers": _eval_step(ref, batch, True)},
                      steps, warmup)
        rows.append({"what": f"evaluation forward {B}x{T}", "B": B, "T": T, "ours_s": _stats(t["ours"]),
                     "transformers_s": _stats(t["transformers"]), "speed_ratio": _ratio(t["transformers"], t["ours"]),
                     "sentences_per_s_ours": B / statistics.median(t["ours"]),
                     "sentences_per_s_transformers": B / statistics.median(t["transformers"])})
    return rows


def bench_precision(checkpoint: str = "minilm-l6", shapes=((32, 64), (32, 128)), steps: int = 8,
                    warmup: int = 2, device: str = "cpu") -> dict:
    """The training step (fwd + bwd + AdamW) of minBERT and transformers, each in fp32 and under bf16
    autocast, four contenders alternating in one process; speeds against transformers fp32 (per round, then
    summarised), and each contender's share of the measured fp32 and bf16 matmul rates (issue 23).

    Returns {"rows": [{"shape", contender: {"s", "speed_vs_transformers_fp32", "gflops",
    "share_fp32_matmul", "share_bf16_matmul"}}], "matmul_fp32": ..., "matmul_bf16": ...,
    "hardware": precision.hardware_record}."""
    from ..precision import hardware_record
    from .harness import matmul_peak, training_flops

    dev = torch.device(device)
    ours, ref = _models(checkpoint, dev)
    peaks = {"fp32": matmul_peak(1024, 8, torch.float32, device), "bf16": matmul_peak(1024, 8, torch.bfloat16, device)}
    rows = []
    for B, T in shapes:
        batch = _batch(B, T, ours.config.vocab_size, dev)
        (h0, o0), (h1, o1) = _head_and_opt(ours), _head_and_opt(ref)
        ours.train(), ref.train()
        steps_ = {"transformers fp32": _train_step(ref, h1, o1, batch, True),
                  "transformers bf16": _train_step(ref, h1, o1, batch, True, autocast=True),
                  "minBERT fp32": _train_step(ours, h0, o0, batch, False),
                  "minBERT bf16": _train_step(ours, h0, o0, batch, False, autocast=True)}
        t = alternate(steps_, steps, warmup)
        flops = training_flops(ours.config, B, T)
        row = {"shape": f"{B}x{T}"}
        for name, times in t.items():
            med = statistics.median(times)
            row[name] = {"s": _stats(times), "speed_vs_transformers_fp32": _ratio(t["transformers fp32"], times),
                         "gflops": flops / med / 1e9,
                         **{f"share_{k}_matmul": flops / med / 1e9 / v["gflops"]["median"] for k, v in peaks.items()}}
        rows.append(row)
    return {"rows": rows, "matmul_fp32": peaks["fp32"], "matmul_bf16": peaks["bf16"], "hardware": hardware_record(dev)}


def bench_dropout(shapes=((32, 12, 128, 128), (32, 128, 384)), p: float = 0.1, steps: int = 15,
                  warmup: int = 3) -> list[dict]:
    """Dropout forward + backward: minBERT's CPU Dropout (rand >= p) vs F.dropout (bernoulli_)."""
    from ..model import Dropout

    ours = Dropout(p).train()
    rows = []
    for shape in shapes:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn(*shape)

        def run(fn):
            def step():
                fn(x).backward(g)
                x.grad = None
            return step
        t = alternate({"ours": run(ours), "torch": run(lambda v: F.dropout(v, p, True))}, steps, warmup)
        rows.append({"what": "dropout fwd+bwd " + "x".join(map(str, shape)), "shape": "x".join(map(str, shape)),
                     "ours_s": _stats(t["ours"]),
                     "torch_s": _stats(t["torch"]), "speed_ratio": _ratio(t["torch"], t["ours"])})
    return rows


def bench_optimizer(steps: int = 20, warmup: int = 3, checkpoint: str = "minilm-l6") -> dict:
    """Our AdamW step (multi-tensor, and the per-parameter loop) vs torch.optim.AdamW (its default
    foreach kernel) on the encoder's parameters."""
    from ..model import BertModel
    from ..optim import AdamW

    a, b, c = (BertModel.from_pretrained(checkpoint) for _ in range(3))
    for m in (a, b, c):
        for p in m.parameters():
            p.grad = torch.randn_like(p) * 1e-3
    oa = AdamW(a.parameters(), lr=1e-5, weight_decay=0.01)
    ol = AdamW(c.parameters(), lr=1e-5, weight_decay=0.01, foreach=False)
    ob = torch.optim.AdamW(b.parameters(), lr=1e-5, weight_decay=0.01)
    t = alternate({"ours": oa.step, "ours_loop": ol.step, "torch": ob.step}, steps, warmup)
    return {"what": "AdamW step (MiniLM parameters)", "ours_s": _stats(t["ours"]), "torch_s": _stats(t["torch"]),
            "ours_loop_s": _stats(t["ours_loop"]), "speed_ratio": _ratio(t["torch"], t["ours"]),
            "foreach_speedup": _ratio(t["ours_loop"], t["ours"])}


# ---- 2. multi-task step: sum vs pcgrad vs a naive PCGrad --------------------------------------------
def _multitask_setup(checkpoint: str, B: int, T: int, device: torch.device):
    from ..multitask import MultitaskBert, load_encoder
    from ..optim import AdamW

    torch.manual_seed(0)
    model = MultitaskBert(load_encoder(checkpoint), ("sst", "para", "sts")).to(device).train()
    opt = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batches = {}
    for i, task in enumerate(("sst", "para", "sts")):
        ids, am, tt, y = _batch(B, T, model.encoder.config.vocab_size, device, seed=i)
        if task != "sst":
            tt[:, T // 2:] = 1
        labels = y if task == "sst" else (y % 2 if task == "para" else y.float())
        batches[task] = {"input_ids": ids, "attention_mask": am, "token_type_ids": tt, "labels": labels}
    return model, opt, batches


def _strategy_step(name: str, model, opt, batches, autocast: bool = False, dist=None) -> Callable[[], None]:
    """One optimizer step of a strategy: the Trainer's `train_step`, or the naive PCGrad contender. With
    `dist` (several ranks, each on its share of the batch): task gradients summed over ranks before
    combining, then the heads' gradients."""
    from ..step import train_step
    from ..strategies import STRATEGIES, get_strategy
    from ..tasks import get_task

    shared = model.shared_groups()
    strat = get_strategy(name if name in STRATEGIES else "sum", seed=0)  # naive-pcgrad, sum+telemetry: below
    strat.bind(list(batches))
    record = name == "sum+telemetry"  # the summed loss, measuring conflicts on every step
    share = 1.0 / (dist.world if dist else 1)

    def loss_fn(task):
        def fn():
            with torch.autocast(batches[task]["input_ids"].device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(task, batches[task])
            return share * get_task(task).loss(out.float(), batches[task]["labels"])
        return fn

    def ours():  # the Trainer's own step
        train_step(strat, {t: loss_fn(t) for t in batches}, shared, model, opt, dist, record)

    def naive():
        # As common public PCGrad code does it: one graph for all tasks, backward(retain_graph=True)
        # per task, a deep copy of every parameter's gradient per task, projection over all parameters.
        opt.zero_grad(set_to_none=True)
        params = [p for p in model.parameters() if p.requires_grad]
        losses = [loss_fn(t)() for t in batches]
        grads = []
        for loss in losses:
            opt.zero_grad(set_to_none=True)
            loss.backward(retain_graph=True)
            grads.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().clone()
                                    for p in params]))
        projected = [g.clone() for g in grads]
        order = torch.randperm(len(grads)).tolist()
        for gi in projected:
            for j in order:
                dot = gi @ grads[j]
                if dot < 0:
                    gi -= dot / (grads[j] @ grads[j]) * grads[j]
        total = torch.stack(projected).sum(0)
        off = 0
        for p in params:
            p.grad = total[off:off + p.numel()].view_as(p).clone()
            off += p.numel()
        opt.step()

    return naive if name == "naive-pcgrad" else ours


def _peak_memory_child(strategy: str, checkpoint: str, B: int, T: int, steps: int, device: str) -> dict:
    """Run in a fresh process: peak memory of `steps` steps of one strategy."""
    dev = torch.device(device)
    model, opt, batches = _multitask_setup(checkpoint, B, T, dev)
    step = _strategy_step(strategy, model, opt, batches)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev) / 2**20
    else:
        # ru_maxrss would carry the parent's peak across fork/exec; VmHWM is this process's own,
        # and writing 5 to clear_refs resets it to the current size, so the peak is the steps'.
        before = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20, "before_mb": before}
    return {"peak_mb": _status_mb("VmHWM"), "before_mb": before}


def _status_mb(key: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _memory_child(name: str, checkpoint: str, B: int, T: int, device: str) -> dict:
    cmd = [sys.executable, "-m", "minbert_core.bench", "--memory-child", name, checkpoint, str(B), str(T), "3", device]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode:
        raise RuntimeError(f"memory measurement for {name} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_strategies(checkpoint: str = "minilm-l6", B: int = 16, T: int = 64, steps: int = 10, warmup: int = 2,
                     device: str = "cpu", strategies: tuple[str, ...] | None = None) -> dict:
    """Every gradient strategy's step time (alternating with the others in one process) and peak
    memory (a fresh process each), each relative to the summed loss."""
    from ..strategies import STRATEGIES

    names = tuple(strategies or STRATEGIES)
    names = names if "sum" in names else ("sum",) + names
    dev = torch.device(device)
    fns = {}
    for name in names:
        model, opt, batches = _multitask_setup(checkpoint, B, T, dev)
        fns[name] = _strategy_step(name, model, opt, batches)
    t = alternate(fns, steps, warmup, sync=(lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None))
    del fns
    mem = {name: _memory_child(name, checkpoint, B, T, device) for name in names}
    return {"shape": f"3 tasks x {B}x{T}", "strategies": {
        name: {"time_s": _stats(t[name]), "time_ratio_vs_sum": _stats([a / b for a, b in zip(t[name], t["sum"])]),
               "peak_mb": mem[name]["peak_mb"], "memory_ratio_vs_sum": mem[name]["peak_mb"] / mem["sum"]["peak_mb"]}
        for name in names}}


def bench_multitask(checkpoint: str = "minilm-l6", B: int = 16, T: int = 64, steps: int = 10, warmup: int = 2,
                    device: str = "cpu") -> dict:
    """Step time (alternating, same process) and peak memory (fresh process each) per strategy."""
    dev = torch.device(device)
    out: dict = {"shape": f"3 tasks x {B}x{T}", "time_s": {}, "memory_mb": {}}
    fns = {}
    for name in ("sum", "pcgrad", "naive-pcgrad", "sum+telemetry"):
        model, opt, batches = _multitask_setup(checkpoint, B, T, dev)
        fns[name] = _strategy_step(name, model, opt, batches)
    t = alternate(fns, steps, warmup, sync=(lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None))
    out["time_s"] = {k: _stats(v) for k, v in t.items()}
    out["time_ratio_pcgrad_vs_sum"] = _stats([p / s for p, s in zip(t["pcgrad"], t["sum"])])
    out["time_ratio_naive_vs_sum"] = _stats([p / s for p, s in zip(t["naive-pcgrad"], t["sum"])])
    out["time_ratio_telemetry_vs_sum"] = _stats([p / s for p, s in zip(t["sum+telemetry"], t["sum"])])
    del fns
    for name in ("sum", "pcgrad", "naive-pcgrad"):
        out["memory_mb"][name] = _memory_child(name, checkpoint, B, T, device)
    m = out["memory_mb"]
    out["memory_ratio_pcgrad_vs_sum"] = m["pcgrad"]["peak_mb"] / m["sum"]["peak_mb"]
    out["memory_ratio_naive_vs_sum"] = m["naive-pcgrad"]["peak_mb"] / m["sum"]["peak_mb"]
    return out


def bench_precision_study(checkpoint: str = "minilm-l6", B: int = 16, T: int = 64, steps: int = 10,
                              warmup: int = 2, threads: tuple[int, ...] = (1, 2)) -> dict:
    """The study's own step (summed loss, 3 tasks x B x T) in fp32 and under bf16 autocast, alternating in
    one process, at each torch thread count in `threads`: a study runs its notebooks at cores/jobs threads
    each (one thread each at two jobs on 2 cores), where the model part's 2-thread, 32-row step is not the
    study's shape. Returns {"shape", "rows": [{"threads", "fp32_s", "bf16_s" (seconds, min/median/max),
    "speed_bf16_vs_fp32" (fp32 time / bf16 time, per round)}]}; restores the thread count it found."""
    before = torch.get_num_threads()
    out = {"shape": f"3 tasks x {B}x{T}", "rows": []}
    model, opt, batches = _multitask_setup(checkpoint, B, T, torch.device("cpu"))
    fns = {"fp32": _strategy_step("sum", model, opt, batches),
           "bf16": _strategy_step("sum", model, opt, batches, autocast=True)}
    try:
        for n in threads:
            torch.set_num_threads(n)
            t = alternate(fns, steps, warmup)
            out["rows"].append({"threads": n, "fp32_s": _stats(t["fp32"]), "bf16_s": _stats(t["bf16"]),
                                "speed_bf16_vs_fp32": _ratio(t["fp32"], t["bf16"])})
    finally:
        torch.set_num_threads(before)
    return out


# ---- 3. length bucketing ---------------------------------------------------------------------------
def bench_bucketing(checkpoint: str = "minilm-l6", batch_size: int = 32, sample_batches: int = 12,
                    warmup: int = 2) -> dict:
    """Padded-token share over SST train, and training time per epoch (from a sample of batches)."""
    from ..batching import BucketBatchSampler, TokenizedSplit, padding_share, random_batches
    from ..data import load_split
    from ..model import BertModel
    from ..tokenizer import load_tokenizer

    ts = TokenizedSplit.build(load_split("sst", "train"), load_tokenizer(checkpoint))
    L = ts.lengths
    orders = {"bucketed": BucketBatchSampler(L, batch_size, seed=0).batches(),
              "random": random_batches(len(L), batch_size, seed=0)}
    model = BertModel.from_pretrained(checkpoint).train()
    head, opt = _head_and_opt(model)
    g = torch.Generator().manual_seed(0)
    pick = {k: torch.randperm(len(v), generator=g)[: warmup + sample_batches].tolist() for k, v in orders.items()}
    it = {k: iter(pick[k]) for k in orders}

    def step(kind):
        def fn():
            b = ts.batch(orders[kind][next(it[kind])])
            batch = (b["input_ids"], b["attention_mask"], b["token_type_ids"], b["labels"])
            _train_step(model, head, opt, batch, False)()
        return fn
    t = alternate({k: step(k) for k in orders}, sample_batches, warmup)
    out = {"examples": len(L), "batch_size": batch_size, "sampled_batches": sample_batches}
    for k, batches in orders.items():
        out[k] = {"padded_share": padding_share(L, batches), "batches": len(batches),
                  "step_s": _stats(t[k]), "epoch_s_estimate": statistics.median(t[k]) * len(batches)}
    out["epoch_speedup"] = out["random"]["epoch_s_estimate"] / out["bucketed"]["epoch_s_estimate"]
    return out


# ---- 4. utilisation --------------------------------------------------------------------------------
def bench_utilisation(model_rows: list[dict], checkpoint: str = "minilm-l6") -> dict:
    """Our training step's FLOP rate as a share of this machine's measured fp32 matmul rate."""
    from ..checkpoints import resolve_checkpoint
    from ..config import BertConfig

    cfg = BertConfig.from_json_file(resolve_checkpoint(checkpoint) / "config.json")
    peak = matmul_peak()
    out = {"matmul_fp32": peak, "steps": []}
    for r in model_rows:
        if r["what"].startswith("training step"):
            B, T = r["B"], r["T"]
            fl = training_flops(cfg, B, T)
            ach = fl / r["ours_s"]["median"] / 1e9
            out["steps"].append({"what": r["what"], "gflop_per_step": fl / 1e9, "achieved_gflops": ach,
                                 "fraction_of_peak": ach / peak["gflops"]["median"]})
    return out


def _gpu_models(cfg, dev: torch.device):
    """bert-base's shape with the same random weights in both models: transformers' BertModel (its default
    attention, SDPA) initialised, saved, and loaded into ours through the checkpoint loader."""
    import tempfile

    import transformers

    from ..model import BertModel

    torch.manual_seed(0)
    ref = transformers.BertModel(transformers.BertConfig(**{k: getattr(cfg, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}))
    with tempfile.TemporaryDirectory() as d:
        ref.save_pretrained(d)
        ours = BertModel.from_pretrained(d)
    return ours.to(dev).train(), ref.to(dev).train()


def _compiled_step(model, batch) -> tuple[Callable[[], None] | None, str]:
    """Our step with the encoder under torch.compile, or None and why not."""
    try:
        cmodel = torch.compile(model)
        head, opt = _head_and_opt(model, fused=True)
        step = _train_step(cmodel, head, opt, batch, False, autocast=True)
        step()  # compiles here, so a failure is caught and the timing excludes compilation
        torch.cuda.synchronize()
        return step, "compiled"
    except Exception as e:  # no compiler, or a graph it cannot take: reported, not fatal
        return None, f"{type(e).__name__}: {str(e)[:200]}"


def bench_gpu(steps: int = 10, warmup: int = 3, shape: tuple[int, int] = (32, 128)) -> dict | None:
    """bert-base shape, bf16 autocast, on CUDA: ours (eager, and under torch.compile) against transformers
    on the same weights and batch, with tokens/s and the share of the card's measured bf16 matmul peak."""
    if not torch.cuda.is_available():
        return None
    from ..config import BertConfig

    dev = torch.device("cuda")
    cfg = BertConfig()
    ours, ref = _gpu_models(cfg, dev)
    B, T = shape
    batch = _batch(B, T, cfg.vocab_size, dev)
    (h0, o0), (h1, o1) = _head_and_opt(ours, fused=True), _head_and_opt(ref, fused=True)
    fns = {"ours": _train_step(ours, h0, o0, batch, False, autocast=True),
           "transformers": _train_step(ref, h1, o1, batch, True, autocast=True)}
    compiled, compile_note = _compiled_step(ours, batch)
    if compiled is not None:
        fns["ours_compiled"] = compiled
    t = alternate(fns, steps, warmup, lambda: torch.cuda.synchronize())
    peak = matmul_peak(8192, 10, torch.bfloat16, "cuda")
    flops = training_flops(cfg, B, T)
    med = {k: statistics.median(v) for k, v in t.items()}
    return {"device": torch.cuda.get_device_name(dev), "shape": f"bert-base, {B}x{T}, bf16 autocast",
            "step_s": _stats(t["ours"]), "transformers_step_s": _stats(t["transformers"]),
            "speed_ratio": _ratio(t["transformers"], t["ours"]),
            "compiled_step_s": _stats(t["ours_compiled"]) if compiled else None,
            "compiled_speed_ratio": _ratio(t["transformers"], t["ours_compiled"]) if compiled else None,
            "compile_note": compile_note, "tokens_per_s": B * T / med["ours"], "achieved_gflops": flops / med["ours"] / 1e9,
            "matmul_bf16": peak, "fraction_of_peak": flops / med["ours"] / 1e9 / peak["gflops"]["median"],
            "fraction_of_peak_by_contender": {k: flops / v / 1e9 / peak["gflops"]["median"] for k, v in med.items()}}


# ---- 5. where time goes ----------------------------------------------------------------------------
def _top_ops(step: Callable[[], None], top: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    ev = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ev)
    return [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / total} for e in ev[:top]]


def bench_profile(checkpoint: str = "minilm-l6", B: int = 32, T: int = 128, top: int = 12) -> dict[str, list[dict]]:
    """torch.profiler over one training step of each model: the top operators by self CPU time."""
    ours, ref = _models(checkpoint, torch.device("cpu"))
    batch = _batch(B, T, ours.config.vocab_size, torch.device("cpu"))
    out = {}
    for name, model, hf in (("ours", ours, False), ("transformers", ref, True)):
        model.train()
        head, opt = _head_and_opt(model)
        out[name] = _top_ops(_train_step(model, head, opt, batch, hf), top)
    return out
