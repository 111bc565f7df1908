"""Distribution statistics of node properties per snapshot and scope (the `graph_summaries` table).

Scopes: 'graph' (all nodes), 'depth:<b>' (relative depth in bin b of DEPTH_BINS equal bins,
b = min(floor(relative_depth * 4), 3); 0 = input side, the output layer falls in bin 3),
'layer:<i>' (layer index i, the longest-path distance from the input).

Statistics: mean, std (population, ddof=0, so one-node layers give 0), min, max, q10..q90
(linear interpolation, as numpy's default), entropy = Shannon entropy of the values normalised to
sum 1, divided by ln(count) so that 1 means perfectly even whatever the node count (NULL when the
scope has one node or its values sum to 0). Missing values (a property that was skipped) give no rows.
"""
from __future__ import annotations

import polars as pl

from .properties import PROPERTIES

DEPTH_BINS = 4
STATISTICS = ("mean", "std", "min", "max", "q10", "q25", "q50", "q75", "q90", "entropy")
QUANTILES = {"q10": 0.1, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q90": 0.9}


def depth_bin(relative_depth: pl.Expr) -> pl.Expr:
    return (relative_depth * DEPTH_BINS).floor().cast(pl.Int64).clip(0, DEPTH_BINS - 1)


def _normalised_entropy(value: pl.Expr) -> pl.Expr:
    share = value / value.sum()
    shannon = -pl.when(share > 0).then(share * share.log()).otherwise(0.0).sum()
    count = value.count()
    return pl.when((count > 1) & (value.sum() > 0)).then(shannon / count.cast(pl.Float64).log()).otherwise(None)


def summarise(nodes: pl.DataFrame, keys: tuple[str, ...] = ("run_id", "epoch")) -> pl.DataFrame:
    """Long table (keys..., scope, property, statistic, value) from a node table with PROPERTIES columns."""
    properties = [p for p in PROPERTIES if p in nodes.columns]
    long = (nodes.unpivot(index=[*keys, "layer", "relative_depth"], on=properties, variable_name="property")
            .drop_nulls("value").filter(pl.col("value").is_not_nan()))
    scoped = pl.concat([
        long.with_columns(scope=pl.lit("graph")),
        long.with_columns(scope=pl.format("depth:{}", depth_bin(pl.col("relative_depth")))),
        long.with_columns(scope=pl.format("layer:{}", pl.col("layer"))),
    ])
    value = pl.col("value")
    stats = scoped.group_by([*keys, "scope", "property"]).agg(
        mean=value.mean(), std=value.std(ddof=0), min=value.min(), max=value.max(),
        **{name: value.quantile(q, interpolation="linear") for name, q in QUANTILES.items()},
        entropy=_normalised_entropy(value),
    )
    return (stats.unpivot(index=[*keys, "scope", "property"], on=list(STATISTICS), variable_name="statistic")
            .with_columns(pl.col("value").cast(pl.Float64)))
