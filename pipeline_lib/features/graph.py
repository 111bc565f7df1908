"""Graph features: the temporal summary of the rolled graph's property statistics.

Only whole-graph and relative-depth scopes are used ('graph', 'depth:<b>'): their columns are the
same for every width and architecture, which width transfer needs. Per-layer scopes are not.
"""
from __future__ import annotations

import polars as pl

from .curves import diverged_flag
from .temporal import temporal_summary

INVARIANT_SCOPE = pl.col("scope").eq("graph") | pl.col("scope").str.starts_with("depth:")


def graph_features(runs: pl.DataFrame, graph_summaries: pl.DataFrame, k: int) -> pl.DataFrame:
    """graph_summaries rows (run_id, epoch, scope, property, statistic, value) -> feature rows."""
    series = (graph_summaries.filter(INVARIANT_SCOPE & pl.col("run_id").is_in(runs["run_id"].implode()))
              .select("run_id", "epoch", pl.format("{}/{}/{}", "scope", "property", "statistic").alias("series"),
                      "value"))
    return pl.concat([temporal_summary(series, k), diverged_flag(runs, k)])
