"""The README's account of the committed MiniLM search, checked against its records (results/tune-minilm-cpu)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEARCH = ROOT / "results" / "tune-minilm-cpu"


@pytest.fixture(scope="module")
def record():
    if not (SEARCH / "report" / "trials.csv").is_file():
        pytest.skip("no committed MiniLM search")
    trials = pd.read_csv(SEARCH / "report" / "trials.csv")
    best = json.loads((SEARCH / "report" / "best.json").read_text())
    importance = json.loads((SEARCH / "report" / "importance.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    return trials, best, importance, readme


def test_readme_reports_the_committed_search(record):
    trials, best, importance, readme = record
    done = trials[trials["state"] == "COMPLETE"].sort_values("value", ascending=False)
    pruned = (trials["state"] == "PRUNED").sum()
    assert f"{len(done)} trials complete and {pruned} pruned" in readme
    mins = done["duration"].map(pd.Timedelta).dt.total_seconds() / 60
    assert f"{mins.min():.1f}-{mins.max():.1f} minutes a complete trial" in readme
    p = best["params"]
    assert (f"Best: trial {best['trial']}, dev overall {best['dev_score']:.4f}, at encoder lr "
            f"{p['lr_finetune']:.1e}, head lr {p['lr_head']:.1e}, head dropout {p['head_dropout']:.2f}, "
            f"batch {p['batch_size']}").replace("e-05", "e-5").replace("e-03", "e-3") in readme
    top = done.head(10)
    assert (top["params_batch_size"] == 32).all()
    assert f"All 10 best trials use batch 32 ({top['value'].min():.3f}-{top['value'].max():.3f})" in readme
    b16 = done[done["params_batch_size"] == 16]["value"]
    assert f"the {len(b16)} complete at batch 16 score {b16.min():.3f}-{b16.max():.3f}" in readme
    b8 = done[done["params_batch_size"] == 8].iloc[0]
    assert f"at batch 8 the best is {b8['value']:.3f} (trial {b8['number']})" in readme
    imp = {k: f"{v:.2f}" for k, v in importance.items()}
    assert re.search(rf"encoder's learning rate first \({imp['lr_finetune']}\), the batch size next "
                     rf"\({imp['batch_size']}\), then the head's rate \({imp['lr_head']}\) and the head dropout "
                     rf"\({imp['head_dropout']}\)", readme)
    b32 = done[done["params_batch_size"] == 32]
    lo, hi = b32["params_lr_finetune"].min(), b32["params_lr_finetune"].max()
    span = b32["value"].max() - b32["value"].min()
    assert (f"Encoder rates from {lo:.1e} to {hi:.1e} all score within {span:.3f} at batch 32"
            .replace("e-05", "e-5").replace("e-04", "e-4")) in readme
    d = b32["params_head_dropout"]
    assert f"{d.min():.2f} to {d.max():.2f} among the batch-32 trials" in readme
    unlearned = done[~done["user_attrs_learned"].astype(bool)]["number"].tolist()
    assert sorted(unlearned) == [1, 3] and "(trials 1 and 3, batch 8) did not learn every task" in readme
