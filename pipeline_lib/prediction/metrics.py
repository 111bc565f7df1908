"""Metrics per test fold, and their mean and spread over folds (scikit-learn, scipy.stats).

A metric that is undefined on a fold (R2 or AUC with one class or value in the fold's truth) is
left out of that fold's mean. A ranking metric whose prediction is constant on a fold scores 0:
a constant prediction orders nothing (scipy would say NaN, which would flatter it).
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score, roc_auc_score

METRICS = {"regression": ("r2", "mae", "kendall_tau", "spearman_rho"), "classification": ("accuracy", "roc_auc")}


def _rank_metric(fn, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(np.unique(y_true)) < 2:
        return math.nan
    if len(np.unique(y_pred)) < 2:
        return 0.0
    return float(fn(y_true, y_pred).statistic)


def fold_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, score: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of the task on one fold's test predictions."""
    if task == "regression":
        return {
            "r2": float(r2_score(y_true, y_pred)) if len(np.unique(y_true)) > 1 else math.nan,
            "mae": float(mean_absolute_error(y_true, y_pred)),
            "kendall_tau": _rank_metric(kendalltau, y_true, y_pred),
            "spearman_rho": _rank_metric(spearmanr, y_true, y_pred),
        }
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc": float(roc_auc_score(y_true, score)) if len(np.unique(y_true)) > 1 else math.nan,
    }


def summarise(task: str, predictions: pl.DataFrame) -> pl.DataFrame:
    """Rows (metric, mean, std, n, folds) from predictions (fold, y_true, y_pred, score).

    std is the population standard deviation over folds (NULL for a single fold)."""
    per_fold = []
    for (fold,), rows in predictions.group_by("fold", maintain_order=True):
        values = fold_metrics(task, rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(),
                              rows["score"].to_numpy() if "score" in rows.columns else None)
        per_fold += [{"fold": fold, "metric": m, "value": v, "n": rows.height} for m, v in values.items()]
    frame = pl.DataFrame(per_fold, schema={"fold": pl.Int64, "metric": pl.Utf8, "value": pl.Float64, "n": pl.Int64})
    defined = frame.filter(pl.col("value").is_not_nan())
    out = (defined.group_by("metric")
           .agg(pl.col("value").mean().alias("mean"),
                pl.when(pl.len() > 1).then(pl.col("value").std(ddof=0)).alias("std"),
                pl.col("n").sum().alias("n"), pl.len().alias("folds")))
    order = pl.DataFrame({"metric": list(METRICS[task])})
    return order.join(out, on="metric", how="inner", maintain_order="left")


UNIT = ("task", "predictor", "feature_set", "k", "split")
EVALUATION_SCHEMA = {"task": pl.Utf8, "predictor": pl.Utf8, "feature_set": pl.Utf8, "k": pl.Int64, "split": pl.Utf8,
                     "metric": pl.Utf8, "mean": pl.Float64, "std": pl.Float64, "n": pl.Int64, "folds": pl.Int64}


def evaluation_table(predictions: pl.DataFrame) -> pl.DataFrame:
    """Evaluation rows (EVALUATION_SCHEMA) for every unit (task, predictor, feature_set, k, split) of
    the predictions: mean and std over folds; for a split with several folds also `<split>_pooled`,
    the metrics of all its out-of-fold predictions taken together (one number, std NULL)."""
    frames = []
    for unit, rows in predictions.group_by(*UNIT, maintain_order=True):
        keys = dict(zip(UNIT, unit))
        frames.append(summarise(keys["task"], rows).with_columns(**{c: pl.lit(v) for c, v in keys.items()}))
        if rows["fold"].n_unique() > 1:
            pooled = summarise(keys["task"], rows.with_columns(pl.lit(0).alias("fold")))
            keys["split"] += "_pooled"
            frames.append(pooled.with_columns(**{c: pl.lit(v) for c, v in keys.items()},
                                              folds=pl.lit(rows["fold"].n_unique())))
    if not frames:
        return pl.DataFrame(schema=EVALUATION_SCHEMA)
    return pl.concat([f.select(EVALUATION_SCHEMA.keys()).cast(EVALUATION_SCHEMA) for f in frames])
