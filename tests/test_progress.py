"""Progress lines where there is no terminal: throttled, informative, and present in a real run."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from minbert_core.progress import ProgressLog, format_duration, progress_every_s


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_come_at_most_every_interval_and_never_more_than_30_s_apart():
    clock, said, when = FakeClock(), [], []
    log = ProgressLog(total_steps=200, every_s=20.0, clock=clock,
                      say=lambda m: (said.append(m), when.append(clock.t)))
    for step in range(1, 201):
        clock.t += 7.0  # a slow step: 7 s
        log.step(step, 1, 1, {"sst": 1.0 + step % 2, "sts": 4.0}, examples=32, seconds=7.0)
    gaps = [b - a for a, b in zip([0.0, *when], when)]
    assert len(said) >= 200 * 7 // 30 and all(20.0 <= g <= 27.0 for g in gaps), gaps
    first = said[0]
    # 3 steps of 7 s reach 21 s: step 3, losses averaged over those 3 steps, 32 examples / 7 s
    assert first.startswith("step 3/200 (2%), epoch 1/1 | loss sst=1.667 sts=4.000 | 4.6 ex/s | ETA 22m59s")


def test_eta_counts_only_this_process_steps_of_a_resumed_run():
    clock, said = FakeClock(), []
    log = ProgressLog(total_steps=100, done_steps=90, every_s=0.0, clock=clock, say=said.append)
    clock.t = 100.0  # e.g. loading and evaluating: not step time
    log.step(91, 2, 2, {"sst": 0.5}, examples=8, seconds=2.0)
    assert "step 91/100 (91%)" in said[0] and "ETA 18 s" in said[0]


def test_rows_lines_during_evaluation_are_throttled_too():
    clock, said = FakeClock(), []
    log = ProgressLog(total_steps=10, every_s=20.0, clock=clock, say=said.append)
    for done in range(64, 1101, 64):
        clock.t += 5.0
        log.rows("predicting sst dev", done, 1101)
    assert [s.split(" |")[0] for s in said] == [f"predicting sst dev: {n}/1101 rows" for n in (256, 512, 768, 1024)]


def test_durations_and_the_interval_setting(monkeypatch):
    assert [format_duration(s) for s in (0.4, 59, 61, 3599, 3661)] == ["0 s", "59 s", "1m01s", "59m59s", "1h01m"]
    monkeypatch.delenv("MINBERT_PROGRESS_EVERY", raising=False)
    assert progress_every_s() == 20.0
    monkeypatch.setenv("MINBERT_PROGRESS_EVERY", "0")
    assert progress_every_s() == 0.0
    for bad in ("soon", "-1"):
        monkeypatch.setenv("MINBERT_PROGRESS_EVERY", bad)
        with pytest.raises(ValueError, match="MINBERT_PROGRESS_EVERY"):
            progress_every_s()


def test_a_run_with_output_redirected_to_a_file_prints_progress_lines(tmp_path, data_root):
    """The CLI as under nohup: stdout is a file, not a terminal, so plain lines replace the bar."""
    out = tmp_path / "out.log"
    env = {**os.environ, "MINBERT_PROGRESS_EVERY": "0"}
    with out.open("w") as f:
        subprocess.run([sys.executable, "-m", "minbert_core", "multitask", "--strategy", "pcgrad",
                        "--checkpoint", "random:tiny", "--epochs", "2", "--train-limit", "16", "--eval-limit", "16",
                        "--batch-size", "8", "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)],
                       stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                       env=env)
    text = out.read_text()
    steps = re.findall(r"^step (\d+)/4 \(\d+%\), epoch (\d)/2 \| loss sst=[\d.]+ para=[\d.]+ sts=[\d.]+ \| "
                       r"[\d.]+ ex/s \| ETA ", text, flags=re.M)
    assert [s for s, _ in steps] == ["1", "2", "3", "4"] and [e for _, e in steps] == ["1", "1", "2", "2"]
    assert re.search(r"^predicting sst dev: \d+/16 rows", text, flags=re.M)
