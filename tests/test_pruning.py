"""Triage keep rules as an Optuna pruner (RDB storage shared by processes) and a Ray Tune scheduler
(a real local Ray with 2 CPUs), on tiny models; expected decisions come from the rule written out
by hand here, not from the code under test."""
from __future__ import annotations

import functools
import json
import math
import multiprocessing
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from pipeline_lib.pruning.optuna_pruner import TriagePruner

optuna.logging.set_verbosity(optuna.logging.WARNING)
EPOCHS, RUNG = 3, 1
ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x[:400] / 16.0, dtype=torch.float32), torch.tensor(y[:400])


def _tiny_training(lr: float, epochs: int, seed: int = 0):
    """A softmax regression on 300 digits, full batch: yields test accuracy after each epoch (0 = init)."""
    x, y = _digits()
    torch.manual_seed(seed)
    model = nn.Linear(64, 10)
    accuracy = lambda: float((model(x[300:]).argmax(1) == y[300:]).float().mean())  # noqa: E731
    yield accuracy()
    for _ in range(epochs):
        for _ in range(5):  # plain gradient steps: torch.optim's first use imports torch._dynamo (7 s here)
            model.zero_grad()
            nn.functional.cross_entropy(model(x[:300]), y[:300]).backward()
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter -= lr * parameter.grad
        yield accuracy()


def _objective():
    def objective(trial: optuna.Trial) -> float:
        acc = 0.0
        for epoch, acc in enumerate(_tiny_training(trial.suggest_float("lr", 1e-4, 1.0, log=True), EPOCHS)):
            if epoch == 0:
                continue
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc
    return objective


def _optimize(storage: str, name: str, trials: int, seed: int) -> None:
    """One worker process: its own pruner object and sampler, the study shared through storage."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed),
                              pruner=TriagePruner(keep=0.5, rungs=[RUNG], min_trials=3))
    study.optimize(_objective(), n_trials=trials)


def _in_another_process(storage: str, name: str, trials: int, seed: int):
    process = multiprocessing.get_context("spawn").Process(target=_optimize, args=(storage, name, trials, seed))
    process.start()
    return process


def _joined(process) -> None:
    process.join(timeout=180)
    assert process.exitcode == 0


def test_pruner_decides_on_scores_other_processes_stored(tmp_path):
    """This process trains 4 trials; another process's 4 trials are judged against them (sequentially,
    so the decisions are known), then 5 more trials run here and in the other process at once."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = "own-loop"
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    _optimize(storage, name, 4, 0)
    _joined(_in_another_process(storage, name, 4, 1))
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials()
    assert len(trials) == 8
    for i, trial in enumerate(trials):
        earlier = [t.intermediate_values[RUNG] for t in trials[:i]]
        scores = [*earlier, trial.intermediate_values[RUNG]]
        rank = 1 + sum(s >= scores[-1] for s in earlier)  # a tie ranks the earlier trial first
        stop = len(scores) >= 3 and rank > math.ceil(0.5 * len(scores))
        assert (trial.state == optuna.trial.TrialState.PRUNED) == stop, (i, scores)
        if stop:
            assert max(trial.intermediate_values) == RUNG
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials[4:])  # judged on the first process's scores

    other = _in_another_process(storage, name, 5, 2)
    _optimize(storage, name, 5, 3)
    _joined(other)
    trials = study.get_trials()
    assert len(trials) == 18 and all(t.state.is_finished() for t in trials)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(max(t.intermediate_values) == RUNG for t in pruned)
    best_at_rung = max(trials, key=lambda t: t.intermediate_values[RUNG])
    assert best_at_rung.state == optuna.trial.TrialState.COMPLETE  # ranked first whenever it was judged


def test_rules_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        TriagePruner(keep=1.5, rungs=[1])
    with pytest.raises(ValueError, match="needs a predictor"):
        TriagePruner(keep={"p_good": 0.5}, rungs=[1])
    with pytest.raises(ValueError, match="rungs"):
        TriagePruner(keep=0.5, rungs=[])


def _race_default() -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / "decision_race.json").read_text())["default"]["pruner"]


def test_the_pruner_defaults_to_the_rule_the_decision_race_picks():
    """TriagePruner's default keep rule is the race's choice for the asynchronous i-Epoch (the pruner's
    rule), as benchmarks/results/decision_race.json and docs/results/race.md state it."""
    race = _race_default()
    pruner = TriagePruner()
    assert pruner.rungs == tuple(race["rungs"]) and pruner.rule.keep_rule == pytest.approx(race["keep"])
    assert f"default to keep {race['keep']:.4g} at rungs {race['rungs']}** (`{race['setting']}`)" in \
        (ROOT / "docs" / "results" / "race.md").read_text()


def test_the_ray_scheduler_defaults_to_the_same_rule():
    pytest.importorskip("ray")
    from pipeline_lib.pruning.ray_scheduler import TriageScheduler

    race = _race_default()
    scheduler = TriageScheduler(metric="test_acc", mode="max")
    assert scheduler.rungs == tuple(race["rungs"]) and scheduler.rule.keep_rule == pytest.approx(race["keep"])
    with pytest.raises(ValueError, match="rungs"):
        TriageScheduler(keep=0.5, rungs=[])


@pytest.mark.slow
def test_ray_tune_scheduler_stops_what_the_rule_stops(tmp_path):
    """Trials of fixed qualities run one at a time on a local Ray: the decisions are exactly the rule's."""
    ray = pytest.importorskip("ray")
    from ray import tune

    from pipeline_lib.pruning.ray_scheduler import TriageScheduler

    qualities = [0.9, 0.8, 0.6, 0.85, 0.65, 0.95]

    def trainable(config):
        for epoch in range(1, EPOCHS + 1):
            tune.report({"test_acc": config["q"] * epoch / EPOCHS, "epoch": epoch})

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        scheduler = TriageScheduler(keep=0.5, rungs=[RUNG], metric="test_acc", mode="max", time_attr="epoch",
                                    min_trials=2)
        tuner = tune.Tuner(trainable, param_space={"q": tune.grid_search(qualities)},
                           tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
                           run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
        results = tuner.fit()
    finally:
        ray.shutdown()
    epochs = {r.config["q"]: r.metrics["epoch"] for r in results}
    for i, q in enumerate(qualities):
        rank = 1 + sum(p >= q for p in qualities[:i])
        stop = i + 1 >= 2 and rank > math.ceil(0.5 * (i + 1))
        assert epochs[q] == (RUNG if stop else EPOCHS), (q, epochs)
    assert np.isclose(results.get_best_result("test_acc", "max").config["q"], 0.95)


def _reported(study: optuna.Study, values: dict[int, float]) -> optuna.Trial:
    trial = study.ask()
    for step, value in values.items():
        trial.report(value, step)
    return trial


def test_pruner_counts_a_step_past_a_rung_as_reaching_it():
    """Trials that report every other epoch (steps 2, 4) reach rung 3 at step 4, as Optuna's own
    pruners count it: the worse half is stopped there, and never at a step that reached no rung."""
    study = optuna.create_study(direction="maximize")
    pruner = TriagePruner(keep=0.5, rungs=[3], min_trials=2)
    decisions = []
    for quality in (0.9, 0.5, 0.95, 0.2):
        trial = _reported(study, {2: quality / 2})
        assert not pruner.prune(study, study._storage.get_trial(trial._trial_id))  # step 2 reaches no rung
        trial.report(quality, 4)
        decisions.append(pruner.prune(study, study._storage.get_trial(trial._trial_id)))
    # by hand: at rung 3 (step 4) 0.9 alone (too few), 0.5 ranks 2 of 2 (keep 1), 0.95 ranks 1 of 3 (keep 2),
    # 0.2 ranks 4 of 4 (keep 2)
    assert decisions == [False, True, False, True]


def test_pruner_cannot_judge_a_multi_objective_study_by_accuracy_and_says_keep_going():
    study = optuna.create_study(directions=["maximize", "minimize"])
    pruner = TriagePruner(keep=0.5, rungs=[1], min_trials=1)
    trial = study.ask()
    study._storage.set_trial_intermediate_value(trial._trial_id, 1, 0.1)
    assert pruner.prune(study, study._storage.get_trial(trial._trial_id)) is False


class _Trial:
    """What a scheduler reads of Ray's Trial: its id."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def test_ray_scheduler_refuses_to_start_without_a_metric_or_mode():
    from pipeline_lib.pruning.ray_scheduler import TriageScheduler

    for metric, mode in (("test_acc", None), (None, "max")):
        with pytest.raises(ValueError, match="without a valid `metric`"):
            TriageScheduler(keep=0.5, rungs=[1], metric=metric, mode=mode).on_trial_add(None, _Trial("a"))
    ranked_by_predictions = TriageScheduler(keep=0.5, rungs=[1], use_predictions=True)
    ranked_by_predictions.on_trial_add(None, _Trial("a"))  # needs neither


def test_ray_scheduler_decides_when_time_attr_passes_a_rung():
    """time_total_s never equals a rung: the first result at or past it is the trial's score there."""
    from ray.tune.schedulers import TrialScheduler

    from pipeline_lib.pruning.ray_scheduler import TriageScheduler

    scheduler = TriageScheduler(keep=0.5, rungs=[10.0], metric="test_acc", mode="min", time_attr="time_total_s",
                                min_trials=2)
    answers = {}
    for trial_id, loss in (("a", 0.3), ("b", 0.1), ("c", 0.5)):
        trial = _Trial(trial_id)
        scheduler.on_trial_add(None, trial)
        assert scheduler.on_trial_result(None, trial, {"time_total_s": 4.2, "test_acc": loss}) == TrialScheduler.CONTINUE
        answers[trial_id] = scheduler.on_trial_result(None, trial, {"time_total_s": 10.7, "test_acc": loss})
    # mode min: lower is better. a alone: too few; b best of 2 (keep 1); c worst of 3 (keep 2)
    assert answers == {"a": TrialScheduler.CONTINUE, "b": TrialScheduler.CONTINUE, "c": TrialScheduler.STOP}
