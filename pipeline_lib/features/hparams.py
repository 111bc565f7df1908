"""The configuration alone (no training observed): the weakest honest baseline."""
from __future__ import annotations

from typing import get_args

import polars as pl

from ..spec import Architecture, Optimizer, ScheduleKind
from .temporal import FEATURE_SCHEMA


def hparams_features(runs: pl.DataFrame) -> pl.DataFrame:
    """log10 lr, dropout, weight decay (raw and log10 of wd + 1e-6), log2 batch size, log2 width,
    depth, label noise, and one-hot optimizer, architecture and learning-rate schedule kind (over every
    value the spec allows, so the columns do not depend on which values a study happened to draw)."""
    columns = [
        pl.col("lr").log10().alias("log10_lr"), pl.col("dropout"), pl.col("weight_decay"),
        (pl.col("weight_decay") + 1e-6).log10().alias("log10_weight_decay"),
        pl.col("batch_size").log(2).alias("log2_batch_size"), pl.col("width").log(2).alias("log2_width"),
        pl.col("depth"), pl.col("label_noise"),
    ]
    schedule_kind = pl.col("lr_schedule").str.extract(r"^(\w+)")  # `LrSchedule.label`: kind(parameters)
    columns += [(pl.col("optimizer") == o).alias(f"optimizer={o}") for o in get_args(Optimizer)]
    columns += [(pl.col("architecture") == a).alias(f"architecture={a}") for a in get_args(Architecture)]
    columns += [(schedule_kind == kind).alias(f"lr_schedule={kind}") for kind in get_args(ScheduleKind)]
    wide = runs.select("run_id", *[c.cast(pl.Float64) for c in columns])
    return wide.unpivot(index="run_id", variable_name="feature").cast(FEATURE_SCHEMA)
