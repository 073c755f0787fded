"""BENCHMARKS.md's section 9 from a race of several seeds (bench.race, format 2): every number is read from
the race's record; the targets are judged here, from the measured times."""
from __future__ import annotations

import statistics

SIDES = ("fp32", "bf16")  # race.A_PRECISIONS (not imported: race imports torch and the trainer)


def mean_std(values: list[float], fmt: str = "{:.3f}") -> str:
    """'mean ± std' over seeds, the sample std (n - 1); the mean alone for one value."""
    if len(values) < 2:
        return fmt.format(values[0]) if values else "NA"
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def time_ratios(r: dict, side: str) -> list[float | None]:
    """Per seed: (b)'s training time to (a) `side`'s selection-half overall over (a)'s training time to its
    reported models; None where (b) did not reach it."""
    return [(b["reached"][side]["time_s"] / a["time_s"]) if b["reached"].get(side) else None
            for a, b in zip(r["a"][side], r["b"])]


def _scores(d: dict) -> str:
    return f"{d['sst']:.3f} / {d['para']:.3f} / {d['sts']:.3f} / {d['overall']:.4f}"


def _rows(r: dict) -> list[str]:
    """The table: each side's every seed, then its mean ± std."""
    L = ["| side | seed | training, s | steps | report half: SST / Quora / STS r / overall | selection-half overall |",
         "|---|---|---|---|---|---|"]
    for side in SIDES:
        runs = r["a"][side]
        L += [f"| (a) {side} | {a['seed']} | {a['time_s']:.0f} | {a['steps']} | {_scores(a['report'])} | "
              f"{a['selection']['overall']:.4f} |" for a in runs]
        L.append(f"| (a) {side}, mean ± std | | {mean_std([a['time_s'] for a in runs], '{:.0f}')} | | "
                 f"overall {mean_std([a['report']['overall'] for a in runs], '{:.4f}')} | |")
    for side in SIDES:
        hit = [b["reached"].get(side) for b in r["b"]]
        for b, h in zip(r["b"], hit):
            L.append(f"| (b) at (a) {side}'s overall | {b['seed']} | {h['time_s']:.0f} | {h['step']} | "
                     f"{_scores(h['report'])} | {h['selection_overall']:.4f} |" if h else
                     f"| (b) at (a) {side}'s overall | {b['seed']} | not reached in {b['train_time_s']:.0f} s | "
                     f"{b['steps']} | | |")
        got = [h for h in hit if h]
        if got:
            L.append(f"| (b) at (a) {side}'s overall, mean ± std{'' if len(got) == len(hit) else ' of reached'} | "
                     f"| {mean_std([h['time_s'] for h in got], '{:.0f}')} | | "
                     f"overall {mean_std([h['report']['overall'] for h in got], '{:.4f}')} | |")
    return L


def verdict(r: dict, side: str) -> str:
    """Whether (b) met its time target against (a) `side`, on the mean over seeds, with the measured
    ratios, their spread and the report-half scores at that point."""
    ratios, target, seeds = time_ratios(r, side), r["targets"][side], r["seeds"]
    head = f"- (b) against (a) {side}: target ≤ {target:g}x (a)'s training time, mean over seeds: "
    missing = [str(s) for s, x in zip(seeds, ratios) if x is None]
    got = [x for x in ratios if x is not None]
    per_seed = ", ".join(f"{s}: {'not reached' if x is None else f'{x:.2f}x'}" for s, x in zip(seeds, ratios))
    if missing:
        return (head + f"❌ missed: (b) did not reach (a)'s selection-half overall within the budget "
                f"({r['budget']:g}x) in seed(s) {', '.join(missing)} (per seed {per_seed})")
    mean = statistics.mean(got)
    sd = statistics.stdev(got) if len(got) > 1 else 0.0
    ok = mean <= target
    spread = (" (the target lies within one std of the mean: not beyond the seed spread)"
              if len(got) > 1 and mean - sd <= target <= mean + sd else "")
    b_rep = [b["reached"][side]["report"]["overall"] for b in r["b"]]
    a_rep = [a["report"]["overall"] for a in r["a"][side]]
    return (head + ("✅ met" if ok else "❌ missed") + f": {mean_std(got, '{:.2f}')}x (per seed {per_seed}){spread}; "
            f"report-half overall there: (b) {mean_std(b_rep, '{:.4f}')} against (a)'s {mean_std(a_rep, '{:.4f}')}")


def _hardware(r: dict) -> str:
    """Where the race ran (the processor, and whether it multiplies bf16 natively), where it was recorded."""
    hw = r.get("hardware")
    if not hw:
        return ""
    said = f" Run on {hw['device_name']} ({'with' if hw['native_bf16'] else 'without'} native bf16 matmul)"
    if "torch_threads" in r:
        said += f", {r['torch_threads']} torch threads"
    dates = sorted(x["date_utc"] for x in [*r["a"]["fp32"], *r["a"]["bf16"], *r["b"]] if "date_utc" in x)
    if dates:  # a resumed race: its sides may come from several sessions, so say when they ran
        said += f"; its sides finished between {dates[0]} and {dates[-1]} UTC"
    return said + "."


def race_section(r: dict) -> list[str]:
    """Section 9 for a race of several seeds: settings, the dev halves, the table, the targets, the figure."""
    s, rows = r["settings"], r["dev_rows"]
    halves = ", ".join(f"{t} {v['selection']:,} / {v['report']:,}" for t, v in rows.items())
    precision = ", ".join(sorted({b["precision"] for b in r["b"]}))
    L = ["", f"## 9. Time to accuracy (`minbert bench --race`, {r['date_utc']} UTC, `{r['checkpoint']}`, "
             f"{len(r['seeds'])} seeds: {', '.join(map(str, r['seeds']))})", "",
         "(a) three single-task models with plain `transformers` (mean pooling, linear head, AdamW lr 3e-5, "
         "batch 32, length-bucketed; SST 1 epoch, STS 2, Quora 1), once in fp32 (transformers' defaults) and once "
         f"under bf16 autocast; (b) one minbert multi-task model in {precision}, summed loss, batch "
         f"{s['batch_size']} per task, lr {s['lr_finetune']:g} / heads {s['lr_head']:g}, loss weights "
         f"{s['loss_weights'] or 'none'}, dev scored every {s['steps_per_epoch']} steps until its selection-half "
         f"overall reaches both (a) sides' (seed i against seed i), within {r['budget']:g}x the slower (a) side's "
         "training time. Training time only (evaluation is untimed on both sides)." + _hardware(r), "",
         f"Dev rows (selection / report half): {halves}; one seeded split (seed {r['half_seed']}) for every side "
         "and seed. The selection half picks each stopping point ((b)'s stop, (a)'s epoch for STS) and sets (b)'s "
         "target; every score below is on the report half. (a)'s time is its training time to the reported "
         "models; (b)'s is its training time to the evaluation where it first reached (a)'s overall.", "",
         *_rows(r), "", *(verdict(r, side) for side in SIDES)]
    if r.get("figure"):
        L += ["", f"![time to accuracy]({r['figure']})", "",
              "The figure: report-half overall against cumulative training seconds, every seed drawn; (b) a line "
              "per seed (an evaluation every "
              f"{s['steps_per_epoch']} steps); (a) a point per seed at its training time and overall (its overall "
              "exists only once its three models are trained), a dotted line at each (a) side's mean, and an x "
              "where (b) first reached each (a) side's overall on the selection half."]
    return L
