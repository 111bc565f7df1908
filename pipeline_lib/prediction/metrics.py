"""Pooled out-of-fold metrics with configuration-bootstrap intervals, and paired comparisons.

Every metric is computed on all the predictions of a unit (task, predictor, feature set, k,
split) taken together: per-fold rank metrics rank only the one or two configurations a grouped
fold holds, and per-fold R2 explodes on a fold with little outcome spread.

Intervals: 95% percentile intervals of `scipy.stats.bootstrap` that resample CONFIGURATIONS
(config_id), not runs: the seeds and widths of a configuration share its hyper-parameters, so
they are not independent evidence. A resample that draws a configuration twice counts its runs
twice, so every metric is written for frequency-weighted predictions (weights = how often a
run's configuration was drawn); with unit weights it is the ordinary metric (tested against
scipy and scikit-learn). Vectorised over resamples, one call scores a unit in milliseconds.
The seed is fixed, and a given number of configurations always gets the same resamples, so the
intervals of two feature sets and of their difference come from the same draws.

A rank metric whose prediction is constant scores 0 (it orders nothing); a metric undefined on
the truth (one class, one value) is NaN and left out of the fold mean.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
from scipy.stats import bootstrap

from ..vocabulary import Task

METRICS = {Task.REGRESSION: ("kendall_tau", "spearman_rho", "r2", "mae"),
           Task.CLASSIFICATION: ("balanced_accuracy", "accuracy", "roc_auc")}
LOWER_IS_BETTER = frozenset({"mae"})
N_RESAMPLES = 1000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
UNIT = ("task", "predictor", "feature_set", "k", "split")
EVALUATION_SCHEMA = {"task": pl.Utf8, "predictor": pl.Utf8, "feature_set": pl.Utf8, "k": pl.Int64, "split": pl.Utf8,
                     "metric": pl.Utf8, "value": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                     "mean": pl.Float64, "std": pl.Float64, "n": pl.Int64, "folds": pl.Int64, "configs": pl.Int64}
COMPARISON_SCHEMA = {"task": pl.Utf8, "predictor": pl.Utf8, "k": pl.Int64, "split": pl.Utf8, "metric": pl.Utf8,
                     "feature_set": pl.Utf8, "baseline": pl.Utf8, "difference": pl.Float64, "low": pl.Float64,
                     "high": pl.Float64, "verdict": pl.Utf8, "configs": pl.Int64}


def _quadratic(W: np.ndarray, M: np.ndarray) -> np.ndarray:
    """w^T M w for every row w of W."""
    return ((W @ M) * W).sum(axis=1)


def _tau(W: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of the multiset with W[b, i] copies of (y_i, p_i)."""
    sy, sp = np.sign(y[:, None] - y[None, :]), np.sign(p[:, None] - p[None, :])
    n = W.sum(axis=1)
    pairs = n * (n - 1) / 2
    untied = lambda s: pairs - (_quadratic(W, (s == 0).astype(float)) - n) / 2  # noqa: E731
    ny, npred = untied(sy), untied(sp)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = _quadratic(W, sy * sp) / 2 / np.sqrt(ny * npred)
    return np.where(ny == 0, np.nan, np.where(npred == 0, 0.0, tau))


def _weighted_corr(W: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of per-resample rows a, b under frequency weights W: NaN when a is
    constant, 0 when b is."""
    n = W.sum(axis=1, keepdims=True)
    da, db = a - (W * a).sum(1, keepdims=True) / n, b - (W * b).sum(1, keepdims=True) / n
    va, vb = (W * da * da).sum(1), (W * db * db).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (W * da * db).sum(1) / np.sqrt(va * vb)
    constant = lambda v, x: v <= 1e-12 * (W * x * x).sum(1)  # noqa: E731
    return np.where(constant(va, a), np.nan, np.where(constant(vb, b), 0.0, r))


def _midranks(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based, ties averaged) of every row's value within each weighted multiset."""
    below, equal = (x[None, :] < x[:, None]).astype(float), (x[None, :] == x[:, None]).astype(float)
    return W @ below.T + (W @ equal.T + 1) / 2


def weighted_metrics(task: str, W: np.ndarray, y: np.ndarray, pred: np.ndarray,
                     score: np.ndarray | None = None) -> np.ndarray:
    """(metrics of METRICS[task], resamples): every metric for each row of frequency weights W."""
    n = W.sum(axis=1)
    if task == Task.REGRESSION:
        total = (W * (y[None, :] - (W @ y / n)[:, None]) ** 2).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(total <= 1e-12 * (W @ y ** 2), np.nan, 1 - W @ (y - pred) ** 2 / total)
        return np.stack([_tau(W, y, pred), _weighted_corr(W, _midranks(W, y), _midranks(W, pred)), r2,
                         W @ np.abs(y - pred) / n])
    positive = y == 1
    hits = (pred == y).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.stack([W[:, positive] @ hits[positive] / W[:, positive].sum(1),
                            W[:, ~positive] @ hits[~positive] / W[:, ~positive].sum(1)])
        balanced = np.nansum(recalls, axis=0) / np.isfinite(recalls).sum(axis=0)  # classes present, as scikit-learn
        above = (score[positive][:, None] > score[~positive][None, :]) + 0.5 * (score[positive][:, None] == score[~positive][None, :])
        auc = ((W[:, positive] @ above) * W[:, ~positive]).sum(1) / (W[:, positive].sum(1) * W[:, ~positive].sum(1))
    return np.stack([balanced, W @ hits / n, auc])


def _config_weights(groups: np.ndarray) -> tuple[np.ndarray, int]:
    codes = np.unique(groups, return_inverse=True)[1].ravel()
    return codes, int(codes.max()) + 1


def config_bootstrap(groups: np.ndarray, statistic, n_resamples: int = N_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the 95% percentile interval of statistic(W) -> (m, resamples), resampling
    the configurations in `groups` (one label per row); W holds each row's draw count."""
    codes, n_configs = _config_weights(groups)

    def on_configs(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        single = drawn.ndim == 1  # scipy's call on the original sample
        drawn = np.atleast_2d(drawn)
        offsets = n_configs * np.arange(len(drawn))[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=drawn.size).reshape(drawn.shape)
        values = statistic(counts[:, codes].astype(float))
        return values[:, 0] if single else values

    with np.errstate(invalid="ignore"):
        ci = bootstrap((np.arange(n_configs),), on_configs, vectorized=True, n_resamples=n_resamples,
                       confidence_level=CONFIDENCE, method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
    return np.asarray(ci.low), np.asarray(ci.high)


def _columns(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(), rows["score"].fill_null(np.nan).to_numpy()


def metric_values(task: str, rows: pl.DataFrame) -> dict[str, float]:
    """The pooled metrics of prediction rows (y_true, y_pred, score)."""
    values = weighted_metrics(task, np.ones((1, rows.height)), *_columns(rows))[:, 0]
    return dict(zip(METRICS[task], values.tolist()))


def _unit_rows(task: str, rows: pl.DataFrame) -> list[dict]:
    y, pred, score = _columns(rows)
    folds = rows["fold"].to_numpy()
    fold_ids = np.unique(folds)
    point = weighted_metrics(task, np.ones((1, len(y))), y, pred, score)[:, 0]
    per_fold = weighted_metrics(task, (folds[None, :] == fold_ids[:, None]).astype(float), y, pred, score)
    configs = rows["config_id"].n_unique()
    if configs > 1:
        low, high = config_bootstrap(rows["config_id"].to_numpy(), lambda W: weighted_metrics(task, W, y, pred, score))
    else:
        low = high = np.full(len(point), np.nan)
    out = []
    for i, metric in enumerate(METRICS[task]):
        defined = per_fold[i][np.isfinite(per_fold[i])]
        out.append({"metric": metric, "value": point[i], "low": low[i], "high": high[i],
                    "mean": defined.mean() if len(defined) else None,
                    "std": defined.std() if len(defined) > 1 else None,
                    "n": len(y), "folds": len(defined), "configs": configs})
    return out


def _nan_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def evaluation_table(predictions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Evaluation rows (EVALUATION_SCHEMA) of every unit of the predictions: pooled value with its
    configuration-bootstrap interval, and the mean and spread of the per-fold values beside it.
    targets: run_id, config_id."""
    joined = predictions.join(targets.select("run_id", "config_id"), on="run_id")
    rows = []
    for unit, unit_rows in joined.group_by(*UNIT, maintain_order=True):
        keys = dict(zip(UNIT, unit))
        rows += [{**keys, **r} for r in _unit_rows(keys["task"], unit_rows)]
    return _nan_to_null(pl.DataFrame(rows, schema=EVALUATION_SCHEMA))


def verdict(metric: str, low: float | None, high: float | None) -> str:
    """'beats' / 'is beaten by' only when the interval of the difference excludes 0."""
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return "no detectable difference"
    better, worse = (high < 0, low > 0) if metric in LOWER_IS_BETTER else (low > 0, high < 0)
    return "beats" if better else "is beaten by" if worse else "no detectable difference"


def comparison_table(predictions: pl.DataFrame, targets: pl.DataFrame, exclude: tuple[str, ...] = ()) -> pl.DataFrame:
    """Paired comparisons (COMPARISON_SCHEMA) of every ordered pair of feature sets answering the
    same question (task, predictor, k, split), on the runs both predicted: the difference of each
    metric (feature_set minus baseline) with the interval of the same configuration resamples."""
    joined = predictions.filter(~pl.col("feature_set").is_in(list(exclude))).join(
        targets.select("run_id", "config_id"), on="run_id")
    rows = []
    for (task, predictor, k, split), group in joined.group_by("task", "predictor", "k", "split", maintain_order=True):
        sets = sorted(group["feature_set"].unique())
        common = group.group_by("run_id").agg(pl.len()).filter(pl.col("len") == len(sets))["run_id"]
        aligned = group.filter(pl.col("run_id").is_in(common.implode())).sort("feature_set", "run_id")
        if len(sets) < 2 or aligned["config_id"].n_unique() < 2:
            continue
        per_set = [_columns(aligned.filter(pl.col("feature_set") == fs)) for fs in sets]
        pairs = list(itertools.permutations(range(len(sets)), 2))

        def differences(W, per_set=per_set, pairs=pairs, task=task):
            values = np.stack([weighted_metrics(task, W, *cols) for cols in per_set])
            return np.concatenate([values[a] - values[b] for a, b in pairs])

        groups = aligned.filter(pl.col("feature_set") == sets[0])["config_id"].to_numpy()
        point = differences(np.ones((1, len(groups))))[:, 0]
        low, high = config_bootstrap(groups, differences)
        metrics = METRICS[task]
        for p, (a, b) in enumerate(pairs):
            for m, metric in enumerate(metrics):
                i = p * len(metrics) + m
                rows.append({"task": task, "predictor": predictor, "k": k, "split": split, "metric": metric,
                             "feature_set": sets[a], "baseline": sets[b], "difference": point[i], "low": low[i],
                             "high": high[i], "verdict": verdict(metric, low[i], high[i]),
                             "configs": len(np.unique(groups))})
    return _nan_to_null(pl.DataFrame(rows, schema=COMPARISON_SCHEMA))


def top_kept(scores: np.ndarray, truth: np.ndarray, keep: float, top: int = 5) -> float:
    """The share of the true top `top` runs (by `truth`) that keeping the best ceil(keep x n) by `scores`
    keeps (ties in the scores to the earlier run; a non-finite score ranks last): what a keep rule at
    a rung loses, where global tau weighs every pair alike."""
    scores, truth = np.asarray(scores, float), np.asarray(truth, float)
    n = len(scores)
    kept = np.argsort(-np.nan_to_num(scores, nan=-np.inf, posinf=np.inf, neginf=-np.inf), kind="stable")
    kept = set(kept[:math.ceil(round(keep * n, 9))].tolist())
    best = np.argsort(-truth, kind="stable")[:min(top, n)]
    return float(np.mean([i in kept for i in best]))
