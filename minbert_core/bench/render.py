"""BENCHMARKS.md from a results dict: every number comes from the measurements."""
from __future__ import annotations

from .harness import _mmm


def _head(*cols: str) -> list[str]:
    """A Markdown table's header and rule."""
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def _optional(key: str):
    """A section drawn from res[key], left out (no lines) when that measurement is absent."""
    def wrap(section):
        def draw(res: dict) -> list[str]:
            return section(res[key], res) if res.get(key) else []
        draw.__doc__ = section.__doc__
        return draw
    return wrap


def _title(text: str) -> list[str]:
    """A section's heading, set apart by blank lines."""
    return ["", f"## {text}", ""]


def _model(res: dict) -> list[str]:
    """Section 1: minBERT against transformers, the optimizer and dropout."""
    L = ["## 1. minBERT vs transformers.BertModel (same weights, same batches)", "",
          "Training step = forward + backward + `torch.optim.AdamW` step with a linear head; transformers in its "
          "default attention (SDPA, whose CPU training path with dropout is its math fallback), minBERT in its "
          "default (the same on a GPU; on the CPU in training, the explicit path with its own dropout: the README's Speed section says why).", "",
          *_head("what", "ours, s (min / median / max)", "transformers, s",
                 "speed ratio (transformers time / ours)", "target")]
    for r in res["model"]:
        target = "≥ 1.0" if r["what"].startswith("training") else ""
        ok = (" ✅" if r["speed_ratio"]["median"] >= 1.0 else " ❌") if target else ""
        L.append(f"| {r['what']} | {_mmm(r['ours_s'])} | {_mmm(r['transformers_s'])} | "
                 f"{_mmm(r['speed_ratio'], fmt='{:.3f}')}{ok} | {target} |")
    ev = [r for r in res["model"] if "sentences_per_s_ours" in r]
    L += ["", "Evaluation throughput (forward only, median): " + "; ".join(
        f"{r['B']}x{r['T']}: ours {r['sentences_per_s_ours']:.0f} sentences/s, transformers "
        f"{r['sentences_per_s_transformers']:.0f}" for r in ev)]
    o = res["optimizer"]
    L += ["", f"Our AdamW (multi-tensor `foreach` update) vs `torch.optim.AdamW` on MiniLM's parameters: ours "
          f"{_mmm(o['ours_s'], 1e3, '{:.1f}')} ms, torch {_mmm(o['torch_s'], 1e3, '{:.1f}')} ms per step "
          f"(speed ratio {o['speed_ratio']['median']:.2f})"
          + (f"; our per-parameter loop {_mmm(o['ours_loop_s'], 1e3, '{:.1f}')} ms: speed ratio of the foreach "
             f"update over the loop {o['foreach_speedup']['median']:.2f} (median of rounds; > 1: foreach faster)"
             if "ours_loop_s" in o else "") + ".", ""]
    if res.get("dropout"):
        L += ["Dropout (p = 0.1), forward + backward, minBERT's CPU `Dropout` vs `F.dropout` (the README's Speed section says why):", "",
              *_head("tensor", "ours, ms (min / median / max)", "F.dropout, ms", "speed ratio")]
        L += [f"| {d['shape']} | {_mmm(d['ours_s'], 1e3, '{:.1f}')} | {_mmm(d['torch_s'], 1e3, '{:.1f}')} | "
              f"{_mmm(d['speed_ratio'], fmt='{:.2f}')} |" for d in res["dropout"]]
        L += [""]
    return L


def _multitask(res: dict) -> list[str]:
    """Section 2: the multi-task step per strategy, time and memory."""
    mt = res["multitask"]
    L = [f"## 2. Multi-task step ({mt['shape']}): PCGrad vs summed loss", "",
          *_head("strategy", "step time, s (min / median / max)", "peak memory, MB", "memory before the steps, MB")]
    for k in ("sum", "pcgrad", "naive-pcgrad", "sum+telemetry"):
        mem = mt["memory_mb"].get(k)
        L.append(f"| {k} | {_mmm(mt['time_s'][k])} | {mem['peak_mb']:.0f} | {mem['before_mb']:.0f} |" if mem else
                 f"| {k} | {_mmm(mt['time_s'][k])} | (as pcgrad) | |")
    tr, mr = mt["time_ratio_pcgrad_vs_sum"], mt["memory_ratio_pcgrad_vs_sum"]
    L += ["", f"- PCGrad / sum, time: {_mmm(tr, fmt='{:.3f}')} (target ≤ 1.15{' ✅' if tr['median'] <= 1.15 else ' ❌'})",
          f"- PCGrad / sum, peak memory: {mr:.3f} (target ≤ 1.3{' ✅' if mr <= 1.3 else ' ❌'})",
          f"- naive PCGrad / sum (one graph, `retain_graph=True`, deep copies of all gradients): time "
          f"{mt['time_ratio_naive_vs_sum']['median']:.3f}, peak memory {mt['memory_ratio_naive_vs_sum']:.3f}",
          f"- telemetry cost: a summed-loss step that also records the gradient conflicts takes "
          f"{mt['time_ratio_telemetry_vs_sum']['median']:.3f}x a plain one (it keeps per-task gradient copies "
          "like PCGrad, so its memory is PCGrad's); with `telemetry_every=N` that cost is paid on one step in N.",
          "- peak memory on the CPU is the peak resident set size (VmHWM) of a fresh process per strategy over "
          "3 steps, reset just before them; it includes the Python runtime, the model and the optimizer "
          "state, as `torch.cuda.max_memory_allocated` includes the weights on a GPU. 'before' is the "
          "resident size when the steps start.", ""]
    return L


@_optional("strategies")
def _strategies(st: dict, res: dict) -> list[str]:
    """Section 2b: every gradient strategy's cost, relative to the summed loss."""
    L = [f"### 2b. Every strategy ({st['shape']}), relative to the summed loss", "",
         "Targets for the strategies that work on the Gram matrix of the task gradients: ≤ 1.10x the "
         "summed-loss step time and ≤ 1.3x its peak memory.", "",
         *_head("strategy", "step time, s (min / median / max)", "time / sum (median)", "peak memory, MB",
                "memory / sum")]
    for name, r in st["strategies"].items():
        ok = "" if name == "sum" else (" ✅" if r["time_ratio_vs_sum"]["median"] <= 1.10 and
                                       r["memory_ratio_vs_sum"] <= 1.3 else " ❌")
        L.append(f"| {name} | {_mmm(r['time_s'])} | {r['time_ratio_vs_sum']['median']:.3f}{ok} | "
                 f"{r['peak_mb']:.0f} | {r['memory_ratio_vs_sum']:.3f} |")
    return L + [""]


def _bucketing(res: dict) -> list[str]:
    """Section 3: length bucketing."""
    bk = res["bucketing"]
    L = [f"## 3. Length bucketing (SST train, {bk['examples']} sentences, batch {bk['batch_size']})", "",
          *_head("batching", "padded-token share", "batches", "train step, s (min / median / max)",
                 "epoch, s (estimate)")]
    for k in ("bucketed", "random"):
        b = bk[k]
        L.append(f"| {k} | {b['padded_share']:.1%} | {b['batches']} | {_mmm(b['step_s'])} | {b['epoch_s_estimate']:.0f} |")
    L += ["", f"Epoch time is the median step time over {bk['sampled_batches']} batches drawn at random from "
          f"that epoch's batches, times the number of batches: bucketing is {bk['epoch_speedup']:.2f}x faster per epoch.", ""]
    return L


def _utilisation(res: dict) -> list[str]:
    """Section 4: utilisation against the measured matmul rate, and the GPU when there was one."""
    u = res["utilisation"]
    L = ["## 4. Utilisation", "", f"This machine's fp32 matrix multiply ({u['matmul_fp32']['n']}²): "
          f"{_mmm(u['matmul_fp32']['gflops'], fmt='{:.1f}')} GFLOP/s.", "",
          *_head("step", "GFLOP per step (6·N·tokens + attention)", "achieved GFLOP/s (median)",
                 "share of measured peak")]
    for s in u["steps"]:
        L.append(f"| {s['what']} | {s['gflop_per_step']:.1f} | {s['achieved_gflops']:.1f} | {s['fraction_of_peak']:.1%} |")
    g = res.get("gpu")
    L += [""]
    if g:
        L += [f"GPU ({g['device']}, {g['shape']}): step {_mmm(g['step_s'], 1e3, '{:.1f}')} ms, "
              f"{g['tokens_per_s']:.0f} tokens/s, {g['achieved_gflops']:.0f} GFLOP/s = {g['fraction_of_peak']:.1%} of "
              f"the card's measured bf16 matmul rate ({g['matmul_bf16']['gflops']['median']:.0f} GFLOP/s)."]
        if g.get("transformers_step_s"):
            L += ["", f"Against transformers on the same weights and batch: {g['speed_ratio']['median']:.2f}x "
                      f"(transformers {g['transformers_step_s']['median'] * 1e3:.1f} ms). Under torch.compile: "
                  + (f"{g['compiled_speed_ratio']['median']:.2f}x ({g['compiled_step_s']['median'] * 1e3:.1f} ms)."
                     if g.get("compiled_step_s") else f"not measured ({g.get('compile_note')}).")]
    else:
        L += [f"GPU: {res.get('gpu_note', 'skipped')}"]
    return L


def _profile(res: dict) -> list[str]:
    """Section 5: where the time of a training step goes."""
    prof = res["profile"]
    L = ["", "## 5. Where the time goes (one training step of each, 32x128, torch.profiler)", "",
          "Operators in either model's top list, by our self CPU time; '-' where an operator is not in that "
          "model's top list.", "",
          *_head("operator", *(f"{k}: {c}" for k in ("ours", "transformers") for c in ("calls", "self CPU, ms", "share")))]
    by = {k: {p["op"]: p for p in prof[k]} for k in ("ours", "transformers")}
    ops = list(by["ours"]) + [op for op in by["transformers"] if op not in by["ours"]]
    for op in ops:
        cells = []
        for k in ("ours", "transformers"):
            p = by[k].get(op)
            cells += [str(p["calls"]), f"{p['self_ms']:.1f}", f"{p['share']:.1%}"] if p else ["-", "-", "-"]
        L.append(f"| `{op}` | " + " | ".join(cells) + " |")
    return L


def _gpu_check(res: dict) -> list[str]:
    """Section 6: what scripts/gpu_check.sh and scripts/gpu_profile.py measured on a GPU, from their records."""
    g, steps = res.get("gpu_check"), res.get("gpu_profile")
    if not g:
        return []
    b = g["bench_gpu"]
    L = ["", f"## 6. On a GPU (`scripts/gpu_check.sh`, {g['seconds']} s; records in `GPU_CHECK.md`, `results/gpu/`)",
         "", f"Measured on {b['device']}; bert-base's shape with random weights (the hub is out of reach there).", "",
         *_head("bf16 training step, " + b["shape"], "median ms", "x transformers", "share of bf16 matmul peak")]
    frac = b["fraction_of_peak_by_contender"]
    for key, label, ratio in (("step_s", "ours", "speed_ratio"), ("transformers_step_s", "transformers", None),
                              ("compiled_step_s", "ours, torch.compile", "compiled_speed_ratio")):
        if b.get(key):
            name = {"ours": "ours", "transformers": "transformers", "ours, torch.compile": "ours_compiled"}[label]
            L.append(f"| {label} | {b[key]['median'] * 1e3:.1f} | "
                     f"{b[ratio]['median']:.2f}x | {frac[name]:.1%} |" if ratio else
                     f"| {label} | {b[key]['median'] * 1e3:.1f} | 1 | {frac[name]:.1%} |")
    L += ["", f"Tests marked `gpu`: {g['tests'][-2] if len(g['tests']) > 1 else g['tests']}."]
    if g.get("run"):
        r = g["run"]
        L += [f"Multi-task PCGrad, `paper` settings on a slice: {r['steps']} steps in {r['train_time_s']:.1f} s "
              f"({r['train_examples_per_s']:.0f} examples/s)."]
    L += _gpu_strategies(g.get("strategies"))
    if steps:
        L += ["", "Multi-task step (bf16, `paper`'s cls pooling and max length), `scripts/gpu_profile.py`; the first "
              "row of each invocation also pays the process's CUDA warm-up:", "",
              *_head("batch per task", "strategy", "pair encoding", "steps", "ms per step", "examples/s")]
        L += [f"| {s['batch_size']} | {s['strategy']} | {s['pair_encoding']} | {s['steps']} | {s['ms_per_step']:.0f} | "
              f"{s['examples_per_s']:.0f} |" for s in steps["steps"]]
        if steps.get("device_busy"):
            d = steps["device_busy"]
            pc = next((s for s in steps["steps"]
                       if (s["strategy"], s["pair_encoding"], s["batch_size"]) == ("pcgrad", "bi", 8)), None)
            busy = d["device_ms"] / d["steps"]
            L += ["", f"torch.profiler over {d['steps']} PCGrad steps (bi-encoded pairs): the GPU computed "
                      f"{busy:.1f} ms per step and the host launched {d['launches']} kernels per step"
                  + (f"; unprofiled, such a step takes {pc['ms_per_step']:.0f} ms, so the GPU is busy "
                     f"{busy / pc['ms_per_step']:.0%} of it" if pc else "")
                  + ". At batch 8 the step is bound by the host (Python and kernel launches), not by the GPU: "
                    "torch.compile, CUDA graphs or larger batches are the levers there."]
    return L


def _gpu_strategies(st: dict | None) -> list[str]:
    """Every gradient strategy against the summed loss on the GPU (the check's bert-base-shaped step)."""
    if not st:
        return []
    L = ["", f"Every gradient strategy against the summed loss on the GPU, fp32, {st['shape']}, bert-base's shape "
             "(random weights), the same method as section 2b:", "",
         *_head("strategy", "step, ms (median)", "time / sum (median)", "peak memory, MiB", "memory / sum")]
    for name, r in st["strategies"].items():
        L.append(f"| {name} | {r['time_s']['median'] * 1e3:.1f} | {r['time_ratio_vs_sum']['median']:.3f} | "
                 f"{r['peak_mb']:.0f} | {r['memory_ratio_vs_sum']:.3f} |")
    return L


@_optional("ddp")
def _ddp(d: dict, res: dict) -> list[str]:
    """Section 7: one run on two processes (torchrun's path, gloo on this CPU) against one process."""
    return [*_title(f"7. One run on {d['world']} processes (gloo, CPU), PCGrad, {d['shape']}"),
            f"One process with {d['threads_one_process']} threads on the whole batch against {d['world']} processes "
            "with one thread each on half of it; each process's task gradients are summed over the processes "
            "before PCGrad combines them, then the heads' gradients, then AdamW.", "",
            *_head("setting", "step, s (min / median / max)"),
            f"| 1 process | {_mmm(d['one_process_s'])} |", f"| {d['world']} processes | {_mmm(d['two_process_s'])} |", "",
            f"- {d['world']}-process overhead: the step takes {d['overhead_ratio']:.2f}x the one-process step on the "
            "same global batch (on one machine both use the same cores: this measures what distribution costs, "
            "not what more machines would gain)",
            f"- summing the (3, {d['shared_params']:,}) task-gradient buffer: one all-reduce "
            f"{d['allreduce_one_buffer_s']['median'] * 1e3:.1f} ms, one per task "
            f"{d['allreduce_per_task_s']['median'] * 1e3:.1f} ms (median); the trainer sums the single buffer"]


@_optional("precision")
def _precision(pr: dict, res: dict) -> list[str]:
    """Section 1c: the training step in fp32 and under bf16 autocast, both models (issue 23)."""
    hw = pr["hardware"]
    flags = ", ".join(k for k, v in hw.get("cpu_flags", {}).items() if v) or "none"
    L = [*_title("1c. Precision: the training step in fp32 and bf16 autocast"),
         f"{hw['device_name']}: native bf16 matmul {'yes' if hw['native_bf16'] else 'no'} (bf16 flags: {flags}). "
         f"Measured matmul rates (1024²): fp32 {_mmm(pr['matmul_fp32']['gflops'], fmt='{:.1f}')} GFLOP/s, bf16 "
         f"{_mmm(pr['matmul_bf16']['gflops'], fmt='{:.1f}')} GFLOP/s (min / median / max). Four contenders alternate "
         "step by step in one process; speed = transformers fp32's step time / the contender's, per round.", "",
         *_head("shape", "contender", "step, s (min / median / max)", "speed vs transformers fp32",
                "GFLOP/s", "share of fp32 matmul", "share of bf16 matmul")]
    for row in pr["rows"]:
        for name, c in row.items():
            if name == "shape":
                continue
            L.append(f"| {row['shape']} | {name} | {_mmm(c['s'])} | {_mmm(c['speed_vs_transformers_fp32'])} | "
                     f"{c['gflops']:.0f} | {c['share_fp32_matmul']:.0%} | {c['share_bf16_matmul']:.0%} |")
    return L


def _attempts_table(rows: list[dict], bf16: bool) -> list[str]:
    """The table of sections 1b (fp32) and 1d (bf16 autocast): each variant against transformers at the same
    precision; in bf16 with its share of the bf16 matmul rate, each marked against issue 23's targets."""
    cols = ["shape", "variant", "ours, s (min / median / max)", f"transformers{' bf16' if bf16 else ''}, s",
            "speed ratio (transformers / variant)"] + (["GFLOP/s", "share of bf16 matmul"] if bf16 else [])
    L = _head(*cols)
    for r in rows:
        if "ours_s" not in r:
            L.append(f"| {r['what']} | {r['variant']} | not measured: {r['note']} |" + " |" * (len(cols) - 3))
            continue
        line = f"| {r['what']} | {r['variant']} | {_mmm(r['ours_s'])} | {_mmm(r['transformers_s'])} | {_mmm(r['speed_ratio'])}"
        if bf16:
            ok = lambda met: "✅" if met else "❌"  # noqa: E731
            line += (f" {ok(r['speed_ratio']['median'] >= 1.5)} | {r['gflops']:.0f} | "
                     f"{r['share_bf16_matmul']:.0%} {ok(r['share_bf16_matmul'] >= 0.5)}")
        L.append(line + " |")
    return L + [""]


@_optional("attempts")
def _attempts(rows: list[dict], res: dict) -> list[str]:
    """Section 1b: each speed-up tried on the training step, against transformers, kept or not."""
    return ["## 1b. Speed-ups tried on the training step (target: 1.2x transformers)", "",
            "Each variant is a copy of the default model changed in `minbert_core/bench/attempts.py`, timed "
            "alternating with transformers in one process. Only what pays would move into the model.", "",
            *_attempts_table(rows, bf16=False)]


@_optional("precision_study")
def _precision_study(d: dict, res: dict) -> list[str]:
    """Section 1c, continued: the study's own step in both precisions at the thread counts its runs use."""
    L = ["", f"The study's step (summed loss, {d['shape']}, minBERT's own AdamW) in fp32 and under bf16 autocast, "
         "alternating in one process, at each thread count (a study at `--jobs 2` on 2 cores gives each run one "
         "thread):", "", *_head("torch threads", "fp32 step, s (min / median / max)", "bf16 step, s",
                                "speed of bf16 (fp32 time / bf16 time)")]
    L += [f"| {r['threads']} | {_mmm(r['fp32_s'])} | {_mmm(r['bf16_s'])} | {_mmm(r['speed_bf16_vs_fp32'])} |"
          for r in d["rows"]]
    return L + [""]


@_optional("attempts_bf16")
def _attempts_bf16(rows: list[dict], res: dict) -> list[str]:
    """Section 1d: each speed-up tried on the bf16 autocast step, against transformers under bf16 autocast
    (issue 23's targets: >= 1.5x transformers bf16, >= 50% of the measured bf16 matmul rate)."""
    return [*_title("1d. Speed-ups tried on the bf16 step (targets: 1.5x transformers bf16, 50% of bf16 matmul)"),
            "Both sides under bf16 autocast, alternating in one process; each variant a copy of the default model "
            "changed in `minbert_core/bench/attempts.py` (whose docstring says what each changes). Only what pays "
            "would move into the model.", "", *_attempts_table(rows, bf16=True)]


@_optional("study_jobs")
def _study_jobs(j: dict, res: dict) -> list[str]:
    """Section 8: the whole study with one notebook at a time against two."""
    sec = j["seconds"]
    L = [*_title(f"8. The `{j['profile']}` study: `--jobs 1` against `--jobs 2` ({j['cores']} cores)"),
         "Each a fresh `minbert study` process and folder, the notebooks and the report; with N > 1 jobs each "
         "kernel gets cores/N threads (OMP_NUM_THREADS), so parallel runs share the cores instead of fighting "
         "over them.", "", *_head("--jobs", "wall time, s")]
    L += [f"| {n} | {s:.1f} |" for n, s in sec.items()]
    if "1" in sec and "2" in sec:
        L += ["", f"`--jobs 2` takes {sec['2'] / sec['1']:.2f}x the time of `--jobs 1`: `--jobs {j['faster']}` is "
                  "the faster here; `make study` runs `--jobs 2` (its JOBS)."]
    return L


@_optional("race")
def _race(r: dict, res: dict) -> list[str]:
    """Section 9: `minbert bench --race`, time to accuracy (its own run, with its own date). A record of the
    seeded race with dev halves (format 2) is drawn by race_render; the one-seed record before it as it was."""
    if r.get("format", 1) >= 2:
        from .race_render import race_section

        return race_section(r)
    a, b = r["a"], r["b"]
    sc = lambda d: f"{d['sst']:.3f} / {d['para']:.3f} / {d['sts']:.3f} / {d['overall']:.4f}"  # noqa: E731
    L = ["", f"## 9. Time to accuracy (`minbert bench --race`, {r['date_utc']} UTC, `{r['checkpoint']}`)", "",
         "(a) three single-task models with plain `transformers` (mean pooling, linear head, AdamW lr 3e-5, "
         "batch 32, length-bucketed); (b) one minbert multi-task model, summed loss, "
         f"batch {b['settings']['batch_size']} per task, lr {b['settings']['lr_finetune']:g} / heads "
         f"{b['settings']['lr_head']:g}, loss weights {b['settings']['loss_weights'] or 'none'}, dev scored every "
         f"{b['settings']['steps_per_epoch']} steps until it reaches (a)'s overall, within {r['budget']:g}x (a)'s "
         "training time. Dev: full SST and STS, the same Quora rows on both sides. Training time only.", "",
         *_head("side", "training, s", "steps", "dev SST / Quora / STS r / overall")]
    L += [f"| (a) {x['task']}, {x['epochs']} epoch(s) | {x['train_time_s']:.0f} | {x['steps']} | {x['dev']:.4f} |"
          for x in a["runs"]]
    L += [f"| (a) three models | {a['train_time_s']:.0f} | {sum(x['steps'] for x in a['runs'])} | {sc(a['dev'])} |",
          f"| (b) one multi-task model, best dev | {b['train_time_s']:.0f} | {b['steps']} | {sc(b['best_dev'])} |", ""]
    verdict = ("reached" if b["reached"] else "did not reach") + f" (a)'s overall {a['dev']['overall']:.4f}"
    ok = b["reached"] and r["time_ratio"] <= r["target_ratio"]
    L += [f"- (b) {verdict} in {r['time_ratio']:.2f}x (a)'s training time; target ≤ {r['target_ratio']}x: "
          + ("✅ met" if ok else "❌ missed") + (f"; {b['stopped']}" if b.get("stopped") else "")]
    if r.get("dev_curve"):
        L += ["- (b)'s dev overall by step: " + ", ".join(f"{c['step']}: {c['overall']:.3f}" for c in r["dev_curve"]
                                                        if "overall" in c)]
    return L + ["- old format: one seed, and (b) stopped on the same dev rows it is scored on. `minbert bench "
                "--race` now runs 3 seeds per side, with (a) in fp32 and bf16, choosing on one half of the dev "
                "rows and reporting on the other; its numbers replace these when it is run."]


def render(res: dict) -> str:
    """BENCHMARKS.md from a results dict (nothing typed by hand)."""
    m = res["machine"]
    again = (f" Rewritten on {res['rerendered_utc']} UTC by `minbert bench --render-only` from its JSON and the "
             "GPU records committed since (measuring nothing)." if res.get("rerendered_utc") else "")
    for part, when in res.get("remeasured", {}).items():
        again += (f" Part `{part}` re-measured on {when['date_utc']} UTC by `minbert bench --only {part}` "
                  f"({when['cpu']}, torch threads {when['torch_threads']}).")
    L = ["# Benchmarks", "", f"Generated by `minbert bench` on {m['date_utc']} UTC.{again} Do not edit: rerun it.", "",
         f"- machine: {m['cpu']}, {m['cores']} cores (torch threads {m['torch_threads']}), {m['platform']}",
         f"- versions: python {m['python']}, torch {m['torch']}, transformers {m['transformers']}",
         f"- model: `{res['checkpoint']}` (6 layers, hidden 384) in fp32 on the CPU unless said otherwise",
         "- method: contenders alternate step by step in one process after warm-up; min / median / max over "
         "the measured steps; a ratio is computed per round and then summarised", ""]
    for section in (_model, _attempts, _precision, _precision_study, _attempts_bf16, _multitask, _strategies, _bucketing, _utilisation, _profile, _gpu_check, _ddp, _study_jobs, _race):
        L += section(res)
    return "\n".join(L) + "\n"
