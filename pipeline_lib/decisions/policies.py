"""Stopping policies for the asynchronous replay (`replay.simulate`), each using only what it would
know at decision time: its runs' accuracies so far, features built from epochs 0..rung of the run
being decided, and the final accuracy of runs that have already ended.

Rung rules (one decision per run, at epoch `rung`), in two forms:
- keep fraction f, ASHA-like, exactly as `TriagePruner` decides a trial at a rung: a run reaching the
  rung continues when its score ranks within the best ceil(f x n) of the n runs that have reached the
  rung so far (itself included; a tie goes to the earlier run; `keep.kept_count`). The first run at
  a rung always continues.
- stop rule at alpha: a run stops only when its conformal chance of ending in the top `share` of
  final accuracy is below alpha (`uncertainty.p_above`); the top-share cutoff is estimated from the
  runs seen at the rung (final accuracy where known, else the current prediction). Calibrated on
  the prequential residuals of this sweep (final minus the prediction made before the run ended), so
  no label is used before it exists; until `MIN_CALIBRATION` residuals exist every run continues.

Scores: accuracy at the rung (`i_epoch`); a predictor fitted elsewhere (`transfer`: fixed, or the
corpus predictor scoring the runs seen at the rung among themselves, `AmongSeen`) or stored
out-of-fold predictions (`oracle`, fitted on this sweep's final accuracies: not deployable); a
predictor refit on the runs of this sweep that have already ended (`online`).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from pipeline_lib.prediction.models import inner_splits, make_predictor
from pipeline_lib.vocabulary import Task

from .keep import kept_count
from .uncertainty import difficulty, mondrian_bins, p_above

MIN_CALIBRATION = 10   # prequential residuals before the stop rule may stop anything
MIN_CONFIGS = 5        # configurations ended before the online predictor replaces accuracy at the rung
REFIT_GROWTH = 1.5     # the online predictor is refit when the ended runs grew by this factor


class TrainAll:
    """Train every run to its end: the reference."""
    graph_epochs = 0

    def started(self, run: int) -> None: ...
    def continues(self, run: int, epoch: int, acc: float) -> bool: return True
    def stopped(self, run: int) -> None: ...
    def finished(self, run: int, final: float, diverged: bool) -> None: ...


def promotes(score: float, competing: np.ndarray, fraction: float) -> bool:
    """Whether `score`, the last of `competing` (the n scores seen at the rung so far, in arrival order),
    ranks within the kept count of the n (`keep.kept_count`: the best fraction, rounded up), ties
    going to the earlier run: the rule `TriagePruner` applies at a rung. A non-finite score never does."""
    if not np.isfinite(score):
        return False
    earlier = np.nan_to_num(competing[:-1], nan=-np.inf)
    ahead = int((earlier >= score).sum())
    return ahead < kept_count(fraction, len(competing))


@dataclass
class RungRule:
    """Decide each run once, at epoch `rung`, by `fraction` (keep fraction) or `alpha` (stop rule).
    Runs in `always` (the labelled fraction of `online`) continue whatever their score."""
    rung: int
    fraction: float | None = None
    alpha: float | None = None
    share: float = 0.1
    always: frozenset[int] = frozenset()
    graph_epochs: int = 0
    seen: list[int] = field(default_factory=list)
    acc_at_rung: dict[int, float] = field(default_factory=dict)
    final: dict[int, float] = field(default_factory=dict)

    def started(self, run: int) -> None: ...
    def stopped(self, run: int) -> None: ...

    def finished(self, run: int, final: float, diverged: bool) -> None:
        self.final[run] = final

    def continues(self, run: int, epoch: int, acc: float) -> bool:
        if epoch != self.rung:
            return True
        self.seen.append(run)
        self.acc_at_rung[run] = acc
        if run in self.always:
            return True
        seen = np.array(self.seen)
        scores = self.scores(seen)
        if self.fraction is not None:
            return promotes(scores[-1], scores, self.fraction)
        return self.chance_of_top(run, seen, scores) >= self.alpha

    def scores(self, runs: np.ndarray) -> np.ndarray:
        """The score of each run (higher = better) as known now."""
        raise NotImplementedError

    def chance_of_top(self, run: int, seen: np.ndarray, scores: np.ndarray) -> float:
        """P(the run ends in the top share): 1 (continue) where the rule cannot state one."""
        return 1.0


class IEpoch(RungRule):
    """i-Epoch: the score is the test accuracy at the rung."""

    def scores(self, runs: np.ndarray) -> np.ndarray:
        return np.array([self.acc_at_rung[r] for r in runs])


@dataclass
class Calibrated(RungRule):
    """A rung rule whose score is a predicted final accuracy, with prequential conformal calibration:
    when a run ends, its residual against the prediction made for it before (if any) is kept, with
    its embedding (the predictor's own feature space, for the difficulty estimate) and bin."""
    embedding: np.ndarray | None = None   # one row per run: where the difficulty estimate measures distance
    bins: np.ndarray | None = None        # one label per run (architecture)
    residuals: list[tuple[int, float]] = field(default_factory=list)

    def predicted(self, runs: np.ndarray) -> np.ndarray | None:
        """Predicted final accuracy of the runs, None while the policy has no predictor."""
        raise NotImplementedError

    def scores(self, runs: np.ndarray) -> np.ndarray:
        predicted = self.predicted(runs)
        return np.array([self.acc_at_rung[r] for r in runs]) if predicted is None else predicted

    def finished(self, run: int, final: float, diverged: bool) -> None:
        if run in self.acc_at_rung:  # decided at the rung: its prediction existed before its label
            before = self.predicted(np.array([run]))
            if before is not None and np.isfinite(before[0]):
                self.residuals.append((run, final - float(before[0])))
        super().finished(run, final, diverged)

    def chance_of_top(self, run: int, seen: np.ndarray, scores: np.ndarray) -> float:
        predicted = self.predicted(seen)
        if predicted is None or len(self.residuals) < MIN_CALIBRATION or not np.isfinite(predicted[-1]):
            return 1.0
        best_known = np.array([self.final.get(r, p) for r, p in zip(seen, predicted)])
        cutoff = float(np.quantile(best_known[np.isfinite(best_known)], 1 - self.share))
        rows = np.array([r for r, _ in self.residuals])
        residual = np.array([e for _, e in self.residuals])
        sigmas = difficulty(self.embedding[rows], residual, self.embedding[[run]])
        bins = mondrian_bins(self.bins[rows], self.bins[[run]]) if self.bins is not None else None
        return float(p_above(residual, predicted[-1:], cutoff, sigmas, bins)[0])


@dataclass
class Fixed(Calibrated):
    """A predictor fixed before the sweep: fitted on other studies (`transfer`), or stored out-of-fold
    predictions (`oracle`). `predictions`: per run, from its features at the rung (read only once it
    has reached the rung), made in one call beforehand; each run scored at the rung is charged
    `seconds_per_run` (`charged_seconds`, which the simulation adds to the decision seconds)."""
    predictions: np.ndarray | None = None
    seconds_per_run: float = 0.0

    def predicted(self, runs: np.ndarray) -> np.ndarray | None:
        return self.predictions[runs]

    @property
    def charged_seconds(self) -> float:
        return self.seconds_per_run * len(self.seen)


@dataclass
class AmongSeen(RungRule):
    """A predictor fitted elsewhere whose inputs are normalized among the runs scored together (the
    corpus predictor): each decision scores the runs seen at the rung so far, normalized among
    themselves by `prepare`, in one predict call (timed, so charged); accuracy at the rung while
    fewer than `min_runs` have been seen. Its values only rank (keep fraction, no stop rule)."""
    model: object = None
    features: np.ndarray | None = None
    prepare: Callable | None = None
    min_runs: int = 1

    def scores(self, runs: np.ndarray) -> np.ndarray:
        if len(runs) < self.min_runs:
            return np.array([self.acc_at_rung[r] for r in runs])
        return np.asarray(self.model.predict(self.prepare(self.features[runs])), dtype=np.float64)


@dataclass
class Online(Calibrated):
    """A predictor refit on the runs of this sweep that have already ended, from `features` (one row
    per run, built from epochs 0..rung); accuracy at the rung until MIN_CONFIGS configurations have
    ended. `fit(X, config_ids, final)` returns a fitted model with predict(X).

    Each refit predicts every run in one call (and embeds them, for the difficulty estimate); a run's
    prediction is read only once it has reached the rung, when its features exist. One batch call
    costs what one run's call does (the pipeline's overhead dominates), and it is charged."""
    features: np.ndarray | None = None
    config_ids: np.ndarray | None = None
    fit: Callable | None = None
    predictions: np.ndarray | None = None
    fitted_on: int = 0

    def predicted(self, runs: np.ndarray) -> np.ndarray | None:
        return None if self.predictions is None else self.predictions[runs]

    def finished(self, run: int, final: float, diverged: bool) -> None:
        super().finished(run, final, diverged)
        ended = np.array(sorted(self.final))
        enough = len(set(self.config_ids[ended])) >= MIN_CONFIGS
        if enough and len(ended) >= max(self.fitted_on * REFIT_GROWTH, self.fitted_on + 1):
            model = self.fit(self.features[ended], self.config_ids[ended], np.array([self.final[r] for r in ended]))
            self.predictions = np.asarray(model.predict(self.features), dtype=np.float64)
            self.fitted_on = len(ended)
            if self.alpha is not None:
                self.embedding = embed(model, self.features)


def refit_linear(X: np.ndarray, config_ids: np.ndarray, final: np.ndarray) -> Pipeline:
    """The online predictor: the evaluated linear pipeline (ridge; penalty by grouped inner CV when every
    inner fold holds two runs or more, else the fixed one) fitted on the ended runs, one thread."""
    splits = inner_splits(Task.REGRESSION, final, config_ids)
    if splits and min(len(test) for _, test in splits) < 2:  # R2 of one run is undefined: fixed penalty
        splits = None
    with threadpool_limits(1):
        return make_predictor("linear", Task.REGRESSION, len(final), X.shape[1], splits).fit(X, final)


def embed(model, X: np.ndarray) -> np.ndarray:
    """Rows of X in a predictor's own feature space (a Pipeline's steps before its estimator), where
    the difficulty estimate measures distance; X with NaN as 0 for anything else."""
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        return np.asarray(model[:-1].transform(X), dtype=np.float64)
    return np.nan_to_num(np.asarray(X, dtype=np.float64))


def labelled_runs(n_runs: int, fraction: float, seed: int) -> frozenset[int]:
    """The seeded random runs `online` trains to the end whatever their score (unbiased labels)."""
    count = round(fraction * n_runs)
    return frozenset(int(r) for r in np.random.default_rng(seed).choice(n_runs, size=count, replace=False))


class OptunaPolicy:
    """Optuna's pruner through its real API: one trial per run (asked when a worker starts it),
    each epoch's accuracy `trial.report`-ed, stopped when `trial.should_prune()`; an ended run is told
    its final accuracy (a diverged one FAIL), a stopped one PRUNED. Trials of parallel workers are
    open at once, as in a distributed Optuna study."""
    graph_epochs = 0

    def __init__(self, make_pruner: Callable[[], optuna.pruners.BasePruner], name: str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(direction="maximize", pruner=make_pruner(), study_name=name,
                                             sampler=optuna.samplers.RandomSampler(seed=0))
        self.trials: dict[int, optuna.Trial] = {}

    def started(self, run: int) -> None:
        self.trials[run] = self.study.ask()

    def continues(self, run: int, epoch: int, acc: float) -> bool:
        if not np.isfinite(acc):
            return True  # diverged: it ends at its recorded last epoch, told FAIL
        trial = self.trials[run]
        trial.report(acc, epoch)
        return not trial.should_prune()

    def stopped(self, run: int) -> None:
        self.study.tell(self.trials.pop(run), state=TrialState.PRUNED)

    def finished(self, run: int, final: float, diverged: bool) -> None:
        trial = self.trials.pop(run)
        if diverged or not np.isfinite(final):
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, final)
