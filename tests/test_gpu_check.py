"""The GPU check's parts that need no GPU: the carried checkpoint, the slice's configs and comparison, the
tolerant timing, the compile-friendly model and the report (scripts/gpu_check.sh runs them on a GPU)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _tiny_state(vocab: int = 300) -> dict[str, torch.Tensor]:
    from minbert_core.config import BertConfig
    from minbert_core.model import BertModel

    torch.manual_seed(0)
    m = BertModel(BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=32))
    return m, {k: v.clone() for k, v in m.state_dict().items()}


def test_packed_weights_load_back_rounded_to_fp16_with_unread_rows_zero():
    """Kept rows and every other weight come back within fp16 rounding; word rows not kept come back zero;
    a model on the unpacked weights computes what the original does on kept tokens."""
    from minbert_core.bench.carry import WORD_EMBEDDINGS, pack_weights, unpack_weights

    model, sd = _tiny_state()
    keep = list(range(0, 300, 3))
    packed, meta = pack_weights(sd, keep)
    back = unpack_weights(packed, meta)
    assert set(back) == set(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        if k == WORD_EMBEDDINGS:
            assert torch.equal(back[k][keep], v[keep].half().float())  # exactly fp16's rounding
            dropped = sorted(set(range(300)) - set(keep))
            assert back[k][dropped].abs().max() == 0
        elif v.is_floating_point():
            assert torch.equal(back[k], v.half().float()), k
            assert torch.allclose(back[k], v, rtol=2 ** -11, atol=1e-7), k
        else:
            assert torch.equal(back[k], v), k
    model.eval()
    ids = torch.tensor([keep[1:9], keep[10:18]])
    with torch.no_grad():
        want = model(ids).last_hidden_state
        model.load_state_dict(back)
        got = model(ids).last_hidden_state
    assert torch.allclose(got, want, atol=5e-3)


def test_packing_refuses_what_fp16_cannot_hold_and_other_formats():
    from minbert_core.bench.carry import pack_weights, unpack_weights

    with pytest.raises(ValueError, match="big.weight: a weight beyond fp16"):
        pack_weights({"big.weight": torch.tensor([1.0, 7e4])})
    with pytest.raises(ValueError, match="format 'other'"):
        unpack_weights({}, {"format": "other"})


def test_bundle_round_trip_gives_a_loadable_checkpoint_and_the_data(tmp_path):
    from minbert_core.bench.carry import open_bundle, write_bundle
    from minbert_core.model import BertModel

    model, _ = _tiny_state()
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ids-sst-dev.csv").write_text("\tid\tsentence\tsentiment\n0\ta\tgood film\t4\n")
    info = write_bundle(tmp_path / "b.tar.xz", ckpt, [tmp_path / "ids-sst-dev.csv"], list(range(50)))
    assert info["word_rows_kept"] == 50 and info["word_rows"] == 300 and info["max_abs_rounding_error_fp16"] > 0
    out = open_bundle(tmp_path / "b.tar.xz", tmp_path / "open")
    assert (out / "data" / "ids-sst-dev.csv").read_text().endswith("good film\t4\n")
    loaded = BertModel.from_pretrained(out / "minilm")
    assert loaded.embeddings.word_embeddings.weight.dtype == torch.float32
    assert loaded.embeddings.word_embeddings.weight[50:].abs().max() == 0
    with pytest.raises(FileNotFoundError, match="no bundle"):
        open_bundle(tmp_path / "missing.tar.xz", tmp_path / "x")


def test_slice_configs_are_the_committed_runs_moved_to_the_device():
    """An old record (`bf16: false`) becomes a config of the asked precision; steps, rows, seed, loss weights
    stay the committed run's; --short cuts steps and rows only."""
    from minbert_core.bench.gpu_slice import CPU_STUDY, SLICE_RUNS, slice_config

    rec = json.loads((CPU_STUDY / SLICE_RUNS[1] / "config.json").read_text())["config"]
    cfg = slice_config(CPU_STUDY / SLICE_RUNS[1], "bf16", "cuda", Path("/tmp/x"))
    assert (cfg.precision, cfg.device, cfg.runs_dir, cfg.data_dir) == ("bf16", "cuda", "/tmp/x", "")
    for key in ("seed", "steps_per_epoch", "batch_size", "dev_limits", "loss_weights", "checkpoint", "run_id",
                "pair_encoding", "pooling", "lr_finetune", "predict_test"):
        assert getattr(cfg, key) == rec[key], key
    first = json.loads((CPU_STUDY / SLICE_RUNS[0] / "config.json").read_text())["config"]
    short = slice_config(CPU_STUDY / SLICE_RUNS[0], "fp32", "cpu", Path("/tmp/x"), short=True)
    assert (short.steps_per_epoch, short.train_limit, short.eval_limit, short.dev_limits) == (2, 128, 32, "")
    assert (short.seed, short.precision, short.loss_weights) == (first["seed"], "fp32", first["loss_weights"])
    with pytest.raises(FileNotFoundError, match="committed CPU run is missing"):
        slice_config(Path("/nonexistent"), "fp32", "cpu", Path("/tmp/x"))


def _metrics(root: Path, scores: list[float], steps: int = 150) -> Path:
    from minbert_core.bench.gpu_slice import SLICE_RUNS

    for run, s in zip(SLICE_RUNS, scores):
        (root / run).mkdir(parents=True)
        (root / run / "metrics.json").write_text(json.dumps({
            "status": "complete", "learned": True, "steps": steps, "train_time_s": 10.0,
            "best_dev": {"sst": s, "para": 0.75, "sts": 0.81, "overall": (s + 0.75 + (0.81 + 1) / 2) / 3}}))
    return root


def test_compare_weighs_the_difference_against_the_seed_spread(tmp_path):
    from minbert_core.bench.gpu_slice import compare

    cpu = _metrics(tmp_path / "cpu", [0.40, 0.42, 0.41])
    same = compare(_metrics(tmp_path / "a", [0.41, 0.40, 0.42]), cpu)
    assert same["metrics"]["sst"]["verdict"] == "within the seed spread"
    assert same["metrics"]["sst"]["diff"] == pytest.approx(0.0, abs=1e-9)
    off = compare(_metrics(tmp_path / "b", [0.30, 0.31, 0.29]), cpu)["metrics"]["sst"]
    assert off["verdict"] == "exceeds the seed spread" and off["diff"] == pytest.approx(-0.11)
    assert off["spread"] == pytest.approx(2 * (0.01 ** 2 / 3 + 0.01 ** 2 / 3) ** 0.5)
    assert compare(tmp_path / "none", cpu) == {}


def test_a_contender_that_fails_mid_timing_is_dropped_with_its_error():
    from minbert_core.bench.compiled import alternate_tolerant

    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("graph replay failed\nmore")

    errors: dict[str, str] = {}
    t = alternate_tolerant({"ok": lambda: None, "flaky": flaky}, steps=2, warmup=1, sync=lambda: None, errors=errors)
    assert set(t) == {"ok"} and len(t["ok"]) == 2
    assert errors == {"flaky": "RuntimeError: graph replay failed"}


def test_minbert_compiles_as_one_graph():
    """No graph break in the training forward (the padding test broke it in two; CUDA graphs with it)."""
    from minbert_core.bench.cases import _batch
    from minbert_core.bench.compiled import _LossStep
    from minbert_core.multitask import load_encoder

    torch._dynamo.reset()
    step = _LossStep(load_encoder("random:tiny").train(), hf=False, autocast=False)
    ids, am, tt, y = _batch(2, 8, 30522, torch.device("cpu"))
    am[1, 5:] = 0
    ex = torch._dynamo.explain(step)(ids, am, tt, y)
    assert ex.graph_break_count == 0, [b.reason for b in ex.break_reasons]
    torch._dynamo.reset()


def _report_module():
    spec = importlib.util.spec_from_file_location("gpu_check_report", ROOT / "scripts" / "gpu_check_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stats(ms: float) -> dict:
    return {"min": ms / 1e3, "median": ms / 1e3, "max": ms / 1e3, "n": 10}


def _fabricated_check(out: Path, paper_config: dict) -> None:
    (out / "parts.txt").write_text("tests 0 25 150\nslice-fp32 0 80 200\ncompiled 124 270 270\nslice-bf16 skipped 0 0\n")
    (out / "pytest.txt").write_text("....\n4 passed in 23.7s\npytest exit 0\n")
    c = {"minbert": {"step_s": _stats(30), "tokens_per_s": 1e5, "share_of_bf16_peak": 0.1,
                     "speed_vs_transformers": _stats(1050), "first_step_s": 1.0, "graph_breaks": 0,
                     "cudagraph_skips": 0, "error": None},
         "minbert-compile": {"error": "BackendCompilerFailed: no triton"},
         "minbert-reduce-overhead": {"step_s": _stats(12), "tokens_per_s": 3e5, "speed_vs_minbert": _stats(2500),
                                     "speed_vs_transformers": _stats(2600), "first_step_s": 60.0,
                                     "graph_breaks": 0, "cudagraph_skips": 0, "skip_reasons": [], "error": None},
         "transformers": {"step_s": _stats(31), "tokens_per_s": 9e4, "speed_vs_minbert": _stats(950), "error": None}}
    (out / "compiled_step.json").write_text(json.dumps({
        "device": "NVIDIA H200", "torch": "2.11.0", "shape": "random:base", "note": "",
        "matmul_bf16": {"gflops": {"median": 780000.0}},
        "rows": [{"B": 8, "T": 128, "gflop_per_step": 700.0, "contenders": c}]}))
    _metrics(out / "slice" / "fp32", [0.40, 0.41, 0.42])
    run = out / "runs" / "paper-slice"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(paper_config))
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "steps": 125, "train_time_s": 25.0,
                                                  "train_examples_per_s": 120.0,
                                                  "best_dev": {"sst": 0.26, "overall": 0.5}}))


@pytest.mark.parametrize("record", [{"precision": "bf16"}, {"bf16": True}], ids=["new", "old"])
def test_report_renders_every_section_of_a_fabricated_check(tmp_path, record):
    """New run records say `precision`, old ones `bf16`; a failed compile, a timed-out part and a skipped part
    are shown, not fatal; gpu_check.json still feeds BENCHMARKS.md's section 6."""
    from minbert_core.bench.render import _gpu_check

    cfg = {"config": {"checkpoint": "random:base", "batch_size": 8, "max_length": 512, "pooling": "cls",
                      "pair_encoding": "bi", "train_limit": 1000, "eval_limit": 1000, **record},
           "environment": {"device": "cuda"}}
    _fabricated_check(tmp_path, cfg)
    _report_module().main(tmp_path)
    md = (tmp_path / "GPU_CHECK.md").read_text()
    assert "precision bf16, batch 8" in md
    assert "| 8x128 | minbert-compile | failed: BackendCompilerFailed: no triton |" in md
    assert "| 8x128 | minbert-reduce-overhead | 12.0 | 2.50x | 2.60x |" in md
    assert "| bf16 step, compiled | 124 (timed out) | 270 | 270 |" in md
    assert "| real-data slice, bf16 | skipped: out of time |" in md
    assert "| sst | 0.410 ± 0.010 (n=3) |" in md and "within the seed spread" in md
    assert "- bf16: no completed run" in md and "GPU_CHECK_STRATEGIES=1" in md
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["bench_gpu"]["compiled_step_s"] is None and res["bench_gpu"]["compile_note"].startswith("Backend")
    section = "\n".join(_gpu_check({"gpu_check": res}))
    assert "| ours | 30.0 | 1.05x |" in section and "| transformers | 31.0 | 1 |" in section


def test_the_bundle_carries_what_the_gpu_tests_read(tmp_path, monkeypatch, data_root):
    """tests/test_gpu.py's bf16 run predicts the SST and STS test sets: their files travel too."""
    import minbert_core.bench.carry as carry
    from minbert_core.bench import gpu_slice

    seen = {}
    monkeypatch.setattr(carry, "token_rows", lambda tok, texts: [0])
    monkeypatch.setattr(carry, "write_bundle", lambda dst, ckpt, files, rows: seen.update(files=files))
    gpu_slice.bundle(tmp_path / "b.tar.xz", data_root)
    names = {f.name for f in seen["files"]}
    assert {"ids-sst-test-student.csv", "sts-test-student.csv", "quora-dev.csv", "sts-train.csv"} <= names
