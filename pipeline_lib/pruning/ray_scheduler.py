"""Triage's keep rules as a Ray Tune scheduler (see the package docstring).

Ray Tune calls a scheduler in the driver process for every result of every trial, wherever the
trials run, so the scores at each rung are kept here. A trial reports its accuracy as `metric`
(`tune.report`); with predictions, it also reports its `Prediction.as_dict()` (predicted, low,
high, p_good) at the predictor's k, and the scheduler ranks on those.
"""
from __future__ import annotations

from collections.abc import Sequence

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..spec import KeepPGood
from . import DEFAULT_KEEP, DEFAULT_RUNGS, keep_rule, keeps, lost


class TriageScheduler(FIFOScheduler):
    """Stop a trial at a rung unless the keep rule keeps it among the trials scored at that rung.

    keep, min_trials: as `TriagePruner`. rungs: values of `time_attr` (default: the trial's
    training_iteration, i.e. its number of reports; report epoch 0 too and use time_attr="epoch"
    to count epochs). By default the best half at 3 (`DEFAULT_KEEP`, `DEFAULT_RUNGS`: the rule the
    decision race picks for the asynchronous i-Epoch, in epochs, docs/results/race.md). use_predictions: rank on the reported
    `predicted` (and `p_good`) instead of `metric`; the trials' reports carry them at the rungs.
    """

    def __init__(self, keep: float | int | dict = DEFAULT_KEEP, rungs: Sequence[int] = DEFAULT_RUNGS,
                 metric: str | None = None,
                 mode: str | None = None, time_attr: str = "training_iteration", use_predictions: bool = False,
                 min_trials: int = 4):
        super().__init__()
        if not rungs:
            raise ValueError("give the rungs to decide at")
        self.rule = keep_rule(keep)
        if isinstance(self.rule.keep, KeepPGood) and not use_predictions:
            raise ValueError("a P(good) keep rule needs predictions (accuracies carry no P(good))")
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
        self.rungs, self.time_attr, self.use_predictions, self.min_trials = (
            tuple(sorted(set(rungs))), time_attr, use_predictions, min_trials)
        self._metric, self._mode = metric, mode
        self.scores: dict[int, dict[str, dict]] = {rung: {} for rung in self.rungs}
        self.stopped: dict[int, list[str]] = {rung: [] for rung in self.rungs}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = self._metric or metric, self._mode or mode
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        """Refuse to start without a metric and a mode when ranking on the metric (as Ray's ASHA does):
        a missing mode would silently rank as `max`."""
        if not self.use_predictions and (not self._metric or self._mode not in ("max", "min")):
            raise ValueError(f"{type(self).__name__} has been instantiated without a valid `metric` ({self._metric}) "
                             f"or `mode` ({self._mode}) parameter: pass them to the scheduler or to tune.TuneConfig")
        super().on_trial_add(tune_controller, trial)

    def _score(self, result: dict) -> dict:
        if self.use_predictions:
            return {name: result.get(name) for name in ("predicted", "low", "high", "p_good")}
        value = result[self._metric]
        return {"predicted": value if self._mode == "max" else -value}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        """Decide at every rung the trial has reached with this result and not before (a `time_attr`
        at or past a rung reaches it: `time_total_s` never equals a rung exactly); the first result
        at or past a rung is its score there."""
        now = result.get(self.time_attr)
        if now is None:
            return TrialScheduler.CONTINUE
        for rung in self.rungs:
            if now < rung or trial.trial_id in self.scores[rung]:
                continue
            if not self.use_predictions and self._metric not in result:
                raise ValueError(f"trial {trial.trial_id} reported no {self._metric!r} at {self.time_attr} = {now}")
            self.scores[rung][trial.trial_id] = self._score(result)
            if lost(self.scores[rung][trial.trial_id]):
                self.stopped[rung].append(trial.trial_id)
                return TrialScheduler.STOP
            if len(self.scores[rung]) < self.min_trials:
                continue
            if not keeps(self.scores[rung], trial.trial_id, self.rule):
                self.stopped[rung].append(trial.trial_id)
                return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return "TriageScheduler: " + ", ".join(f"rung {r}: {len(self.scores[r])} scored, {len(self.stopped[r])} stopped"
                                               for r in self.rungs)
