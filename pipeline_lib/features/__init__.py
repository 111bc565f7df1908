"""Feature vectors from the first k epochs of every run (Polars; no Prefect).

Base feature sets, each computed from epochs 0..k only:
- `graph`: temporal summary of the rolled graph's property statistics (graph and depth scopes)
- `early_acc`: test accuracy at epoch k (the early-stopping proxy)
- `learning_curve`: train/test loss and accuracy at epochs 0..k, changes and slopes
- `weight_stats`: moments and quantiles of the weights at epoch k per relative-depth bin
- `hparams`: the configuration alone
Every set observing training carries `diverged_by_k`. Combinations (FEATURE_SETS) are unions of
base sets, assembled when evaluating; only base sets are stored.
"""
from __future__ import annotations

import polars as pl

from .curves import early_acc_features, learning_curve_features
from .graph import graph_features
from .hparams import hparams_features
from .temporal import FEATURE_SCHEMA, temporal_summary
from .weights import weight_stats_features

BASE_SETS = ("graph", "early_acc", "learning_curve", "weight_stats", "hparams")
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "early_acc": ("early_acc",),
    "learning_curve": ("learning_curve",),
    "weight_stats": ("weight_stats",),
    "hparams": ("hparams",),
    "graph": ("graph",),
    "graph+learning_curve": ("graph", "learning_curve"),
}
BASELINES = ("early_acc", "learning_curve", "weight_stats", "hparams")


def base_set_features(feature_set: str, k: int, runs: pl.DataFrame, epoch_metrics: pl.DataFrame | None = None,
                      graph_summaries: pl.DataFrame | None = None,
                      snapshot_paths: pl.DataFrame | None = None) -> pl.DataFrame:
    """Feature rows (run_id, k, feature_set, feature, value) of one base set for the given runs."""
    if feature_set == "graph":
        rows = graph_features(runs, graph_summaries, k)
    elif feature_set == "early_acc":
        rows = early_acc_features(runs, epoch_metrics, k)
    elif feature_set == "learning_curve":
        rows = learning_curve_features(runs, epoch_metrics, k)
    elif feature_set == "weight_stats":
        rows = weight_stats_features(runs, snapshot_paths, k)
    elif feature_set == "hparams":
        rows = hparams_features(runs)
    else:
        raise ValueError(f"unknown base feature set {feature_set!r}; known: {BASE_SETS}")
    return rows.select("run_id", pl.lit(k, pl.Int64).alias("k"), pl.lit(feature_set).alias("feature_set"),
                       "feature", "value")


__all__ = ["BASE_SETS", "BASELINES", "FEATURE_SCHEMA", "FEATURE_SETS", "base_set_features", "temporal_summary"]
