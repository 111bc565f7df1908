"""Baselines from the recorded learning curve: test accuracy at k, the curve over epochs 0..k, and
the training speed estimators TSE / TSE-EMA (Ru et al., "Speedy Performance Estimation for Neural
Architecture Search", NeurIPS 2021).

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


TSE_EMA_DECAY = 0.9  # Ru et al.'s gamma


def tse_features(runs: pl.DataFrame, epoch_metrics: pl.DataFrame, k: int, decay: float | None = None) -> pl.DataFrame:
    """TSE = sum of the training losses of epochs 1..k; with `decay` g, TSE-EMA = sum of g^(k-t) L_t
    (recent epochs weigh more). Ru et al. sum the minibatch losses seen during each epoch: that is the
    recorded training loss with `train_metrics: epoch` (the default); with `exact`, the loss of a pass
    after the epoch stands in. NULL when a loss of
    epochs 1..k is missing or not finite (the run diverged), with the diverged flag beside it."""
    weight = pl.lit(1.0) if decay is None else pl.lit(decay) ** (k - pl.col("epoch"))
    losses = epoch_metrics.filter(pl.col("epoch").is_between(1, k)).with_columns(finite_or_null("train_loss"))
    sums = losses.group_by("run_id").agg(
        pl.when(pl.col("train_loss").is_not_null().all() & (pl.len() == k))
        .then((weight * pl.col("train_loss")).sum()).alias("value"))
    name = "tse" if decay is None else "tse_ema"
    tse = runs.select("run_id").join(sums, on="run_id", how="left").select("run_id", pl.lit(name).alias("feature"), "value")
    return pl.concat([tse.cast(FEATURE_SCHEMA), diverged_flag(runs, k)])
