"""Graph features: the temporal summary of the rolled graph's property statistics.

Only whole-graph and relative-depth scopes are used ('graph', 'depth:<b>'): their columns are the
same for every width and architecture, which width transfer needs. Per-layer scopes are not.

`graph` keeps every (scope, property, statistic) series: thousands of columns, cut to 64 by the
predictors' univariate filter. `graph_compact` is a few tens of columns chosen in advance (never by
looking at outcomes) to fit studies of tens of configurations, each width-invariant:
- per relative-depth bin, the mean and spread of eigenvector centrality (scaled to mean square 1
  per graph) and the coefficient of variation of strength: value at epoch 0, at k, change over
  the last epoch;
- per bin the mean strength, and the Perron value of the graph (both in weight units, which grow
  with fan-in): only as log growth, over the last epoch (@d<k>) and per epoch (@slope).
"""
from __future__ import annotations

import polars as pl

from .curves import diverged_flag
from .temporal import temporal_summary

INVARIANT_SCOPE = pl.col("scope").eq("graph") | pl.col("scope").str.starts_with("depth:")
PERRON = ("graph", "perron_value", "value")  # (scope, property, statistic) of the Perron value's rows


def graph_features(runs: pl.DataFrame, graph_summaries: pl.DataFrame, k: int) -> pl.DataFrame:
    """graph_summaries rows (run_id, epoch, scope, property, statistic, value) -> feature rows."""
    series = (graph_summaries.filter(INVARIANT_SCOPE & pl.col("run_id").is_in(runs["run_id"].implode()))
              .select("run_id", "epoch", pl.format("{}/{}/{}", "scope", "property", "statistic").alias("series"),
                      "value"))
    return pl.concat([temporal_summary(series, k), diverged_flag(runs, k)])


def compact_graph_features(runs: pl.DataFrame, graph_summaries: pl.DataFrame, k: int) -> pl.DataFrame:
    """The compact, width-invariant graph set (see the module docstring) as feature rows."""
    s = graph_summaries.filter(pl.col("run_id").is_in(runs["run_id"].implode()) & (pl.col("epoch") <= k))
    statistic = lambda name: pl.col("value").filter(pl.col("statistic") == name).first().alias(name)  # noqa: E731
    stats = (s.filter(pl.col("scope").str.starts_with("depth:") & pl.col("property").is_in(["eigenvector", "strength"]))
             .group_by("run_id", "epoch", "scope", "property").agg(statistic("mean"), statistic("std")))
    eigen, strength = stats.filter(pl.col("property") == "eigenvector"), stats.filter(pl.col("property") == "strength")
    series = lambda frame, suffix, value: frame.select(  # noqa: E731
        "run_id", "epoch", (pl.col("scope") + suffix).alias("series"), value.cast(pl.Float64).alias("value"))
    perron = s.filter((pl.col("scope") == PERRON[0]) & (pl.col("property") == PERRON[1]) & (pl.col("statistic") == PERRON[2]))
    levels = pl.concat([series(eigen, "/eigenvector/mean", pl.col("mean")), series(eigen, "/eigenvector/std", pl.col("std")),
                        series(strength, "/strength/cv", pl.col("std") / pl.col("mean"))])
    scales = pl.concat([series(strength, "/strength/log_mean", pl.col("mean").log()),
                        series(perron, "/perron_value/log", pl.col("value").log())])
    return pl.concat([
        temporal_summary(levels, k).filter(pl.col("feature").str.contains(f"@(e0|e{k}|d{k})$")),
        temporal_summary(scales, k).filter(pl.col("feature").str.contains(f"@(d{k}|slope)$")),
        diverged_flag(runs, k)])
