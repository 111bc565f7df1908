"""Baselines from the recorded learning curve: test accuracy at k, and the curve over epochs 0..k.

Training loss and accuracy of epochs >= 1 are, by default (`train_metrics: epoch`), the means over
that epoch's minibatches as trained (what TSE sums), not a pass after the epoch; with `exact` they
are an eval-mode pass on a fixed training subset. Epoch 0 is always that pass on the
initialisation; test metrics are always an eval-mode pass after the epoch.

Both carry the "diverged by epoch k" flag: a run whose loss or weights became non-finite at an
epoch <= k is known to be lost at k, and its later epochs are simply missing (NULL).
"""
from __future__ import annotations

import polars as pl

from .temporal import FEATURE_SCHEMA, finite_or_null, temporal_summary

CURVE_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


def diverged_flag(runs: pl.DataFrame, k: int) -> pl.DataFrame:
    """`diverged_by_k` = 1 when the run diverged at an epoch <= k (runs: run_id, diverged_epoch)."""
    flag = pl.col("diverged_epoch").is_not_null() & (pl.col("diverged_epoch") <= k)
    return runs.select("run_id", pl.lit("diverged_by_k").alias("feature"), flag.cast(pl.Float64).alias("value"))


def early_acc_features(runs: pl.DataFrame, epoch_metrics: pl.DataFrame, k: int) -> pl.DataFrame:
    """The early-stopping proxy: test accuracy at epoch k (NULL if the run diverged before)."""
    at_k = epoch_metrics.filter(pl.col("epoch") == k).select("run_id", "test_acc")
    acc = (runs.select("run_id").join(at_k, on="run_id", how="left")
           .select("run_id", pl.lit("test_acc@k").alias("feature"), pl.col("test_acc").alias("value"))
           .with_columns(finite_or_null()))
    return pl.concat([acc.cast(FEATURE_SCHEMA), diverged_flag(runs, k)])


def learning_curve_features(runs: pl.DataFrame, epoch_metrics: pl.DataFrame, k: int) -> pl.DataFrame:
    """Train/test loss and accuracy at epochs 0..k, their changes and slopes."""
    series = (epoch_metrics.filter(pl.col("run_id").is_in(runs["run_id"].implode()))
              .unpivot(index=["run_id", "epoch"], on=list(CURVE_METRICS), variable_name="series"))
    return pl.concat([temporal_summary(series, k), diverged_flag(runs, k)])
