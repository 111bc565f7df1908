"""Replaying a finished study's recorded learning curves under stopping policies.

A policy decides, per run, how many epochs it trains and whether it is finished ("kept"); what
it costs is the recorded training seconds of those epochs plus the measured extra work it needs
(graph stage, predictor fitting). It is judged against the truth that training every run to the
end revealed: recall of the true top share of runs, best final accuracy kept, regret.

Two families:
- score policies (`keep_top`): every run trains to epoch k, a score ranks them, the best
  `n_keep` are finished. Sweeping n_keep traces a compute-versus-recall curve.
- Optuna pruners (`optuna_decision`): runs are replayed as trials, one after another in the
  given order, each epoch's test accuracy reported with `trial.report` and the run stopped when
  `trial.should_prune()` says so. A pruner's parameter grid traces its curve.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import optuna
import polars as pl
from optuna.trial import TrialState

from pipeline_lib.prediction.evaluation import cross_validated_predictions

TOP_SHARE = 0.1
TARGET_RECALL = 0.9


@dataclass(frozen=True)
class Curves:
    """Recorded curves of finished runs, one row per run in launch order, columns epochs 1..E.

    A run that diverged at epoch d has `epochs_done` d, NaN accuracy and loss after d and 0
    seconds after d. `final` is the final accuracy (chance for a diverged run)."""
    run_ids: tuple[str, ...]
    acc: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray
    epochs_done: np.ndarray
    final: np.ndarray

    @classmethod
    def from_frames(cls, metrics: pl.DataFrame, final: pl.DataFrame, order: list[str]) -> Curves:
        """metrics: run_id, epoch, test_acc, train_loss, seconds; final: run_id, final_acc.

        Runs are those of `final`, in the order of `order` (runs absent from it go last)."""
        rank = {run_id: i for i, run_id in enumerate(order)}
        run_ids = sorted(final["run_id"].to_list(), key=lambda r: (rank.get(r, len(rank)), r))
        m = metrics.filter((pl.col("epoch") >= 1) & pl.col("run_id").is_in(run_ids))
        epochs = int(m["epoch"].max())
        row = {r: i for i, r in enumerate(run_ids)}
        rows = m["run_id"].replace_strict(row, return_dtype=pl.Int64).to_numpy()
        cols = m["epoch"].to_numpy() - 1
        arrays = {}
        for name, column, empty in (("acc", "test_acc", np.nan), ("loss", "train_loss", np.nan), ("seconds", "seconds", 0.0)):
            a = np.full((len(run_ids), epochs), empty)
            a[rows, cols] = m[column].cast(pl.Float64).fill_null(empty).to_numpy()
            arrays[name] = a
        done = np.zeros(len(run_ids), dtype=np.int64)
        np.maximum.at(done, rows, cols + 1)
        finals = dict(zip(final["run_id"], final["final_acc"]))
        return cls(tuple(run_ids), arrays["acc"], arrays["loss"], arrays["seconds"], done,
                   np.array([finals[r] for r in run_ids], dtype=np.float64))

    @property
    def epochs(self) -> int:
        return self.acc.shape[1]

    def take(self, rows: np.ndarray) -> Curves:
        """The same runs in another launch order (rows: a permutation)."""
        return Curves(tuple(self.run_ids[i] for i in rows), self.acc[rows], self.loss[rows], self.seconds[rows],
                      self.epochs_done[rows], self.final[rows])

    @property
    def total_seconds(self) -> float:
        """Training every run to its end: the compute of train-all, the denominator of fractions."""
        return float(self.seconds.sum())


@dataclass(frozen=True)
class Decision:
    """What a policy did: epochs each run trained, which runs it finished, extra measured work."""
    epochs: np.ndarray
    kept: np.ndarray
    extra_seconds: float = 0.0


def train_all(curves: Curves) -> Decision:
    return Decision(curves.epochs_done.copy(), np.ones(len(curves.run_ids), dtype=bool))


def top_runs(final: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """The ceil(share x n) runs of highest final accuracy (ties broken by launch order)."""
    n_top = max(1, math.ceil(share * len(final) - 1e-9))
    mask = np.zeros(len(final), dtype=bool)
    mask[np.argsort(-final, kind="stable")[:n_top]] = True
    return mask


def outcome(curves: Curves, decision: Decision, share: float = TOP_SHARE) -> dict:
    """Compute spent and what it bought, against the truth of training every run to the end."""
    trained = np.arange(curves.epochs)[None, :] < decision.epochs[:, None]
    train_seconds = float(curves.seconds[trained].sum())
    seconds = train_seconds + decision.extra_seconds
    top = top_runs(curves.final, share)
    best = float(curves.final[decision.kept].max()) if decision.kept.any() else None
    return {"seconds": seconds, "fraction": seconds / curves.total_seconds, "train_seconds": train_seconds,
            "extra_seconds": decision.extra_seconds, "runs_kept": int(decision.kept.sum()),
            "recall_top": float((top & decision.kept).sum() / top.sum()), "best_kept": best,
            "regret": None if best is None else float(curves.final.max()) - best}


# Score policies --------------------------------------------------------------------------------

def early_accuracy(curves: Curves, k: int) -> np.ndarray:
    """Test accuracy at epoch k (NaN for a run that diverged before)."""
    return curves.acc[:, k - 1].copy()


def training_loss_sum(curves: Curves, k: int) -> np.ndarray:
    """Minus TSE, the sum of training losses over epochs 1..k (Ru et al. 2021), so higher is better.

    The losses as recorded: with `train_metrics: epoch` (the default) the means over each epoch's
    minibatches, as Ru et al. define TSE; with `exact`, a pass after the epoch. The same sum as the
    `tse` feature (`features.curves.tse_features`), on the replay's arrays."""
    return -curves.loss[:, :k].sum(axis=1)


def keep_top(curves: Curves, scores: np.ndarray, k: int, n_keep: int, extra_seconds: float = 0.0) -> Decision:
    """Train every run to epoch k, then finish the n_keep runs of highest score (NaN ranks last)."""
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf, posinf=np.inf, neginf=-np.inf), kind="stable")
    kept = np.zeros(len(scores), dtype=bool)
    kept[order[:n_keep]] = True
    epochs = np.where(kept, curves.epochs_done, np.minimum(k, curves.epochs_done))
    return Decision(epochs, kept, extra_seconds)


def keep_sweep(curves: Curves, scores: np.ndarray, k: int, extra_seconds: float = 0.0,
               share: float = TOP_SHARE) -> list[dict]:
    """outcome() of keep_top for every n_keep from 1 to all runs: the policy's compute-recall curve."""
    return [{"n_keep": n, **outcome(curves, keep_top(curves, scores, k, n, extra_seconds), share)}
            for n in range(1, len(scores) + 1)]


def scores_from_predictions(curves: Curves, predictions: pl.DataFrame) -> np.ndarray:
    """Per run, the stored out-of-fold prediction (`y_pred`), NaN where a run has none."""
    by_run = dict(zip(predictions["run_id"], predictions["y_pred"]))
    return np.array([by_run.get(r, np.nan) for r in curves.run_ids], dtype=np.float64)


def timed_out_of_fold(task: str, predictor: str, X: np.ndarray, targets: pl.DataFrame) -> tuple[float, pl.DataFrame]:
    """Seconds to redo the out-of-fold fits and predictions (every fold), and what they gave.

    This is the prediction work a predictor policy is charged; the predictions come back so that a
    caller can check they are the stored ones (the work timed is the work that made them)."""
    start = time.perf_counter()
    made = cross_validated_predictions(task, predictor, X, targets)
    return time.perf_counter() - start, made


# Optuna pruners --------------------------------------------------------------------------------

PrunerFactory = Callable[[], optuna.pruners.BasePruner]


def optuna_decision(curves: Curves, make_pruner: PrunerFactory, study_name: str = "replay") -> Decision:
    """Replay the runs as Optuna trials in row order; a pruned run stops at the epoch it is pruned.

    Each epoch's test accuracy is `trial.report`-ed at step = epoch; a run that ends is told
    with its final accuracy, a diverged one (no finite value after its last epoch) as FAIL, so it
    never serves as a pruner's reference."""
    epochs = curves.epochs_done.copy()
    kept = np.ones(len(curves.run_ids), dtype=bool)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per replayed study is not news either
    try:
        _replay_trials(curves, make_pruner, study_name, epochs, kept)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return Decision(epochs, kept)


def _replay_trials(curves: Curves, make_pruner: PrunerFactory, study_name: str, epochs: np.ndarray,
                   kept: np.ndarray) -> None:
    """optuna_decision's replay; writes each pruned run's epoch and kept flag into `epochs`, `kept`."""
    with warnings.catch_warnings():  # not news per replay: WilcoxonPruner is "experimental", and
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # a curve has few steps
        warnings.filterwarnings("ignore", message="Sample size too small for normal approximation")
        study = optuna.create_study(direction="maximize", pruner=make_pruner(), study_name=study_name,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        for i in range(len(curves.run_ids)):
            trial = study.ask()
            for epoch in range(1, curves.epochs_done[i] + 1):
                value = curves.acc[i, epoch - 1]
                if not np.isfinite(value):
                    break
                trial.report(float(value), epoch)
                if trial.should_prune():
                    epochs[i], kept[i] = epoch, False
                    break
            if not kept[i]:
                study.tell(trial, state=TrialState.PRUNED)
            elif curves.epochs_done[i] == curves.epochs and np.isfinite(curves.acc[i, -1]):
                study.tell(trial, float(curves.final[i]))
            else:
                study.tell(trial, state=TrialState.FAIL)


def pruner_points(curves: Curves, name: str, settings: list[tuple[str, PrunerFactory]],
                  share: float = TOP_SHARE) -> list[dict]:
    """outcome() of each of a pruner's settings (from `pruner_grid`), replayed in row order: its curve."""
    return [{"setting": label, **outcome(curves, optuna_decision(curves, make, name), share)} for label, make in settings]


def pruner_grid(epochs: int) -> dict[str, list[tuple[str, PrunerFactory]]]:
    """Per Optuna pruner, the settings replayed, from aggressive to lenient: each is one operating
    point of its curve."""
    p = optuna.pruners
    return {
        "MedianPruner": [(f"n_warmup_steps={w}", lambda w=w: p.MedianPruner(n_startup_trials=5, n_warmup_steps=w))
                         for w in range(epochs - 1)],
        "PercentilePruner": [(f"percentile={q}", lambda q=q: p.PercentilePruner(q, n_startup_trials=5))
                             for q in (10.0, 25.0, 50.0, 75.0, 90.0)],
        "SuccessiveHalvingPruner": [(f"min_resource={r},reduction_factor={f}",
                                     lambda r=r, f=f: p.SuccessiveHalvingPruner(min_resource=r, reduction_factor=f))
                                    for r in (1, 2, 4) if r < epochs for f in (4, 3, 2)],
        "HyperbandPruner": [(f"min_resource={r},reduction_factor={f}",
                             lambda r=r, f=f: p.HyperbandPruner(min_resource=r, max_resource=epochs, reduction_factor=f))
                            for r in (1, 2) for f in (4, 3, 2)],
        "WilcoxonPruner": [(f"p_threshold={t},n_startup_steps={n}",
                            lambda t=t, n=n: p.WilcoxonPruner(p_threshold=t, n_startup_steps=n))
                           for n in (2, 4) if n < epochs for t in (0.5, 0.2, 0.1, 0.05, 0.01)],
    }


# Reading the curves ----------------------------------------------------------------------------

def cheapest_at_recall(points: list[dict], target: float = TARGET_RECALL) -> dict | None:
    """The operating point of least compute whose recall of the top runs reaches target (None if none does)."""
    reaching = [pt for pt in points if pt["recall_top"] >= target - 1e-12]
    return min(reaching, key=lambda pt: pt["fraction"]) if reaching else None


def best_within(points: list[dict], budget: float) -> dict | None:
    """At matched compute: the operating point of best recall of the top runs (then least compute)
    among those costing at most `budget` of train-all; None if none is that cheap."""
    within = [pt for pt in points if pt["fraction"] <= budget + 1e-12]
    return max(within, key=lambda pt: (pt["recall_top"], -pt["fraction"])) if within else None


def pareto_front(points: list[dict]) -> list[dict]:
    """Points no other point beats on both compute (lower) and recall (higher), by compute."""
    front, best = [], -1.0
    for pt in sorted(points, key=lambda pt: (pt["fraction"], -pt["recall_top"])):
        if pt["recall_top"] > best:
            front.append(pt)
            best = pt["recall_top"]
    return front
