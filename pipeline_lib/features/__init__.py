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
base sets, assembled when evaluating; only base sets are stored. `all` joins every base set and
`all_but_graph` every one but the graph sets: their difference is what graph features add.
"""
from __future__ import annotations

import polars as pl

from .curves import TSE_EMA_DECAY, early_acc_features, learning_curve_features, tse_features
from .graph import compact_graph_features, graph_features
from .hparams import hparams_features
from .temporal import FEATURE_SCHEMA, temporal_summary
from .weights import Unreadable, weight_stats_features

GRAPH_BASE_SETS = ("graph", "graph_compact")
BASELINES = ("early_acc", "tse", "tse_ema", "learning_curve", "weight_stats", "hparams")
BASE_SETS = (*GRAPH_BASE_SETS, *BASELINES)
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in BASELINES},
    "all_but_graph": BASELINES,
    "graph": ("graph",),
    "graph_compact": ("graph_compact",),
    "graph+learning_curve": ("graph", "learning_curve"),
    "all": BASE_SETS,
}
GRAPH_SETS = tuple(name for name, bases in FEATURE_SETS.items() if set(bases) & set(GRAPH_BASE_SETS))


def base_set_features(feature_set: str, k: int, runs: pl.DataFrame, epoch_metrics: pl.DataFrame | None = None,
                      graph_summaries: pl.DataFrame | None = None,
                      snapshot_paths: pl.DataFrame | None = None, unreadable: Unreadable | None = None) -> pl.DataFrame:
    """Feature rows (run_id, k, feature_set, feature, value) of one base set for the given runs; a run
    whose snapshot cannot be read raises, or with `unreadable` goes to it and gets no rows
    (`weight_stats_features`)."""
    if feature_set == "graph":
        rows = graph_features(runs, graph_summaries, k)
    elif feature_set == "graph_compact":
        rows = compact_graph_features(runs, graph_summaries, k)
    elif feature_set in ("tse", "tse_ema"):
        rows = tse_features(runs, epoch_metrics, k, TSE_EMA_DECAY if feature_set == "tse_ema" else None)
    elif feature_set == "early_acc":
        rows = early_acc_features(runs, epoch_metrics, k)
    elif feature_set == "learning_curve":
        rows = learning_curve_features(runs, epoch_metrics, k)
    elif feature_set == "weight_stats":
        rows = weight_stats_features(runs, snapshot_paths, k, unreadable)
    elif feature_set == "hparams":
        rows = hparams_features(runs)
    else:
        raise ValueError(f"unknown base feature set {feature_set!r}; known: {BASE_SETS}")
    return rows.select("run_id", pl.lit(k, pl.Int64).alias("k"), pl.lit(feature_set).alias("feature_set"),
                       "feature", "value")


__all__ = ["BASE_SETS", "BASELINES", "GRAPH_BASE_SETS", "GRAPH_SETS", "FEATURE_SCHEMA", "FEATURE_SETS", "base_set_features", "temporal_summary"]
