"""GPU_CHECK.md and gpu_check.json from what scripts/gpu_check.sh measured in OUTDIR (nothing typed)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _read(p: Path) -> str:
    return p.read_text(errors="replace") if p.is_file() else ""


def _strategies(out: Path) -> list[str]:
    """Section 4: every gradient strategy's step time and peak memory relative to the summed loss."""
    txt = _read(out / "bench_strategies.json").strip()
    L = ["", "## Every gradient strategy against the summed loss", ""]
    if not txt:
        return L + ["- not measured; the end of its error output:", "", "```",
                    *_read(out / "bench_strategies.err").strip().splitlines()[-10:], "```"]
    r = json.loads(txt)
    L += [f"fp32, {r['shape']} ({os.environ.get('GPU_CHECK_STRATEGY_MODEL', 'random weights')}); "
          "step time: median of per-round ratios, strategies alternating in one process; peak memory: "
          "one fresh process each (`torch.cuda.max_memory_allocated`).", "",
          "| strategy | step (ms) | step vs sum | peak memory (MiB) | memory vs sum |", "|---|---|---|---|---|"]
    for name, s in r["strategies"].items():
        L.append(f"| {name} | {s['time_s']['median'] * 1e3:.1f} | {s['time_ratio_vs_sum']['median']:.3f}x | "
                 f"{s['peak_mb']:.0f} | {s['memory_ratio_vs_sum']:.3f}x |")
    return L


def main(out: Path) -> None:
    env = _read(out / "env.txt").strip()
    tests = _read(out / "pytest.txt").strip().splitlines()
    bench_txt = _read(out / "bench_gpu.json").strip()
    bench = json.loads(bench_txt) if bench_txt else None
    run_dir = out / "runs" / "paper-slice"
    metrics = json.loads(_read(run_dir / "metrics.json") or "null")
    config = json.loads(_read(run_dir / "config.json") or "null")
    strat_txt = _read(out / "bench_strategies.json").strip()
    res = {"strategies": json.loads(strat_txt) if strat_txt else None, "seconds": int(os.environ.get("GPU_CHECK_SECONDS", "0")), "env": env, "tests": tests[-3:],
           "bench_gpu": bench, "run": {k: metrics.get(k) for k in ("status", "best_dev", "steps", "train_time_s",
                                                                  "train_examples_per_s")} if metrics else None}
    L = ["# GPU check", "", f"Written by `scripts/gpu_check.sh` in {res['seconds']} s.", "", "```", env, "```", "",
         "## Tests marked `gpu`", "", "```", *tests[-3:], "```", ""]
    L += ["## bf16 bert-base training step", ""]
    if bench:
        L += [f"- device: {bench['device']}; shape {bench['shape']}",
              f"- step: median {bench['step_s']['median'] * 1e3:.1f} ms; {bench['tokens_per_s']:.0f} tokens/s",
              f"- achieved {bench['achieved_gflops'] / 1e3:.1f} TFLOP/s = {bench['fraction_of_peak']:.1%} of the "
              f"measured bf16 matmul peak ({bench['matmul_bf16']['gflops']['median'] / 1e3:.1f} TFLOP/s)",
              f"- transformers on the same weights and batch: median {bench['transformers_step_s']['median'] * 1e3:.1f} ms;"
              f" ours is {bench['speed_ratio']['median']:.2f}x its speed (median of per-round ratios)",
              "- ours under torch.compile: " + (
                  f"median {bench['compiled_step_s']['median'] * 1e3:.1f} ms, "
                  f"{bench['compiled_speed_ratio']['median']:.2f}x transformers" if bench.get("compiled_step_s")
                  else f"not measured ({bench.get('compile_note')})"),
              "- share of the bf16 matmul peak: " + ", ".join(
                  f"{k} {v:.1%}" for k, v in bench["fraction_of_peak_by_contender"].items())]
    else:
        L += ["- not measured (no CUDA device): " + _read(out / "bench_gpu.err").strip()[-300:]]
    L += ["", "## Multi-task PCGrad run, `paper` settings on a slice", ""]
    if metrics and metrics.get("status") == "complete":
        c = config["config"]
        L += [f"- {c['checkpoint']} on {config['environment']['device']}, bf16 {c['bf16']}, batch {c['batch_size']}, "
              f"max length {c['max_length']}, pooling {c['pooling']}, pairs {c['pair_encoding']}, "
              f"{c['train_limit']} training rows per task, {c['eval_limit']} dev rows",
              f"- {metrics['steps']} steps in {metrics['train_time_s']:.1f} s of training: "
              f"{metrics['train_examples_per_s']:.0f} examples/s",
              "- dev (random weights: a check of the path, not a score): "
              + ", ".join(f"{k} {v:.3f}" for k, v in metrics["best_dev"].items())]
    else:
        L += ["- the run did not complete; the end of its log:", "", "```",
              *_read(out / "run.log").strip().splitlines()[-15:], "```"]
    L += _strategies(out)
    (out / "GPU_CHECK.md").write_text("\n".join(L) + "\n")
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
