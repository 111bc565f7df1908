"""Feature vectors from the first k epochs of every run (Polars; no Prefect).

Base feature sets, each computed from epochs 0..k only:
- `graph`: temporal summary of the rolled graph's property statistics (graph and depth scopes)
- `graph_compact`: a few tens of width-invariant graph columns (per depth bin, and the Perron value)
- `early_acc`: test accuracy at epoch k (the early-stopping proxy)
- `tse`, `tse_ema`: sum of the training losses of epochs 1..k, plain and exponentially weighted
- `learning_curve`: train/test loss and accuracy at epochs 0..k, changes and slopes
- `weight_stats`: moments and quantiles of the weights at epoch k per bin of state_dict order
- `hparams`: the configuration alone
Every set observing training carries `diverged_by_k`. Combinations (FEATURE_SETS) are unions of
base sets (`sets.py`), assembled when evaluating; only base sets are stored. `all` joins every base
set and `all_but_graph` every one but the graph sets: their difference is what graph features add.
"""
from __future__ import annotations

from typing import Callable

import polars as pl

from .curves import TSE_EMA_DECAY, early_acc_features, learning_curve_features, tse_features
from .graph import compact_graph_features, graph_features
from .hparams import hparams_features
from .sets import BASE_SETS, BASELINES, FEATURE_SETS, GRAPH_BASE_SETS, GRAPH_SETS
from .temporal import FEATURE_SCHEMA, temporal_summary
from .weights import Unreadable, weight_stats_features

# Per base set: the function that computes it, the input it reads (None: the configuration alone) and
# its fixed arguments. The function's module is what the set's fingerprint covers (`fingerprints.FEATURES`).
COMPUTE: dict[str, tuple[Callable[..., pl.DataFrame], str | None, dict]] = {
    "graph": (graph_features, "graph_summaries", {}),
    "graph_compact": (compact_graph_features, "graph_summaries", {}),
    "early_acc": (early_acc_features, "epoch_metrics", {}),
    "tse": (tse_features, "epoch_metrics", {}),
    "tse_ema": (tse_features, "epoch_metrics", {"decay": TSE_EMA_DECAY}),
    "learning_curve": (learning_curve_features, "epoch_metrics", {}),
    "weight_stats": (weight_stats_features, "snapshot_paths", {}),
    "hparams": (hparams_features, None, {}),
}


def base_set_features(feature_set: str, k: int, runs: pl.DataFrame, epoch_metrics: pl.DataFrame | None = None,
                      graph_summaries: pl.DataFrame | None = None,
                      snapshot_paths: pl.DataFrame | None = None, unreadable: Unreadable | None = None) -> pl.DataFrame:
    """Feature rows (run_id, k, feature_set, feature, value) of one base set for the given runs; a run
    whose snapshot cannot be read raises, or with `unreadable` goes to it and gets no rows
    (`weight_stats_features`)."""
    if feature_set not in COMPUTE:
        raise ValueError(f"unknown base feature set {feature_set!r}; known: {BASE_SETS}")
    function, reads, fixed = COMPUTE[feature_set]
    inputs = {"epoch_metrics": epoch_metrics, "graph_summaries": graph_summaries, "snapshot_paths": snapshot_paths}
    if reads == "snapshot_paths":
        fixed = {**fixed, "unreadable": unreadable}
    rows = function(runs) if reads is None else function(runs, inputs[reads], k, **fixed)
    return rows.select("run_id", pl.lit(k, pl.Int64).alias("k"), pl.lit(feature_set).alias("feature_set"),
                       "feature", "value")


__all__ = ["BASE_SETS", "BASELINES", "COMPUTE", "GRAPH_BASE_SETS", "GRAPH_SETS", "FEATURE_SCHEMA", "FEATURE_SETS",
           "base_set_features", "temporal_summary"]
