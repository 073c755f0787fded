"""`minbert bench --race` (issue 23 item 4): seeds per side, fixed dev halves (one picks, the other reports),
(a) in fp32 and bf16, targets judged from the measured times, and the time-to-accuracy figure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minbert_core.bench.race import RaceReferee, dev_halves, half_scores

TASKS = ("sst", "para", "sts")


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 5000))
def test_race_dev_halves_are_disjoint_fixed_and_cover_every_row(n):
    h = dev_halves(n)
    sel, rep = set(h["selection"]), set(h["report"])
    assert not sel & rep and sel | rep == set(range(n))
    assert abs(len(sel) - len(rep)) <= 1 and h["selection"] == sorted(sel) and h["report"] == sorted(rep)
    assert dev_halves(n) == h  # the same split for every side and seed: it depends on n alone
    if n >= 20:  # a seeded shuffle, not the file's first and second half (the files are ordered)
        assert h["selection"] != list(range(len(sel)))


def test_race_dev_halves_refuse_a_dev_set_too_small_to_split():
    with pytest.raises(ValueError, match="raise dev_limits"):
        dev_halves(1)


def _labels(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"sst": torch.randint(0, 5, (n,), generator=g), "para": torch.arange(n) % 2,
            "sts": torch.rand(n, generator=g) * 5}


def _right_on(rows: list[int], labels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Predictions equal to the labels on `rows` and as wrong as can be elsewhere (accuracy 0, r = -1)."""
    out = {"sst": (labels["sst"] + 1) % 5, "para": 1 - labels["para"], "sts": 5 - labels["sts"]}
    for t in out:
        out[t] = out[t].float()
        out[t][rows] = labels[t][rows].float()
    return out


def test_race_half_scores_score_each_half_on_its_own_rows():
    labels, n = _labels(40), 40
    halves = {t: dev_halves(n) for t in TASKS}
    s = half_scores(_right_on(halves["sst"]["selection"], labels), labels, halves)
    assert s["selection"] == pytest.approx({"sst": 1.0, "para": 1.0, "sts": 1.0, "overall": 1.0})
    assert s["report"] == pytest.approx({"sst": 0.0, "para": 0.0, "sts": -1.0, "overall": 0.0})


class _Dev:
    """A stand-in dev TokenizedSplit: labels, example ids and a length."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels
        self.split = type("Split", (), {"examples": [type("Ex", (), {"id": f"r{i}"})() for i in range(len(labels))]})

    def __len__(self) -> int:
        return len(self.labels)


def _trainer(labels: dict, preds: dict, train_time: float):
    from types import SimpleNamespace

    return SimpleNamespace(data={t: {"dev": _Dev(v)} for t, v in labels.items()},
                           evaluator=SimpleNamespace(last_predictions=preds),
                           state=SimpleNamespace(train_time=train_time))


def test_race_referee_stops_on_the_selection_half_and_reports_the_other():
    """(b)'s stop reads the selection half only: a model right on the report half alone (full-dev overall
    0.5, report half 1.0) goes on; one right on the selection half alone stops there, and what it records
    to report is the report half's score (0), not the selection half's (1) nor the whole dev set's."""
    labels, n = _labels(40), 40
    halves = {t: dev_halves(n) for t in TASKS}
    ref = RaceReferee(halves, {"fp32": 0.9, "bf16": 0.95})
    tr = _trainer(labels, _right_on(halves["sst"]["report"], labels), 10.0)
    ref.on_start(tr, 0)
    ref.on_epoch_end(tr, 0, {"overall": 0.5}, 50)
    assert ref.should_stop(tr, 0, {"overall": 0.5}) == "" and ref.reached == {}
    assert ref.curve[0]["report"]["overall"] == pytest.approx(1.0)
    tr = _trainer(labels, _right_on(halves["sst"]["selection"], labels), 20.0)
    ref.on_epoch_end(tr, 1, {"overall": 0.5}, 100)
    assert "selection-half overall reached" in ref.should_stop(tr, 1, {"overall": 0.5})
    assert {k: (p["step"], p["train_time_s"]) for k, p in ref.reached.items()} == {"fp32": (100, 20.0),
                                                                                  "bf16": (100, 20.0)}
    assert ref.reached["fp32"]["report"]["overall"] == pytest.approx(0.0)


def test_race_referee_refuses_dev_rows_that_are_not_the_halves():
    labels = _labels(40)
    ref = RaceReferee({t: dev_halves(30) for t in TASKS}, {"fp32": 0.9})
    with pytest.raises(ValueError, match="sst dev set has 40 rows and its halves 30"):
        ref.on_start(_trainer(labels, {}, 0.0), 0)


@pytest.fixture
def one_thread():
    """One torch thread for a tiny model: nothing to parallelise, and on a busy 2-core machine a second
    thread waits for a core on every operation (measured: 7 s instead of 53 s for the race below)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_race_end_to_end_two_seeds_on_slices(tiny_checkpoint, one_thread):
    """The whole race on tiny slices, 2 seeds: every side at every seed reads the same two halves; (a)
    reports its selection-half epoch's report-half score; (b) stops at the first evaluation whose
    selection-half overall reaches both targets (or at its budget), and records where it reached each."""
    from minbert_core.bench.race import race

    r = race(str(tiny_checkpoint), seeds=2, budget=1.0, eval_every=1, train_limit=16,
             dev_limits={"sst": 12, "sts": 12, "para": 12}, max_length=16, precision="fp32",
             multitask={"batch_size": 4, "epochs": 3}, say=lambda s: None)
    assert r["hardware"]["device_name"] and r["seeds"] == [11711, 21111] and r["dev_rows"] == {t: {"selection": 6, "report": 6} for t in
                                                               ("sst", "sts", "para")}
    rows = [x["rows"] for p in ("fp32", "bf16") for a in r["a"][p] for x in a["runs"]]
    by_task = {x["task"]: x["rows"] for x in r["a"]["fp32"][0]["runs"]}
    assert all(b["rows"] == by_task for b in r["b"]) and len({json.dumps(x) for x in rows}) == 3
    assert all(v["selection"] != v["report"] for v in by_task.values())
    for p in ("fp32", "bf16"):
        assert [a["seed"] for a in r["a"][p]] == [11711, 21111] and all(a["precision"] == p for a in r["a"][p])
        for x in (x for a in r["a"][p] for x in a["runs"]):
            best = max(x["by_epoch"], key=lambda e: e["selection"])
            assert (x["chosen_epoch"], x["report"], x["time_s"]) == (best["epoch"], best["report"],
                                                                     best["train_time_s"])
    for b, a32, a16 in zip(r["b"], r["a"]["fp32"], r["a"]["bf16"]):
        assert b["targets"] == {"fp32": a32["selection"]["overall"], "bf16": a16["selection"]["overall"]}
        for side, target in b["targets"].items():
            first = next((c for c in b["curve"] if c["selection"]["overall"] >= target), None)
            assert (b["reached"][side] or {}).get("step") == (first or {}).get("step")
        if "selection-half overall reached" in b["stopped"]:
            assert b["curve"][-1]["step"] == max(v["step"] for v in b["reached"].values())


def test_race_resumes_from_its_progress_file_and_refuses_another_races(tiny_checkpoint, one_thread, tmp_path,
                                                                        monkeypatch):
    """A race keeps each side in its progress file as that side ends. Stopped part way, it resumes: the
    finished sides are reused (not trained again), and (b) still races this seed's (a) sides (their targets,
    and budget x their training time). A file of another race (settings, seeds) or a damaged one is refused
    by name."""
    import minbert_core.bench.race as race_mod

    kw = dict(seeds=1, budget=1.0, eval_every=1, train_limit=16, dev_limits={"sst": 12, "sts": 12, "para": 12},
              max_length=16, precision="fp32", multitask={"batch_size": 4, "epochs": 2}, say=lambda s: None)
    ck = str(tiny_checkpoint)
    stopped, real_side_b = tmp_path / "stopped.race.json", race_mod.side_b

    def stop(*a, **k):
        raise KeyboardInterrupt  # the race stopped while (b) trained
    monkeypatch.setattr(race_mod, "side_b", stop)
    with pytest.raises(KeyboardInterrupt):
        race_mod.race(ck, progress=stopped, **kw)
    kept = json.loads(stopped.read_text())  # written as each (a) side ended, before (b) began
    assert kept["b"] == [] and [len(kept["a"][p]) for p in ("fp32", "bf16")] == [1, 1]

    def trained(*a, **k):
        raise AssertionError("a finished side was trained again")
    calls = []
    monkeypatch.setattr(race_mod, "side_a", trained)
    monkeypatch.setattr(race_mod, "side_b", lambda mt, seed, halves, targets: calls.append((mt, targets)) or
                        real_side_b(mt, seed, halves, targets))
    first = race_mod.race(ck, progress=stopped, **kw)
    a = {p: kept["a"][p][0] for p in ("fp32", "bf16")}
    assert calls[0][1] == {p: a[p]["selection"]["overall"] for p in a}
    assert calls[0][0]["time_budget_s"] == 1.0 * max(x["train_time_s"] for x in a.values())
    assert all(first["a"][p][0] == a[p] for p in a) and first["b"][0]["targets"] == calls[0][1]

    monkeypatch.setattr(race_mod, "side_b", trained)
    again = race_mod.race(ck, progress=stopped, **kw)  # finished: every side reused
    clock = ("date_utc", "wall_s_this_session")  # when and how long this call ran: not the race's result
    keep = lambda r: json.dumps({k: v for k, v in r.items() if k not in clock})  # noqa: E731
    assert keep(again) == keep(first)
    with pytest.raises(ValueError, match=r"stopped.race.json: its 'budget' differs .*1.0 != 2.0"):
        race_mod.race(ck, progress=stopped, **(kw | {"budget": 2.0}))
    done = json.loads(stopped.read_text())
    stopped.write_text(json.dumps(done | {"b": [done["b"][0] | {"targets": {"fp32": 0.9, "bf16": 0.9}}]}))
    with pytest.raises(ValueError, match=r"its \(b\) at seed 11711 raced targets \{'fp32': 0.9, 'bf16': 0.9\}, "
                                         r"not its \(a\) sides'"):
        race_mod.race(ck, progress=stopped, **kw)  # refused before any side trains
    done["b"][0]["seed"] = 7
    stopped.write_text(json.dumps(done))
    with pytest.raises(ValueError, match=r"has \(b\) at seed 7, not among this race's \[11711\]"):
        race_mod.race(ck, progress=stopped, **kw)
    stopped.write_text(stopped.read_text()[:200])  # cut short
    with pytest.raises(ValueError, match=r"stopped.race.json: not a race progress record \(JSONDecodeError"):
        race_mod.race(ck, progress=stopped, **kw)


def _result(ratios32: list, ratios16: list) -> dict:
    """A format-2 race record whose (a) sides trained 100 s a seed and (b) reached them at these ratios."""
    seeds = [11711, 21111, 100][: len(ratios32)]
    dev = {"sst": 0.45, "para": 0.82, "sts": 0.85, "overall": 0.7317}
    a = {p: [{"seed": s, "precision": p, "time_s": 100.0, "train_time_s": 100.0, "steps": 900, "report": dev,
              "selection": dev} for s in seeds] for p in ("fp32", "bf16")}
    hit = lambda x: None if x is None else {"time_s": 100.0 * x, "step": 300, "report": dev,  # noqa: E731
                                            "selection_overall": 0.74}
    b = [{"seed": s, "precision": "bf16", "steps": 300, "train_time_s": 150.0, "stopped": "",
          "reached": {"fp32": hit(x), "bf16": hit(y)}, "curve": [{"train_time_s": 40.0 * (k + 1), "step": 50 * (k + 1),
                                                                  "report": dev} for k in range(3)]}
         for s, x, y in zip(seeds, ratios32, ratios16)]
    return {"format": 2, "date_utc": "2026-12-01 10:00", "checkpoint": "minilm-l6", "seeds": seeds, "budget": 1.5,
            "targets": {"fp32": 0.5, "bf16": 0.7}, "half_seed": 23,
            "hardware": {"device_name": "Intel Xeon", "native_bf16": True},
            "dev_rows": {"sst": {"selection": 550, "report": 551}}, "a": a, "b": b,
            "settings": {"batch_size": 16, "lr_finetune": 5e-5, "lr_head": 1e-3, "loss_weights": "sts=0.5",
                         "steps_per_epoch": 50}}


def test_race_section_judges_each_target_from_the_measured_times():
    from minbert_core.bench.render import _race

    md = "\n".join(_race({"race": _result([0.40, 0.44, 0.42], [0.80, 0.90, 0.70])}))
    assert "3 seeds: 11711, 21111, 100" in md and "Run on Intel Xeon (with native bf16 matmul)." in md
    resumed = _result([0.4, 0.4], [0.6, 0.6]) | {"torch_threads": 2}
    dates = ["2026-12-01 03:00", "2026-12-02 09:30", "2026-12-01 04:10"]
    for x, d in zip([*resumed["a"]["fp32"], *resumed["b"]], dates):
        x["date_utc"] = d  # sides finished in two sessions: the section says when
    assert ("Run on Intel Xeon (with native bf16 matmul), 2 torch threads; its sides finished between "
            "2026-12-01 03:00 and 2026-12-02 09:30 UTC.") in "\n".join(_race({"race": resumed}))
    assert ("(b) against (a) fp32: target ≤ 0.5x (a)'s training time, mean over seeds: ✅ met: 0.42 ± 0.02x "
            "(per seed 11711: 0.40x, 21111: 0.44x, 100: 0.42x)") in md
    assert "(b) against (a) bf16: target ≤ 0.7x (a)'s training time, mean over seeds: ❌ missed: 0.80 ± 0.10x" in md
    assert "| (a) fp32, mean ± std | | 100 ± 0 |" in md and "| (b) at (a) fp32's overall | 21111 | 44 | 300 |" in md
    near = "\n".join(_race({"race": _result([0.40, 0.60, 0.45], [0.5, 0.5, 0.5])}))
    assert "✅ met: 0.48 ± 0.10x" in near and "within one std of the mean: not beyond the seed spread" in near
    short = "\n".join(_race({"race": _result([0.30, None, 0.30], [0.3, None, 0.3])}))
    assert ("❌ missed: (b) did not reach (a)'s selection-half overall within the budget (1.5x) in seed(s) "
            "21111") in short
    assert "| (b) at (a) fp32's overall | 21111 | not reached in 150 s |" in short


def test_race_run_writes_the_figure_beside_benchmarks_and_links_it(tmp_path, monkeypatch):
    """`minbert bench --race --race-seeds 3`: the race's seeds and progress file reach race(), its record joins
    BENCHMARKS.json (and the progress file goes), and figures/bench/race.png is written beside BENCHMARKS.md
    and linked from section 9."""
    import minbert_core.bench.race as race_mod
    from minbert_core.cli import main

    old = json.loads((Path(__file__).parents[1] / "BENCHMARKS.json").read_text())  # the committed results
    (tmp_path / "BENCHMARKS.json").write_text(json.dumps(old))
    calls = []
    (tmp_path / "BENCHMARKS.race.json").write_text("{}")  # the sides kept while it ran: removed once it joined

    monkeypatch.setattr(race_mod, "race", lambda *a, **kw: calls.append(kw) or _result([0.4, 0.5], [0.6, 0.6]))
    assert main(["bench", "--out", str(tmp_path / "BENCHMARKS.md"), "--race", "--race-seeds", "2",
                 "--race-precision", "bf16"]) == 0
    assert calls[0]["seeds"] == 2 and calls[0]["precision"] == "bf16"
    assert calls[0]["progress"] == tmp_path / "BENCHMARKS.race.json" and not calls[0]["progress"].exists()
    png = tmp_path / "figures" / "bench" / "race.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![time to accuracy](figures/bench/race.png)" in (tmp_path / "BENCHMARKS.md").read_text()
    assert json.loads((tmp_path / "BENCHMARKS.json").read_text())["race"]["figure"] == "figures/bench/race.png"
