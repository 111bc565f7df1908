"""Triage's keep rules as an Optuna pruner (see the package docstring).

Nothing lives in the pruner's memory: a trial's score at a rung is its intermediate value there
(`trial.report`) or the prediction its own process stored as a user attribute (`observe`), so
processes sharing a study through Optuna's RDB storage see each other's scores.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ..spec import KeepPGood
from . import DEFAULT_KEEP, DEFAULT_RUNGS, keep_rule, keeps, lost

if TYPE_CHECKING:  # the accuracy rule needs neither torch nor the predictors' stack
    import torch
    from torch import nn

    from ..api import History, Prediction, Predictor

PREDICTION_ATTR = "triage:prediction@{rung}"  # user attribute holding a trial's prediction at a rung
PEERS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


class TriagePruner(BasePruner):
    """Stop a trial at a rung unless the keep rule keeps it among the trials scored at that rung.

    keep: a fraction 0 < x < 1 (the best, rounded up), a number N >= 1 (top N) or {"p_good": t}
    (needs a predictor). rungs: the epochs (Optuna steps) at which to decide; with a predictor, its k.
    Without them: keep the best half at epoch 3 (`DEFAULT_KEEP`, `DEFAULT_RUNGS`: the rule the
    decision race picks for this asynchronous rule, docs/results/race.md).
    min_trials: no trial is stopped at a rung until this many (it included) have been scored there.
    """

    def __init__(self, keep: float | int | dict = DEFAULT_KEEP, rungs: Sequence[int] | None = None,
                 predictor: Predictor | None = None, min_trials: int = 4):
        if predictor is not None:
            if rungs is not None and tuple(rungs) != (predictor.k,):
                raise ValueError(f"the predictor predicts at k = {predictor.k}: it decides at that rung only, "
                                 f"not at {list(rungs)}")
            rungs = (predictor.k,)
        elif rungs is None:
            rungs = DEFAULT_RUNGS
        if not rungs:
            raise ValueError("give the rungs (epochs) to decide at, or a predictor")
        self.rule = keep_rule(keep)
        if isinstance(self.rule.keep, KeepPGood) and (predictor is None or not predictor.source.has_p_good):
            raise ValueError("a P(good) keep rule needs a predictor with a calibrated classification twin "
                             "(accuracies carry no P(good))")
        if min_trials < 1:
            raise ValueError("min_trials must be >= 1")
        self.rungs, self.predictor, self.min_trials = tuple(sorted(set(rungs))), predictor, min_trials

    def observe(self, trial: optuna.Trial, epoch: int, model: nn.Module | Mapping[str, torch.Tensor],
                history: History) -> Prediction | None:
        """Call after `trial.report(accuracy, epoch)`: the first time a trial reports at or past the
        predictor's k, predict and store the prediction in the trial (what `prune` and the other
        processes read); else nothing."""
        key = PREDICTION_ATTR.format(rung=self.predictor.k) if self.predictor is not None else None
        if key is None or epoch < self.predictor.k or key in trial.user_attrs:
            return None
        prediction = self.predictor.predict(model, history)
        trial.set_user_attr(key, prediction.as_dict())
        return prediction

    @staticmethod
    def _crossing(trial: FrozenTrial, rung: int) -> int | None:
        """The step at which the trial reached the rung: its first reported step at or past it
        (Optuna's pruners count a step at or past a rung as reaching it)."""
        return min((step for step in trial.intermediate_values if step >= rung), default=None)

    def _score(self, trial: FrozenTrial, rung: int, maximize: bool | None) -> dict | None:
        if self.predictor is not None:
            return trial.user_attrs.get(PREDICTION_ATTR.format(rung=rung))
        step = self._crossing(trial, rung)
        if step is None or maximize is None:
            return None
        value = trial.intermediate_values[step]
        return {"predicted": value if maximize else -value}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """True to stop the trial at the rung it has just reached; False when it reached none at this
        step, or when it cannot be judged (no prediction stored, or a multi-objective study ranked
        by accuracy: no one direction), as Optuna's own pruners answer when they cannot judge."""
        step = trial.last_step
        rung = max((r for r in self.rungs if step is not None and self._crossing(trial, r) == step), default=None)
        if rung is None:
            return False
        maximize = (None if len(study.directions) > 1 and self.predictor is None
                    else self.predictor is not None or study.direction == StudyDirection.MAXIMIZE)
        mine = self._score(trial, rung, maximize)
        if mine is None:
            return False
        if lost(mine):
            return True
        key = "{:09d}".format  # ties rank the earlier trial first
        scores = {key(t.number): s for t in study.get_trials(deepcopy=False, states=PEERS)
                  if t.number != trial.number and (s := self._score(t, rung, maximize)) is not None}
        scores[key(trial.number)] = mine
        if len(scores) < self.min_trials:
            return False
        return not keeps(scores, key(trial.number), self.rule)
