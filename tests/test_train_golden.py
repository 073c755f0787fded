"""Seeded runs give the same records, byte for byte, as the code that produced tests/golden (issue 25:
train.py was split into modules; the records must not move). Regenerate only on purpose:
`python tests/test_train_golden.py` (then explain the change in the commit)."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
# what varies with the machine's speed and load, not with the code
TIMED = {"wall_time_s", "train_time_s", "train_examples_per_s", "examples_per_s"}
RUN = dict(checkpoint="random:tiny", epochs=2, train_limit=24, eval_limit=16, batch_size=8, lr_finetune=1e-3,
           telemetry_every=1, max_length=32, strategy="pcgrad", pooling="cls", checkpoint_every=2,
           predict_test=False, run_id="golden")


def _records(run: Path, data_root: Path) -> dict[str, str]:
    """metrics.json, history.csv and telemetry.csv of a run, with the timed fields and folders dropped."""
    metrics = {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMED}
    metrics["warnings"] = [w.replace(str(data_root), "<data>") for w in metrics["warnings"]]
    out = {"metrics.json": json.dumps(metrics, indent=1, sort_keys=True) + "\n"}
    for name in ("history.csv", "telemetry.csv"):
        rows = list(csv.DictReader((run / name).open()))
        keys = [k for k in rows[0] if k not in TIMED]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        out[name] = buf.getvalue()
    return out


def _run(tmp: Path, data_root: Path) -> dict[str, str]:
    from minbert_core.train import TrainConfig, train

    cfg = TrainConfig(**RUN, runs_dir=str(tmp / "runs"), data_dir=str(data_root))
    return _records(train(cfg, progress=False), data_root)


def test_seeded_run_records_match_the_golden_copy(tmp_path, data_root):
    got = _run(tmp_path, data_root)
    for name, text in got.items():
        assert text == (GOLDEN / name).read_text(), f"{name} differs from tests/golden/{name}"


if __name__ == "__main__":  # regenerate the golden copy from the code on the path
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for name, text in _run(Path(d), Path(os.environ.get("MINBERT_DATA", "data"))).items():
            (GOLDEN / name).write_text(text)
            print(f"wrote {GOLDEN / name}", file=sys.stderr)
