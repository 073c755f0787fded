"""precision: auto | fp32 | bf16 (issue 23): auto follows the device's own bf16 flags, never its vendor; the
resolved precision and the processor go into every run's config.json; records written with the old
boolean `bf16` still load and resume."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from helpers import stop_after

from minbert_core import precision
from minbert_core.cli import build_parser
from minbert_core.train import TrainConfig, train

CPU = torch.device("cpu")
FAST = dict(checkpoint="random:tiny", epochs=1, train_limit=24, eval_limit=16, batch_size=8, lr_finetune=1e-3,
            telemetry_every=0, max_length=32, predict_test=False)


def _caps(monkeypatch, **flags):
    """Make torch's cpuinfo report these flags (the rest absent)."""
    caps = {"cpu_name": flags.pop("cpu_name", "Some CPU"), "amx_bf16": False, "avx512_bf16": False, **flags}
    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda: caps)


@pytest.mark.parametrize("flags,want", [
    ({}, "fp32"),
    ({"avx512_bf16": True}, "bf16"),  # AMD Zen 4, Intel Cooper Lake
    ({"amx_bf16": True, "avx512_bf16": True}, "bf16"),  # Intel Sapphire Rapids
    ({"cpu_name": "Intel Xeon"}, "fp32"),  # the vendor alone says nothing
    ({"cpu_name": "AMD EPYC", "avx512_bf16": True}, "bf16"),
])
def test_auto_follows_the_cpus_bf16_flags(monkeypatch, flags, want):
    _caps(monkeypatch, **flags)
    assert precision.resolve_precision("auto", CPU) == want
    assert precision.resolve_precision("fp32", CPU) == "fp32"  # an explicit choice is kept either way
    assert precision.resolve_precision("bf16", CPU) == "bf16"


def test_without_torchs_cpuinfo_the_kernels_flags_are_read(monkeypatch):
    def missing():
        raise AttributeError("no cpuinfo in this build")

    monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", missing)
    monkeypatch.setattr(precision, "_read", lambda p: "model name\t: X\nflags\t\t: fpu avx512f avx512_bf16 sse\n")
    assert precision.cpu_flags() == {"amx_bf16": False, "avx512_bf16": True}
    assert precision.resolve_precision("auto", CPU) == "bf16" and precision.device_name(CPU) == "X"
    monkeypatch.setattr(precision, "_read", lambda p: "")  # no /proc/cpuinfo (macOS, Windows): fp32
    assert precision.resolve_precision("auto", CPU) == "fp32"


def test_a_bad_precision_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16; got 'fp16'"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("half", CPU)


def test_the_old_bf16_boolean_is_read_as_precision(capsys):
    with pytest.warns(FutureWarning, match="bf16 is deprecated, use precision"):
        assert TrainConfig.from_dict({"bf16": True}).precision == "bf16"
    with pytest.warns(FutureWarning):
        assert TrainConfig.from_dict({"bf16": "false"}).precision == "fp32"
    with pytest.raises(ValueError, match="both bf16='bf16' and precision='fp32'"):
        TrainConfig.from_dict({"bf16": True, "precision": "fp32"})
    a = build_parser().parse_args(["multitask", "--bf16", "true"])
    assert a.precision == "bf16" and "--bf16 is deprecated" in capsys.readouterr().err
    assert build_parser().parse_args(["multitask", "--precision", "auto"]).precision == "auto"


def test_a_run_records_its_resolved_precision_and_processor(tmp_path, data_root, monkeypatch):
    _caps(monkeypatch, avx512_bf16=True)
    run = train(TrainConfig(**FAST, precision="auto", runs_dir=str(tmp_path), data_dir=str(data_root), run_id="a"))
    rec = json.loads((run / "config.json").read_text())
    assert rec["config"]["precision"] == "auto" and rec["resolved"]["precision"] == "bf16"
    assert rec["environment"]["native_bf16"] is True
    assert rec["environment"]["cpu_flags"] == {"amx_bf16": False, "avx512_bf16": True}
    assert rec["environment"]["device_name"] == precision.device_name(CPU)


def test_a_run_recorded_with_the_old_bf16_key_resumes(tmp_path, data_root):
    cfg = TrainConfig(**{**FAST, "epochs": 2, "checkpoint_every": 2}, runs_dir=str(tmp_path),
                      data_dir=str(data_root), run_id="old")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=stop_after(3))
    f = tmp_path / "old" / "config.json"
    rec = json.loads(f.read_text())
    rec["config"]["bf16"] = rec["config"].pop("precision") == "bf16"  # as the old version wrote it
    rec["resolved"].pop("precision")
    f.write_text(json.dumps(rec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an old record is not the user's input: no warning
        run = train(cfg, resume=True)
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
