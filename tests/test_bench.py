"""The benchmark harness on tiny models: it measures, alternates and renders (no timing asserted)."""
from __future__ import annotations

import re

import pytest
import torch

from minbert_core import bench
from minbert_core.config import BertConfig


def test_alternate_interleaves_and_drops_warmup():
    calls = []
    t = bench.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, steps=3, warmup=2)
    assert calls == ["a", "b"] * 5 and len(t["a"]) == len(t["b"]) == 3


def test_training_flops_counts_matrices_and_attention():
    cfg = BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    non_embed = 4 * 64 + 2 * 8 * 16 + 64
    assert bench.training_flops(cfg, 2, 4) == 6 * non_embed * 8 + 12 * 1 * 2 * 16 * 8


def test_model_multitask_and_render(tiny_checkpoint, tmp_path):
    rows = bench.bench_model(str(tiny_checkpoint), shapes=((4, 16),), steps=2, warmup=1)
    assert [r["what"] for r in rows] == ["training step 4x16", "evaluation forward 4x16"]
    for r in rows:  # summaries of 2 alternating rounds; the ratio is per round, transformers / ours
        s, ratio = r["ours_s"], r["speed_ratio"]
        assert s["n"] == ratio["n"] == 2 and 0 < s["min"] <= s["median"] <= s["max"]
        assert 0 < ratio["min"] <= ratio["median"] <= ratio["max"] < float("inf")
    mt = bench.bench_multitask("random:tiny", B=4, T=16, steps=2, warmup=1)
    assert set(mt["time_s"]) == {"sum", "pcgrad", "naive-pcgrad", "sum+telemetry"}
    assert all(mt["memory_mb"][k]["peak_mb"] > 0 for k in ("sum", "pcgrad", "naive-pcgrad"))
    st = bench.bench_strategies("random:tiny", B=4, T=16, steps=2, warmup=1, strategies=("mgda-ub", "uncertainty"))
    assert list(st["strategies"]) == ["sum", "mgda-ub", "uncertainty"]  # the baseline joins first
    assert all(r["peak_mb"] > 0 and r["time_s"]["n"] == 2 for r in st["strategies"].values())
    res = {"machine": bench._machine(), "checkpoint": "tiny", "model": rows, "strategies": st,
           "optimizer": {"ours_s": rows[0]["ours_s"], "torch_s": rows[0]["ours_s"], "speed_ratio": rows[0]["speed_ratio"]},
           "multitask": mt, "dropout": bench.bench_dropout(((4, 8),), steps=2, warmup=1),
           "bucketing": {"examples": 10, "batch_size": 2, "sampled_batches": 2, "epoch_speedup": 2.0,
                         **{k: {"padded_share": 0.1, "batches": 5, "step_s": rows[0]["ours_s"], "epoch_s_estimate": 1.0}
                            for k in ("bucketed", "random")}},
           "utilisation": {"matmul_fp32": bench.matmul_peak(64, 2), "steps": []}, "gpu": None,
           "gpu_note": "skipped: no CUDA", "profile": bench.bench_profile(str(tiny_checkpoint), 2, 8, top=3)}
    assert set(res["profile"]) == {"ours", "transformers"} and all(len(v) == 3 for v in res["profile"].values())
    md = bench.render(res)
    ops = {p["op"] for v in res["profile"].values() for p in v}
    assert res["dropout"][0]["what"] == "dropout fwd+bwd 4x8" and "| 4x8 |" in md
    assert "skipped: no CUDA" in md and md.count("| `") == len(ops)
    # the measured numbers reach the page: each row's median ratio, and PCGrad's cost over the sum
    for r in rows:
        assert bench._mmm(r["speed_ratio"]) in md
    assert f"- PCGrad / sum, time: {bench._mmm(mt['time_ratio_pcgrad_vs_sum'])}" in md
    mg = st["strategies"]["mgda-ub"]
    assert f"| mgda-ub | {bench._mmm(mg['time_s'])} | {mg['time_ratio_vs_sum']['median']:.3f}" in md
    assert f"- PCGrad / sum, peak memory: {mt['memory_ratio_pcgrad_vs_sum']:.3f}" in md


def test_gpu_bench_models_share_weights_and_agree():
    """The GPU benchmark's two contenders: transformers' random model, saved and loaded into ours, compute the
    same thing (checked on the CPU with a small shape)."""
    from minbert_core.bench.cases import _gpu_models
    from minbert_core.config import BertConfig

    cfg = BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64)
    ours, ref = _gpu_models(cfg, torch.device("cpu"))
    ours.eval(), ref.eval()
    ids = torch.randint(0, 500, (3, 11), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)
    am[2, 6:] = 0
    with torch.no_grad():
        a = ours(ids, am).pooler_output
        b = ref(input_ids=ids, attention_mask=am).pooler_output
    assert ref.config.hidden_size == 32 and torch.allclose(a, b, atol=1e-5)


def test_gpu_profile_table_is_summarised():
    """BENCHMARKS.md's GPU section reads scripts/gpu_profile.py's profiler table: steps, device time, launches."""
    row = "{:>40}  {:>8}  {:>10}  {:>8}  {:>10}  {:>10}  {:>8}  {:>6}  {:>10}  {:>10}  {:>8}"
    text = "\n".join([
        row.format("ProfilerStep*", "44.97%", "2.324s", "68.84%", "3.557s", "355.694ms", "0.000us", "0.00%",
                   "185.619ms", "18.562ms", "10"),
        row.format("cudaLaunchKernel", "6.00%", "309.903ms", "6.00%", "309.903ms", "8.278us", "0.000us", "0.00%",
                   "0.000us", "0.000us", "37435"),
        row.format("cuLaunchKernelEx", "2.27%", "117.116ms", "2.27%", "117.116ms", "8.760us", "0.000us", "0.00%",
                   "0.000us", "0.000us", "13370"),
        "Self CPU time total: 5.167s", "Self CUDA time total: 298.948ms"])
    assert bench._busy_from_profile(text) == {"steps": 10, "wall_ms": 3557.0, "device_ms": 298.948, "launches": 5080}
    assert bench._busy_from_profile("Self CPU time total: 1s") is None


def test_ddp_bench_runs_both_settings_and_renders(tiny_checkpoint):
    """Two gloo processes take the same PCGrad step as one process; the section reports both and the all-reduces."""
    from minbert_core.bench.ddp import bench_ddp
    from minbert_core.bench.render import _ddp
    from minbert_core.multitask import MultitaskBert, load_encoder

    d = bench_ddp(str(tiny_checkpoint), B=4, T=8, steps=2, warmup=1)
    model = MultitaskBert(load_encoder(str(tiny_checkpoint)), ("sst", "para", "sts"))
    assert d["shared_params"] == sum(p.numel() for _, p in model.shared_groups())
    assert d["one_process_s"]["n"] == d["two_process_s"]["n"] == 2
    assert d["overhead_ratio"] > 0 and d["two_process_s"]["median"] > 0
    text = "\n".join(_ddp({"ddp": d}))
    assert f"(3, {d['shared_params']:,})" in text and "2 processes" in text


def _variant_matches_in_eval(checkpoint, make_variant):
    """(model, its variant): the variant computes the model's hidden states in eval, on a padded batch."""
    from minbert_core.model import BertModel

    ours = BertModel.from_pretrained(checkpoint).eval()
    ids = torch.randint(0, ours.config.vocab_size, (3, 9), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)
    am[1, 5:] = 0
    variant = make_variant(ours)
    with torch.no_grad():
        assert torch.allclose(ours(ids, am).last_hidden_state, variant(ids, am).last_hidden_state, atol=1e-5)
    return ours, variant, ids, am


def test_fused_qkv_attempt_computes_what_the_model_computes(tiny_checkpoint):
    from minbert_core.bench.attempts import fused_qkv

    _, fused, ids, am = _variant_matches_in_eval(tiny_checkpoint, fused_qkv)
    fused.train()
    fused(ids, am).pooler_output.sum().backward()  # its gradients reach the three original projections
    attn = fused.encoder.layer[0].attention.self
    assert all(p.grad is not None for p in (attn.query.weight, attn.key.weight, attn.value.bias))


def test_attempts_render_measured_and_failed_variants():
    from minbert_core.bench.render import _attempts

    st = {"min": 1.0, "median": 1.1, "max": 1.2, "n": 3}
    rows = [{"what": "training step 32x64", "variant": "fused QKV", "ours_s": st, "transformers_s": st,
             "speed_ratio": st},
            {"what": "training step 32x64", "variant": "torch.compile (encoder)", "note": "BackendCompilerFailed: x"}]
    text = "\n".join(_attempts({"attempts": rows}))
    assert "| training step 32x64 | fused QKV | 1.000 / 1.100 / 1.200 |" in text
    assert "not measured: BackendCompilerFailed: x" in text


def test_study_jobs_render_says_which_is_faster():
    from minbert_core.bench.render import _study_jobs

    text = "\n".join(_study_jobs({"study_jobs": {"profile": "smoke", "cores": 2, "seconds": {"1": 100.0, "2": 80.0},
                                                 "faster": 2}}))
    assert "| 1 | 100.0 |" in text and "| 2 | 80.0 |" in text and "takes 0.80x the time" in text


def _race_result(reached: bool, b_time: float) -> dict:
    dev = {"sst": 0.42, "para": 0.82, "sts": 0.85, "overall": 0.72}
    return {"date_utc": "2026-11-27 14:00", "checkpoint": "minilm-l6", "budget": 1.5, "target_ratio": 0.8,
            "a": {"runs": [{"task": "sst", "epochs": 1, "steps": 3, "train_time_s": 100.0, "dev": 0.42}],
                  "dev": dev, "train_time_s": 100.0},
            "b": {"steps": 40, "train_time_s": b_time, "best_dev": {**dev, "overall": 0.73 if reached else 0.70},
                  "reached": reached, "stopped": "", "settings": {"batch_size": 16, "lr_finetune": 5e-5,
                                                                  "lr_head": 1e-3, "loss_weights": "sts=0.5",
                                                                  "steps_per_epoch": 20}},
            "time_ratio": b_time / 100.0, "dev_curve": [{"step": 20, "overall": 0.65}, {"step": 40, "overall": 0.70}]}


def test_race_section_judges_time_and_score_together():
    from minbert_core.bench.render import _race

    fast = "\n".join(_race({"race": _race_result(True, 70.0)}))
    assert "(b) reached (a)'s overall 0.7200 in 0.70x (a)'s training time; target ≤ 0.8x: ✅ met" in fast
    slow = "\n".join(_race({"race": _race_result(True, 90.0)}))
    assert "0.90x" in slow and "❌ missed" in slow
    short = "\n".join(_race({"race": _race_result(False, 70.0)}))
    assert "did not reach" in short and "❌ missed" in short and "20: 0.650, 40: 0.700" in short
    assert "- old format: one seed, and (b) stopped on the same dev rows it is scored on." in short


def test_only_remeasures_the_named_parts_and_keeps_the_rest(tmp_path, monkeypatch):
    """`minbert bench --only multitask` measures that part alone, keeps every other section's last numbers
    from BENCHMARKS.json, and dates the re-measured part in the header; an unknown part is refused by name."""
    import json
    from pathlib import Path

    from minbert_core.cli import main

    out = tmp_path / "BENCHMARKS.md"
    old = json.loads((Path(__file__).parents[1] / "BENCHMARKS.json").read_text())  # the committed results
    old["machine"]["date_utc"] = "2000-01-01 00:00"
    old.pop("remeasured", None)
    dropout = old["dropout"]
    out.with_suffix(".json").write_text(json.dumps(old))
    measured = json.loads(json.dumps(old["multitask"]))  # a stand-in measurement: the last one, moved
    measured["time_ratio_pcgrad_vs_sum"] = {k: v * 1.5 if k != "n" else v
                                            for k, v in measured["time_ratio_pcgrad_vs_sum"].items()}
    monkeypatch.setitem(bench.PARTS, "multitask", ("multi-task step", lambda c, s, r: measured))
    assert main(["bench", "--out", str(out), "--only", "multitask"]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["multitask"] == json.loads(json.dumps(measured)) and res["dropout"] == json.loads(json.dumps(dropout))
    assert set(res["remeasured"]) == {"multitask"} and res["machine"]["date_utc"] == "2000-01-01 00:00"
    md = out.read_text()
    assert "Generated by `minbert bench` on 2000-01-01 00:00 UTC." in md
    assert f"Part `multitask` re-measured on {res['remeasured']['multitask']['date_utc']} UTC" in md
    assert f"- PCGrad / sum, time: {bench._mmm(measured['time_ratio_pcgrad_vs_sum'])}" in md
    with pytest.raises(ValueError, match="unknown part.*speed.*known: model"):
        bench.run_parts(["speed"], out)


def test_only_help_names_every_part(capsys):
    """--only's help lists the parts by hand (the CLI does not import torch to print help): exactly PARTS."""
    from minbert_core.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"comma-separated parts \(([^)]*)\)", text).group(1)
    assert [x.strip() for x in listed.split(",")] == list(bench.PARTS)


def test_precision_part_times_both_models_in_both_precisions_and_renders(tiny_checkpoint):
    """bench --only precision: four contenders alternating (ours and transformers, fp32 and bf16 autocast), each
    against transformers fp32 and both measured matmul rates, in a section of BENCHMARKS.md."""
    from minbert_core.bench.render import _precision

    pr = bench.bench_precision(str(tiny_checkpoint), shapes=((2, 8),), steps=2, warmup=1)
    row = pr["rows"][0]
    assert set(row) == {"shape", "transformers fp32", "transformers bf16", "minBERT fp32", "minBERT bf16"}
    for name in ("transformers bf16", "minBERT fp32", "minBERT bf16"):
        c = row[name]
        assert c["s"]["n"] == 2 and 0 < c["speed_vs_transformers_fp32"]["median"] < float("inf")
        assert c["gflops"] > 0 and c["share_fp32_matmul"] > 0 and c["share_bf16_matmul"] > 0
    md = "\n".join(_precision({"precision": pr}))
    assert "## 1c. Precision" in md and md.count("| 2x8 |") == 4 and pr["hardware"]["device_name"] in md
    assert bench._mmm(row["minBERT bf16"]["speed_vs_transformers_fp32"]) in md


def test_flash_attention_attempt_takes_sdpa_without_attention_dropout(tiny_checkpoint):
    """The bf16 attempt's copy computes the model's attention (eval, no dropout anywhere), and in training it
    keeps hidden dropout but drops attention-probability dropout, so SDPA's fused CPU kernel is used."""
    from torch.profiler import profile

    from minbert_core.bench.attempts import flash_attention
    from minbert_core.model import BertSelfAttention

    ours, flash, ids, am = _variant_matches_in_eval(tiny_checkpoint, flash_attention)
    attn = [m for m in flash.modules() if isinstance(m, BertSelfAttention)]
    assert attn and all(m.dropout.p == 0.0 and m.impl == "sdpa" for m in attn)
    assert all(m.dropout.p > 0 for m in ours.modules() if isinstance(m, BertSelfAttention))  # the original kept
    flash.train()
    for bf16 in (False, True):  # the benchmark runs it under bf16 autocast
        with profile() as prof:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = flash(ids, am).pooler_output
            out.float().sum().backward()
        assert any("flash_attention" in e.key for e in prof.key_averages()), bf16


def test_bf16_attempts_render_against_the_targets():
    from minbert_core.bench.render import _attempts_bf16

    st = lambda m: {"min": m, "median": m, "max": m, "n": 3}  # noqa: E731
    rows = [{"what": "training step 32x64", "variant": "default", "ours_s": st(0.6), "transformers_s": st(0.72),
             "speed_ratio": st(1.2), "gflops": 221.0, "share_bf16_matmul": 0.52},
            {"what": "training step 32x64", "variant": "fused AdamW", "ours_s": st(0.45), "transformers_s": st(0.72),
             "speed_ratio": st(1.6), "gflops": 300.0, "share_bf16_matmul": 0.7},
            {"what": "training step 32x64", "variant": "torch.compile (encoder)", "note": "BackendCompilerFailed: x"}]
    text = "\n".join(_attempts_bf16({"attempts_bf16": rows}))
    assert "## 1d." in text
    assert ("| training step 32x64 | default | 0.600 / 0.600 / 0.600 | 0.720 / 0.720 / 0.720 | "
            "1.200 / 1.200 / 1.200 ❌ | 221 | 52% ✅ |") in text
    assert "1.600 / 1.600 / 1.600 ✅ | 300 | 70% ✅ |" in text
    assert "not measured: BackendCompilerFailed: x" in text
    assert _attempts_bf16({}) == []


def test_study_step_precision_part_measures_each_thread_count_and_restores_it(monkeypatch):
    import minbert_core.bench as bench
    import minbert_core.bench.cases as cases
    from minbert_core.bench.render import _precision_study

    seen, real = [], cases.alternate

    def alternate(fns, *a, **k):  # each measurement runs at the thread count its row names
        seen.append(torch.get_num_threads())
        return real(fns, *a, **k)

    monkeypatch.setattr(cases, "alternate", alternate)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        d = bench.bench_precision_study("random:tiny", B=2, T=8, steps=2, warmup=1, threads=(1, 2))
        assert torch.get_num_threads() == 3  # restored
    finally:
        torch.set_num_threads(before)
    assert [r["threads"] for r in d["rows"]] == seen == [1, 2]
    for r in d["rows"]:
        assert r["fp32_s"]["n"] == r["bf16_s"]["n"] == r["speed_bf16_vs_fp32"]["n"] == 2
        assert r["speed_bf16_vs_fp32"]["median"] > 0
    text = "\n".join(_precision_study({"precision_study": d}))
    assert "3 tasks x 2x8" in text and text.count("\n| 1 |") + text.count("\n| 2 |") == 2
    assert "precision_study" in bench.PARTS
