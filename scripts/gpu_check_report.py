"""GPU_CHECK.md and gpu_check.json from what scripts/gpu_check.sh measured in OUTDIR (nothing typed)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minbert_core.bench.compiled import CONTENDERS  # noqa: E402
from minbert_core.bench.gpu_slice import METRICS, SLICE_RUNS, compare  # noqa: E402

PART_NAMES = {"tests": "tests marked `gpu`", "slice-fp32": "real-data slice, fp32", "compiled": "bf16 step, compiled",
              "paper-slice": "PCGrad run, `paper` settings", "slice-bf16": "real-data slice, bf16",
              "strategies": "every strategy vs the sum"}


def _read(p: Path) -> str:
    return p.read_text(errors="replace") if p.is_file() else ""


def _json(p: Path):
    txt = _read(p).strip()
    return json.loads(txt) if txt else None


def _tail(p: Path, n: int) -> list[str]:
    return ["```", *_read(p).strip().splitlines()[-n:], "```"]


def _parts(out: Path) -> tuple[list[dict], list[str]]:
    """parts.txt (name, exit status, seconds, limit per part) as records and a table."""
    rows = []
    for line in _read(out / "parts.txt").splitlines():
        name, rc, secs, limit = (line.split() + ["", "", "", ""])[:4]
        rows.append({"part": name, "exit": rc, "seconds": secs, "limit_s": limit})
    L = ["## Parts", "", "| part | exit | seconds | limit (s) |", "|---|---|---|---|"]
    for r in rows:
        ex = {"0": "0", "124": "124 (timed out)", "137": "137 (killed)", "skipped": "skipped: out of time"}.get(
            r["exit"], r["exit"])
        L.append(f"| {PART_NAMES.get(r['part'], r['part'])} | {ex} | {r['seconds']} | {r['limit_s']} |")
    return rows, L + [""]


def _contender_cells(c: dict | None) -> str:
    if not c:
        return "not run | | | | | |"
    if c.get("error"):
        return f"failed: {c['error'][:160].replace('|', '/')} | | | | | |"
    med = c["step_s"]["median"] * 1e3
    vs = [f"{c[k]['median']:.2f}x" if c.get(k) else "1" for k in ("speed_vs_minbert", "speed_vs_transformers")]
    share = f"{c['share_of_bf16_peak']:.1%}" if c.get("share_of_bf16_peak") else ""
    return (f"{med:.1f} | {vs[0]} | {vs[1]} | {share} | {c.get('first_step_s', 0):.1f} | "
            f"{c.get('graph_breaks', '')} / {c.get('cudagraph_skips', '')}")


def _compiled(out: Path) -> list[str]:
    """Section: the bf16 training step eager, compiled, under CUDA graphs and in transformers."""
    r = _json(out / "compiled_step.json")
    L = ["## bf16 training step: eager, torch.compile, CUDA graphs", ""]
    if not r or not r.get("rows"):
        return L + ["- not measured; the end of its log:", "", *_tail(out / "compiled_step.log", 12), ""]
    peak = r["matmul_bf16"]["gflops"]["median"] / 1e3
    L += [f"{r['shape']}, on {r['device']} (torch {r['torch']}); one training step = forward, 5-way head, "
          "cross-entropy, backward, AdamW; each contender on its own copy of the same weights; medians of rounds "
          f"alternating in one process; measured bf16 matmul peak {peak:.1f} TFLOP/s."
          + (f" Note: {r['note']}." if r.get("note") else ""), "",
          "| batch | contender | step (ms) | vs minBERT eager | vs transformers | share of bf16 peak | "
          "first step (s, compile included) | graph breaks / cudagraph skips |", "|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        for name in CONTENDERS:
            L.append(f"| {row['B']}x{row['T']} | {name} | {_contender_cells(row['contenders'].get(name))} |")
    reasons = {m for row in r["rows"] for c in row["contenders"].values() for m in c.get("skip_reasons") or []}
    return L + ([""] + [f"- {m}" for m in sorted(reasons)] if reasons else []) + [""]


def _fmt(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f} (n={s['n']})"


def _slice(out: Path) -> tuple[dict, list[str]]:
    """Section: the cpu profile's Table 4 summed-loss runs on this device against the committed CPU runs."""
    L = ["## Real data: Table 4's summed-loss runs here against the committed CPU runs", "",
         "`results/study-cpu/` " + ", ".join(f"`{r}`" for r in SLICE_RUNS) + " re-run from their config.json "
         "(packaged MiniLM, 150 steps of 16 rows per task, 2,000 Quora dev rows). MiniLM travels rounded to "
         "fp16 (`minbert_core/bench/carry.py`), so equal scores are not expected; a difference of means beyond "
         "the seed spread 2·sqrt(sa²/na + sb²/nb) would be a finding.", ""]
    res = {}
    for prec in ("fp32", "bf16"):
        res[prec] = cmp = compare(out / "slice" / prec)
        if not cmp:
            L += [f"- {prec}: no completed run; the end of its log:", "", *_tail(out / f"slice-{prec}.log", 8), ""]
            continue
        L += [f"**{prec}** (steps: here {cmp['gpu_steps']}, CPU {cmp['cpu_steps']}; training seconds: here "
              + ", ".join(f"{s:.0f}" for s in cmp["gpu_train_s"]) + "; CPU "
              + ", ".join(f"{s:.0f}" for s in cmp["cpu_train_s"]) + ")", "",
              "| dev metric | here: mean ± std | CPU: mean ± std | difference | seed spread | verdict |",
              "|---|---|---|---|---|---|"]
        for key in METRICS:
            m = cmp["metrics"][key]
            spread = f"{m['spread']:.3f}" if m["spread"] is not None else "-"
            L.append(f"| {key} | {_fmt(m['gpu'])} | {_fmt(m['cpu'])} | {m['diff']:+.3f} | {spread} | {m['verdict']} |")
        L.append("")
    return res, L


def _bench_gpu(compiled: dict | None) -> dict | None:
    """BENCHMARKS.md's section 6 record (bench.cases.bench_gpu's keys) from the largest shape measured."""
    rows = [r for r in (compiled or {}).get("rows", []) if r["contenders"].get("minbert", {}).get("step_s")
            and r["contenders"].get("transformers", {}).get("step_s")]
    if not rows:
        return None
    r = max(rows, key=lambda x: x["B"] * x["T"])
    c = r["contenders"]
    comp = c.get("minbert-compile") if c.get("minbert-compile", {}).get("step_s") else None
    peak = compiled["matmul_bf16"]["gflops"]["median"]
    med = {"ours": c["minbert"]["step_s"]["median"], "transformers": c["transformers"]["step_s"]["median"]}
    if comp:
        med["ours_compiled"] = comp["step_s"]["median"]
    flops = r["gflop_per_step"]
    return {"device": compiled["device"], "shape": f"bert-base, {r['B']}x{r['T']}, bf16 autocast",
            "step_s": c["minbert"]["step_s"], "transformers_step_s": c["transformers"]["step_s"],
            "speed_ratio": c["minbert"]["speed_vs_transformers"],
            "compiled_step_s": comp["step_s"] if comp else None,
            "compiled_speed_ratio": comp["speed_vs_transformers"] if comp else None,
            "compile_note": "compiled" if comp else (c.get("minbert-compile") or {}).get("error"),
            "tokens_per_s": c["minbert"]["tokens_per_s"], "achieved_gflops": flops / med["ours"], "matmul_bf16":
            compiled["matmul_bf16"], "fraction_of_peak": flops / med["ours"] / peak,
            "fraction_of_peak_by_contender": {k: flops / v / peak for k, v in med.items()}}


def _strategies(out: Path) -> list[str]:
    """Section: every gradient strategy's step time and peak memory relative to the summed loss."""
    L = ["## Every gradient strategy against the summed loss", ""]
    r = _json(out / "bench_strategies.json")
    if not r:
        if not (out / "bench_strategies.err").is_file():
            return L + ["- not run (GPU_CHECK_STRATEGIES=1 runs it; the check of 2026-11-27 measured it: README, "
                        "BENCHMARKS.md section 6)"]
        return L + ["- not measured; the end of its error output:", "", *_tail(out / "bench_strategies.err", 10)]
    L += [f"fp32, {r['shape']} ({os.environ.get('GPU_CHECK_STRATEGY_MODEL', 'random weights')}); "
          "step time: median of per-round ratios, strategies alternating in one process; peak memory: "
          "one fresh process each (`torch.cuda.max_memory_allocated`).", "",
          "| strategy | step (ms) | step vs sum | peak memory (MiB) | memory vs sum |", "|---|---|---|---|---|"]
    for name, s in r["strategies"].items():
        L.append(f"| {name} | {s['time_s']['median'] * 1e3:.1f} | {s['time_ratio_vs_sum']['median']:.3f}x | "
                 f"{s['peak_mb']:.0f} | {s['memory_ratio_vs_sum']:.3f}x |")
    return L


def _precision(c: dict, resolved: dict) -> str:
    """A run record's precision: `resolved.precision` and `config.precision` (new records), `config.bf16`
    (a boolean, records written before the rename)."""
    return resolved.get("precision") or c.get("precision") or ("bf16" if c.get("bf16") else "fp32")


def _paper_run(out: Path) -> tuple[dict | None, list[str]]:
    """Section: the multi-task PCGrad run with the `paper` settings on a slice."""
    run_dir = out / "runs" / "paper-slice"
    metrics, config = _json(run_dir / "metrics.json"), _json(run_dir / "config.json")
    L = ["## Multi-task PCGrad run, `paper` settings on a slice", ""]
    if not (metrics and config and metrics.get("status") == "complete"):
        return None, L + ["- the run did not complete; the end of its log:", "", *_tail(out / "run.log", 15), ""]
    c = config["config"]
    L += [f"- {c['checkpoint']} on {config['environment']['device']}, precision "
          f"{_precision(c, config.get('resolved', {}))}, batch {c['batch_size']}, max length {c['max_length']}, "
          f"pooling {c['pooling']}, pairs {c['pair_encoding']}, {c['train_limit']} training rows per task, "
          f"{c['eval_limit']} dev rows",
          f"- {metrics['steps']} steps in {metrics['train_time_s']:.1f} s of training: "
          f"{metrics['train_examples_per_s']:.0f} examples/s",
          "- dev (random weights: a check of the path, not a score): "
          + ", ".join(f"{k} {v:.3f}" for k, v in metrics["best_dev"].items()), ""]
    return {k: metrics.get(k) for k in ("status", "best_dev", "steps", "train_time_s", "train_examples_per_s")}, L


def main(out: Path) -> None:
    """Write OUTDIR/GPU_CHECK.md and OUTDIR/gpu_check.json from the files the check left in OUTDIR."""
    env = _read(out / "env.txt").strip()
    tests = _read(out / "pytest.txt").strip().splitlines()
    parts, parts_md = _parts(out)
    compiled = _json(out / "compiled_step.json")
    slice_res, slice_md = _slice(out)
    run, run_md = _paper_run(out)
    res = {"seconds": int(os.environ.get("GPU_CHECK_SECONDS", "0")), "env": env, "parts": parts, "tests": tests[-3:],
           "compiled_step": compiled, "bench_gpu": _bench_gpu(compiled), "slice": slice_res, "run": run,
           "strategies": _json(out / "bench_strategies.json")}
    L = ["# GPU check", "", f"Written by `scripts/gpu_check.sh` in {res['seconds']} s.", "", "```", env, "```", "",
         *parts_md, "## Tests marked `gpu`", "", "```", *tests[-3:], "```", "",
         *_compiled(out), *slice_md, *run_md, *_strategies(out)]
    (out / "GPU_CHECK.md").write_text("\n".join(L) + "\n")
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
