"""`minbert tune`: an Optuna search that prunes on each epoch's dev score, resumes from its storage file,
and reports the best configuration, the importances and Optuna's plots."""
from __future__ import annotations

import json

import optuna
import pytest

from minbert_core.cli import main
from minbert_core.tune import EpochReporter, open_study, requeue_interrupted


def test_tune_searches_resumes_and_reports(data_root, tmp_path):
    """A smoke search runs to the end; a second call continues the same storage and adds a trial, each
    trial reporting every epoch's dev score; the report files exist and name the best trial."""
    out = tmp_path / "tune"
    storage = f"sqlite:///{out / 'tune.db'}"
    assert main(["tune", "--profile", "smoke", "--out", str(out), "--trials", "2"]) == 0
    first = [t.params for t in optuna.load_study(study_name="minbert-tune", storage=storage).trials]
    assert len(first) == 2
    assert main(["tune", "--profile", "smoke", "--out", str(out), "--add", "1"]) == 0
    study = optuna.load_study(study_name="minbert-tune", storage=storage)
    states = optuna.trial.TrialState
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert [t.params for t in study.trials[:2]] == first  # continued, not restarted
    assert all(t.state in (states.COMPLETE, states.PRUNED) for t in study.trials)
    for t in study.trials:  # pruning sees every epoch: a complete trial reported both, a pruned one at least one
        epochs = sorted(t.intermediate_values)
        assert epochs == [1, 2] if t.state == states.COMPLETE else epochs[:1] == [1]
        assert (out / "trials" / t.user_attrs["run"] / "history.csv").is_file()
        assert not (out / "trials" / t.user_attrs["run"] / "checkpoints" / "best.safetensors").exists()
    report = out / "report"
    best = json.loads((report / "best.json").read_text())
    assert best["dev_score"] == pytest.approx(study.best_value)
    assert best["params"] == study.best_params and best["command"].startswith("minbert multitask ")
    assert (report / "importance.json").is_file()
    assert (report / "trials.csv").read_text().count("\n") == 4  # header + 3 trials
    for name in ("optimization_history", "intermediate_values", "slice", "contour"):
        assert (report / f"{name}.png").stat().st_size > 1000 and (report / f"{name}.pdf").is_file()
    assert f"dev score {study.best_value:.4f}" in (report / "report.md").read_text()


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_trial_is_pruned_after_its_first_epoch(data_root, tmp_path):
    """The pruning hook in a real training run: the first epoch's dev score reaches the trial, the pruner's
    verdict stops the run one step into epoch 2, and the pruned run keeps its records, not its weights."""
    from minbert_core.tune import get_preset, objective

    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    study.optimize(lambda t: objective(t, get_preset("smoke"), tmp_path), n_trials=1)
    (t,) = study.trials
    assert t.state == optuna.trial.TrialState.PRUNED and list(t.intermediate_values) == [1]
    run = tmp_path / "trials" / t.user_attrs["run"]
    rows = (run / "history.csv").read_text().splitlines()
    assert sum(",dev," in r for r in rows) == 1 and not (run / "metrics.json").exists()
    assert not (run / "checkpoints").exists()


def test_report_ranks_hyperparameters_by_importance(tmp_path):
    """With scores that differ, importance.json holds every searched parameter's fANOVA importance (summing
    to 1), the report lists them and draws Optuna's importance plot; best.json is the best trial."""
    from minbert_core.tune_report import write_report

    study = open_study(tmp_path, "smoke")
    space = {"lr_finetune": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True),
             "head_dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}
    for i, (lr, p) in enumerate([(1e-5, 0.1), (1e-4, 0.4), (2e-4, 0.2), (3e-5, 0.3)]):
        study.add_trial(optuna.trial.create_trial(params={"lr_finetune": lr, "head_dropout": p}, distributions=space,
                                                  value=lr * 1000, intermediate_values={1: lr * 900},
                                                  user_attrs={"run": f"trial-{i:04d}"}))
    written = write_report(study, tmp_path / "report")
    imp = json.loads((tmp_path / "report" / "importance.json").read_text())
    assert set(imp) == {"lr_finetune", "head_dropout"} and sum(imp.values()) == pytest.approx(1.0)
    assert imp["lr_finetune"] > imp["head_dropout"]  # the score is a function of the learning rate alone
    assert any(f.endswith("param_importances.png") for f in written["figures"])
    best = json.loads((tmp_path / "report" / "best.json").read_text())
    assert best["trial"] == 2 and best["run"] == "trial-0002" and "--lr-finetune 0.0002" in best["command"]
    assert "| lr_finetune |" in (tmp_path / "report" / "report.md").read_text()


class _Trial:
    """What EpochReporter uses of an optuna.Trial; prunes once `prune_after` epochs were reported."""

    def __init__(self, prune_after: int):
        self.values: dict[int, float] = {}
        self.prune_after = prune_after

    def report(self, value: float, step: int) -> None:
        assert step not in self.values, f"epoch {step} reported twice"
        self.values[step] = value

    def should_prune(self) -> bool:
        return len(self.values) >= self.prune_after


def _history(path, dev_rows: list[dict]) -> None:
    lines = ["step,epoch,kind,loss_sst,dev_sst,dev_para,dev_overall", "1,1,train,1.5,,,"]
    lines += [f"{2 * e},{e},dev,,{r['sst']},{r['para']},{r['overall']}" for e, r in enumerate(dev_rows, 1)]
    path.write_text("\n".join(lines) + "\n")


def test_epoch_reporter_reports_each_epoch_once_and_prunes(tmp_path):
    """Each epoch's dev overall is reported once, as the trainer writes it; TrialPruned is raised where
    the pruner says so, and not while history.csv is unchanged."""
    hist = tmp_path / "history.csv"
    trial = _Trial(prune_after=2)
    rep = EpochReporter(trial, hist)
    rep(1)  # no history yet: nothing to report
    _history(hist, [{"sst": 0.3, "para": 0.6, "overall": 0.5}])
    rep(2)
    rep(3)  # unchanged file: no second report
    assert trial.values == {1: 0.5}
    _history(hist, [{"sst": 0.3, "para": 0.6, "overall": 0.5}, {"sst": 0.4, "para": 0.7, "overall": 0.61}])
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        rep(4)
    assert trial.values == {1: 0.5, 2: 0.61}


def test_resumed_search_must_keep_its_profile(tmp_path):
    """A search folder made with one profile refuses another whose setting or space differs, naming them."""
    open_study(tmp_path, "smoke")
    with pytest.raises(ValueError, match=r"profile 'smoke'.*base, space, startup differ"):
        open_study(tmp_path, "minilm-cpu")


def test_interrupted_trial_is_queued_again_with_its_run(tmp_path):
    """A trial stopped by Ctrl-C (Optuna marks it failed) is queued once more with its parameters and its
    run folder, so the next call resumes that run from its checkpoint."""
    study = open_study(tmp_path, "smoke")
    t = study.ask({"lr_finetune": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True)})
    t.set_user_attr("run", "trial-0000")
    t.set_user_attr("interrupted", True)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    assert requeue_interrupted(study) == [0]
    assert requeue_interrupted(study) == []  # queued once
    waiting = study.trials[-1]
    assert waiting.state == optuna.trial.TrialState.WAITING
    assert waiting.params == t.params and waiting.user_attrs["run"] == "trial-0000"


def test_report_of_equal_scores_says_why_there_are_no_importances(tmp_path):
    """Trials that all score the same (a search where nothing learned) still give a report: no importances
    (fANOVA has no variance to attribute), and the report says why, instead of the search failing at its end."""
    from minbert_core.tune_report import write_report

    study = open_study(tmp_path, "smoke")
    dist = {"lr_finetune": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True)}
    for lr in (1e-5, 1e-4, 2e-4):
        study.add_trial(optuna.trial.create_trial(params={"lr_finetune": lr}, distributions=dist, value=0.25,
                                                  intermediate_values={1: 0.25}, user_attrs={"run": "r"}))
    written = write_report(study, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "importance.json").read_text()) == {
        "note": "every complete trial scored 0.2500: nothing to attribute"}
    assert "nothing to attribute" in (tmp_path / "report" / "report.md").read_text()
    assert not any("param_importances" in f for f in written["figures"])
    assert any(f.endswith("optimization_history.png") for f in written["figures"])
