"""Weight statistics at epoch k, after Unterthiner et al. 2020 ("Predicting Neural Network
Accuracy from Weights"): moments and quantiles of the kernels and biases, per bin of their
place in state_dict order.

A kernel is a `*.weight` tensor of rank >= 2 (convolution or linear kernel); its bias is the
`*.bias` beside it. BatchNorm parameters and buffers are not kernels here. Kernel i of L in
state_dict order falls in bin floor(ORDER_BINS * (i + 0.5) / L), so the columns are the same for
every width and architecture. The bin is named `order:<b>`, not `depth:<b>`: state_dict order is
not the graph's relative depth (graph scopes `depth:<b>`, pipeline_lib/graphs/summaries.py); in a
residual network a shortcut's kernel comes after the block it skips.
"""
from __future__ import annotations

from typing import Callable

import polars as pl

from ..files import DamagedFile, read_checked
from .curves import diverged_flag
from .temporal import FEATURE_SCHEMA, finite_or_null

ORDER_BINS = 4
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def _binned_tensors(path: str) -> pl.DataFrame:
    """The kernel and bias tensors of one snapshot with their order bin and kind."""
    table = read_checked(path, lambda p: pl.read_parquet(p, columns=["name", "shape", "values"]))
    kernels = (table.filter(pl.col("name").str.ends_with(".weight") & (pl.col("shape").list.len() >= 2))
               .with_row_index("position")
               .with_columns(((pl.col("position") + 0.5) * ORDER_BINS / pl.len()).floor().cast(pl.Int64).alias("bin"),
                             pl.col("name").str.strip_suffix(".weight").alias("prefix")))
    biases = (table.join(kernels.select((pl.col("prefix") + ".bias").alias("name"), "bin"), on="name")
              .with_columns(pl.lit("bias").alias("kind")))
    return pl.concat([kernels.select("bin", pl.lit("weight").alias("kind"), "values"),
                      biases.select("bin", "kind", "values")])


def _statistics(values: pl.Expr) -> list[pl.Expr]:
    stats = [values.mean().alias("mean"), values.std().alias("std"), values.skew().alias("skew"),
             values.kurtosis().alias("kurtosis"), values.min().alias("min"), values.max().alias("max"),
             values.abs().mean().alias("mean_abs")]
    stats += [values.quantile(q, interpolation="linear").alias(f"q{round(q * 100)}") for q in QUANTILES]
    return stats


def snapshot_weight_stats(path: str) -> pl.DataFrame:
    """Feature rows (feature, value) of one snapshot: `order:<b>/<weight|bias>/<statistic>`."""
    stats = (_binned_tensors(path).explode("values").group_by("bin", "kind")
             .agg(_statistics(pl.col("values").cast(pl.Float64))))
    return (stats.unpivot(index=["bin", "kind"], variable_name="statistic")
            .select(pl.format("order:{}/{}/{}", "bin", "kind", "statistic").alias("feature"), "value")
            .with_columns(finite_or_null()))


# what to do with a run whose snapshot cannot be read: (run_id, DamagedFile or FileNotFoundError)
Unreadable = Callable[[str, DamagedFile | FileNotFoundError], None]


def weight_stats_features(runs: pl.DataFrame, snapshot_paths: pl.DataFrame, k: int,
                          unreadable: Unreadable | None = None) -> pl.DataFrame:
    """Weight statistics of every run's epoch-k snapshot (snapshot_paths: run_id, epoch, path).

    A run that diverged before k has no epoch-k snapshot: its statistics are absent (NULL) and
    its diverged flag says why. A snapshot that is damaged or missing raises; with `unreadable`
    its run is handed to it instead and gets no rows at all, so that one run's unit is not computed
    rather than every run's.
    """
    at_k = snapshot_paths.filter((pl.col("epoch") == k) & pl.col("run_id").is_in(runs["run_id"].implode()))
    frames, left_out = [], []
    for run_id, path in at_k.select("run_id", "path").iter_rows():
        try:
            frames.append(snapshot_weight_stats(path).with_columns(pl.lit(run_id).alias("run_id")))
        except (DamagedFile, FileNotFoundError) as e:
            if unreadable is None:
                raise
            unreadable(run_id, e)
            left_out.append(run_id)
    stats = pl.concat(frames).select(FEATURE_SCHEMA.keys()) if frames else pl.DataFrame(schema=FEATURE_SCHEMA)
    return pl.concat([stats.cast(FEATURE_SCHEMA), diverged_flag(runs.filter(~pl.col("run_id").is_in(left_out)), k)])
