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


class Pasha:
    """PASHA (Bohdal, Balles, Wistuba, Ermis, Archambeau, Zappella: "PASHA: Efficient HPO and NAS with
    Progressive Resource Allocation", ICLR 2023, arXiv:2207.06940): asynchronous successive halving
    (ASHA, promotion type: Li et al. 2020) whose maximum resource starts low and grows by one rung
    whenever the ranking of the runs at the two current top rungs is not stable.

    Rungs at epochs r_min x eta^j below the sweep's epochs E, then E itself. The current maximum starts
    at the second rung. Every run pauses on reaching a rung (the simulation hears no: the run stops
    for now; `resume` may hand it back at once). A free worker asks `resume` (ASHA's get_job): from
    the rung below the current maximum down to the first, the best not yet promoted run among the top
    floor(n / eta) of the n runs that reached that rung (ties to the earlier arrival; a non-finite
    accuracy ranks last) trains on to the next rung; with none anywhere, the worker takes the next
    run of the order. A run at the current maximum waits there; when the maximum grows, the runs
    waiting at the old maximum are promoted from it like any rung's, so a paused run is resumed,
    not lost. A run promoted to E trains to its end.

    The ranking check (after every rung result): the runs at the current maximum rung, ranked by
    their accuracy there and by their accuracy at the rung below. `soft` (the paper's soft ranking):
    the rankings agree when, position by position, the run ranked i-th at the top rung lies within
    epsilon of the accuracy, at the rung below, of the run ranked i-th there; epsilon is estimated as
    in the paper and Syne Tune's PASHA: the 90th percentile of the accuracy differences, at the
    latest epoch up to the top rung both reached (past the rung below), of the pairs of runs whose
    curves crossed and crossed back before it (their order there held earlier, the opposite order
    in between); no such pair keeps the last estimate (at first 0). `soft=False`: exact ranking
    (epsilon 0). When they disagree, the maximum grows by one rung (up to E).

    The sweep is a fixed list of runs, not a sampler: once it has drained (no run left to start or
    promote), PASHA's answer is the best run at the highest rung reached; when that rung is below E
    it trains on to its end (`answer`: charged, on one worker, as the paper retrains its pick), so a
    PASHA replay keeps the runs promoted to E and its pick."""
    graph_epochs = 0

    def __init__(self, epochs: int, r_min: int = 1, eta: int = 3, soft: bool = True, percentile: float = 90.0):
        if r_min < 1 or eta < 2:
            raise ValueError("PASHA needs r_min >= 1 and eta >= 2")
        self.levels = [r_min * eta ** j for j in range(epochs) if r_min * eta ** j < epochs] + [epochs]
        self.eta, self.soft, self.percentile = eta, soft, percentile
        self.top = min(1, len(self.levels) - 1)  # index of the current maximum rung: the second
        self.rungs: list[dict[int, float]] = [{} for _ in self.levels]  # per rung, run -> accuracy, in arrival order
        self.promoted: list[set[int]] = [set() for _ in self.levels]
        self.history: dict[int, list[float]] = {}  # per run, accuracy at epochs 1, 2, ...
        self.epsilon = 0.0
        self.picked: int | None = None
        self.answered = False
        self.growths: list[int] = []  # the number of rung results seen when the maximum grew (for tests)

    def started(self, run: int) -> None:
        self.history[run] = []

    def stopped(self, run: int) -> None: ...

    def continues(self, run: int, epoch: int, acc: float) -> bool:
        self.history[run].append(acc)
        if run == self.picked or epoch not in self.levels:
            return True
        self._record(self.levels.index(epoch), run, acc)
        return False  # paused at the rung: `resume` decides whether it goes on

    def finished(self, run: int, final: float, diverged: bool) -> None:
        if not diverged and len(self.history[run]) == self.levels[-1] - 1:
            self.history[run].append(final)
            self._record(len(self.levels) - 1, run, final)

    def resume(self) -> int | None:
        for k in range(self.top - 1, -1, -1):
            ranked = self._ranked(self.rungs[k])
            for run in ranked[:len(ranked) // self.eta]:
                if run not in self.promoted[k]:
                    self.promoted[k].add(run)
                    return run
        return None

    def answer(self) -> int | None:
        if self.answered:
            return None
        self.answered = True
        reached = max((k for k, rung in enumerate(self.rungs) if rung), default=None)
        if reached is None or reached == len(self.levels) - 1:
            return None
        self.picked = self._ranked(self.rungs[reached])[0]
        return self.picked

    @staticmethod
    def _ranked(rung: dict[int, float]) -> list[int]:
        """Runs of a rung, best first; ties to the earlier arrival (a stable sort of the arrival order)."""
        return sorted(rung, key=lambda r: -rung[r])

    def _record(self, k: int, run: int, acc: float) -> None:
        self.rungs[k][run] = acc if np.isfinite(acc) else -1.0  # below any accuracy: ranks last
        if 1 <= self.top < len(self.levels) - 1 and k in (self.top, self.top - 1) and not self._stable():
            self.top += 1
            self.growths.append(sum(map(len, self.rungs)))

    def _stable(self) -> bool:
        """Whether the runs at the current maximum rung rank there as they ranked at the rung below."""
        upper, lower = self.rungs[self.top], self.rungs[self.top - 1]
        if len(upper) < 2:
            return True
        at_top = self._ranked(upper)
        below = [run for run in self._ranked(lower) if run in upper]
        if at_top == below:
            return True
        epsilon = self._estimate_epsilon() if self.soft else 0.0
        return all(abs(lower[a] - lower[b]) <= epsilon for a, b in zip(at_top, below))

    def _estimate_epsilon(self) -> float:
        """The paper's epsilon (see the class): unchanged when no pair of runs crossed and crossed back."""
        low, high = self.levels[self.top - 1], self.levels[self.top]
        runs = [r for r, h in self.history.items() if len(h) > low]
        if len(runs) < 2:
            return self.epsilon
        acc = np.full((len(runs), high), np.nan)
        for i, r in enumerate(runs):
            h = self.history[r][:high]
            acc[i, :len(h)] = h
        reached = np.array([min(len(self.history[r]), high) for r in runs])
        i, j = np.triu_indices(len(runs), 1)
        last = np.minimum(reached[i], reached[j])  # the latest epoch both reached, past the rung below
        ahead = acc[i] > acc[j]  # (pairs, epochs); NaN compares as not ahead
        now = ahead[np.arange(len(i)), last - 1][:, None]
        before = np.arange(high)[None, :] < (last - 1)[:, None]
        same, opposite = before & (ahead == now), before & (ahead != now)
        first_same = np.where(same.any(1), same.argmax(1), high)
        last_opposite = np.where(opposite.any(1), high - 1 - opposite[:, ::-1].argmax(1), -1)
        gaps = np.abs(acc[i, last - 1] - acc[j, last - 1])[(first_same < last_opposite)]
        gaps = gaps[np.isfinite(gaps)]
        if gaps.size:
            self.epsilon = float(np.percentile(gaps, self.percentile))
        return self.epsilon
