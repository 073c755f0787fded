"""The README's demo command (MiniLM, four datasets, a few minutes): slow, not run in CI."""
from __future__ import annotations

import json

import pytest

from minbert_core.cli import main


@pytest.mark.slow
def test_demo_multitask_pcgrad_run_folder(tmp_path, data_root, capsys):
    args = ["multitask", "--tasks", "sst,para,sts,cfimdb", "--strategy", "pcgrad", "--train-limit", "256",
            "--eval-limit", "200", "--epochs", "2", "--batch-size", "16", "--max-length", "64",
            "--lr-finetune", "5e-5", "--telemetry-every", "2", "--runs-dir", str(tmp_path), "--run-id", "demo"]
    assert main(args) == 0
    run = tmp_path / "demo"
    for f in ("config.json", "metrics.json", "history.csv", "telemetry.csv", "checkpoints/best.safetensors"):
        assert (run / f).is_file(), f
    assert not (run / "checkpoints" / "last.pt").exists()  # removed once complete (keep_last is off)
    for t in ("sst", "sts", "cfimdb"):
        lines = (run / "predictions" / f"{t}-test-output.csv").read_text().splitlines()
        assert lines[0].startswith("id \t Predicted_") and " , " in lines[1]
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "complete" and set(m["best_dev"]) == {"sst", "para", "sts", "cfimdb", "overall"}
