"""What is predicted: a run's final test accuracy, and whether it is a "good" run.

Decision on diverged runs: their final accuracy is NULL in `runs` (the network's outputs are
not numbers). Here they count as chance accuracy (1 / classes): a diverged run is a lost run, and
a predictor must learn to flag it, so it stays in every evaluation (never silently dropped).
Runs still pending or failed have no outcome and are left out.

"Good" means final accuracy strictly above the study's `good_run_quantile` (default the median)
of final accuracy over the evaluated runs; the threshold is part of the target's definition,
fixed once per study, like the paper's "above the sweep median".
"""
from __future__ import annotations

import polars as pl

from ..vocabulary import DATASETS, FINISHED, RunStatus

CONFIGURATION = ("config_id", "architecture", "width", "depth")  # everything but the seed


def run_targets(runs: pl.DataFrame, good_quantile: float = 0.5) -> pl.DataFrame:
    """One row per evaluated run: identity columns, `final_acc`, `good` (0/1), `threshold`."""
    chance = pl.col("dataset").replace_strict({name: facts.chance_accuracy for name, facts in DATASETS.items()},
                                              return_dtype=pl.Float64)
    done = runs.filter(pl.col("status").is_in(FINISHED))
    targets = done.select(
        "run_id", *CONFIGURATION, "seed",
        pl.when(pl.col("status") == RunStatus.DIVERGED).then(chance).otherwise(pl.col("final_test_acc")).alias("final_acc"),
    ).sort("run_id")
    threshold = targets["final_acc"].quantile(good_quantile, interpolation="linear")
    return targets.with_columns((pl.col("final_acc") > threshold).cast(pl.Int64).alias("good"),
                                pl.lit(threshold).alias("threshold"))
