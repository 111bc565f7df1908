"""Temporal summary of per-epoch series over epochs 0..k: values, consecutive differences, slope.

The one place where "what happened during the first k epochs" becomes feature columns; the graph
and learning-curve feature sets both use it. Only rows with epoch <= k are read, so nothing
observed after epoch k can reach a feature.
"""
from __future__ import annotations

import polars as pl

FEATURE_SCHEMA = {"run_id": pl.Utf8, "feature": pl.Utf8, "value": pl.Float64}


def finite_or_null(column: str = "value") -> pl.Expr:
    """NaN and +-inf become null: a diverging run's extreme values are missing, not numbers."""
    value = pl.col(column).cast(pl.Float64)
    return pl.when(value.is_finite()).then(value).otherwise(None).alias(column)


def temporal_summary(series: pl.DataFrame, k: int) -> pl.DataFrame:
    """Feature rows (run_id, feature, value) from series rows (run_id, series, epoch, value).

    For every series: `<series>@e<j>` the value at epoch j (0 <= j <= k), `<series>@d<j>` the change
    from epoch j-1 to j, `<series>@slope` the least-squares slope over the observed epochs, and
    `<series>@logratio` = log(v_k / v_0) when both are positive (a scale-free change since
    initialisation, comparable across widths).
    """
    s = (series.lazy().filter(pl.col("epoch") <= k).with_columns(finite_or_null())
         .sort("run_id", "series", "epoch"))
    values = s.select("run_id", pl.format("{}@e{}", "series", "epoch").alias("feature"), "value")
    diffs = (s.with_columns(pl.col("value").diff().over("run_id", "series").alias("change"),
                            pl.col("epoch").shift().over("run_id", "series").alias("previous"))
             .filter(pl.col("previous") == pl.col("epoch") - 1)
             .select("run_id", pl.format("{}@d{}", "series", "epoch").alias("feature"), pl.col("change").alias("value")))
    observed = s.drop_nulls("value")
    e_centred = pl.col("epoch") - pl.col("epoch").mean()
    slopes = (observed.group_by("run_id", "series")
              .agg((e_centred * (pl.col("value") - pl.col("value").mean())).sum().alias("num"),
                   (e_centred ** 2).sum().alias("den"))
              .select("run_id", (pl.col("series") + "@slope").alias("feature"),
                      pl.when(pl.col("den") > 0).then(pl.col("num") / pl.col("den")).otherwise(None).alias("value")))
    ends = (s.filter(pl.col("epoch").is_in([0, k]))
            .group_by("run_id", "series")
            .agg(pl.col("value").filter(pl.col("epoch") == 0).first().alias("v0"),
                 pl.col("value").filter(pl.col("epoch") == k).first().alias("vk"))
            .select("run_id", (pl.col("series") + "@logratio").alias("feature"),
                    pl.when((pl.col("v0") > 0) & (pl.col("vk") > 0)).then((pl.col("vk") / pl.col("v0")).log())
                    .otherwise(None).alias("value")))
    out = pl.concat([values, diffs, slopes, ends]).with_columns(finite_or_null())
    return out.collect().cast(FEATURE_SCHEMA)
