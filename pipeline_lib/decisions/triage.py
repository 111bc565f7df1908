"""Triage: which runs to continue past epoch k, from their scores (the graph properties scoring
needs are `path_cost.properties_read`'s, so the triage computes only those)."""
from __future__ import annotations

import math

import polars as pl

from pipeline_lib.spec import KeepPGood, TriageSpec
from pipeline_lib.vocabulary import Decision


class TriageError(ValueError):
    """A triage that cannot be decided or that contradicts the recorded one; the message says what to do."""


DECISION_SCHEMA = {"run_id": pl.Utf8, "predicted": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                   "p_good": pl.Float64, "rank": pl.Int32, "decision": pl.Utf8}


def decide(scores: pl.DataFrame, triage: TriageSpec) -> pl.DataFrame:
    """Keep or stop each scored run (run_id, predicted, low, high, p_good) by the spec's keep rule:
    the best predicted fraction (rounded up) or top N, or P(good) >= t. Rank 1 = best predicted
    (ties by run id)."""
    ranked = (scores.select("run_id", "predicted", "low", "high", "p_good")
              .sort(["predicted", "run_id"], descending=[True, False]).with_row_index("rank", offset=1))
    keep = triage.keep
    if isinstance(keep, KeepPGood):
        kept = pl.col("p_good").fill_null(-1.0) >= keep.p_good
    else:
        n = math.ceil(keep * ranked.height) if isinstance(keep, float) else keep
        kept = pl.col("rank") <= n
    decision = pl.when(kept).then(pl.lit(Decision.KEEP)).otherwise(pl.lit(Decision.STOP))
    return ranked.with_columns(decision.alias("decision")).select(DECISION_SCHEMA.keys()).cast(DECISION_SCHEMA)
