"""Triage: which runs of a rung's cohort continue past it, from their scores (a source's,
`sources.ScoreSource`: a predictor's, or the test accuracy at the rung, the i-Epoch rule)."""
from __future__ import annotations

import polars as pl

from pipeline_lib.spec import KeepPGood, TriageSpec
from pipeline_lib.vocabulary import Decision, RunStatus

from .keep import kept_count


class TriageError(ValueError):
    """A triage that cannot be decided or that contradicts the recorded one; the message says what to do."""


DECISION_SCHEMA = {"run_id": pl.Utf8, "predicted": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                   "p_good": pl.Float64, "rank": pl.Int32, "decision": pl.Utf8}


def split_cohort(cohort: pl.DataFrame, rung: int) -> tuple[list[str], dict[str, str]]:
    """The cohort's runs (run_id, status, last_epoch, diverged_epoch) that reached the rung alive, and
    why each other one gets no decision there (failed, diverged, or not at the rung): a failed or
    diverged run blocks no decision of the others, and a run that comes back later stays undecided."""
    ready, excluded = [], {}
    for run in cohort.sort("run_id").iter_rows(named=True):
        if run["diverged_epoch"] is not None and run["diverged_epoch"] <= rung:
            excluded[run["run_id"]] = f"diverged at epoch {run['diverged_epoch']}"
        elif run["last_epoch"] is not None and run["last_epoch"] >= rung:
            ready.append(run["run_id"])
        elif run["status"] == RunStatus.FAILED:
            excluded[run["run_id"]] = "failed"
        else:
            excluded[run["run_id"]] = f"at epoch {run['last_epoch']}, short of the rung"
    return ready, excluded


def decide(scores: pl.DataFrame, triage: TriageSpec) -> pl.DataFrame:
    """Keep or stop each scored run (run_id, predicted, low, high, p_good) of one rung's cohort by the
    spec's keep rule: the best predicted fraction (rounded up; 1/reduction_factor) or top N, or
    P(good) >= t. Rank 1 = best predicted (ties by run id); a run without a score (NaN or null) ranks
    last (Polars would sort NaN above every number)."""
    ranked = (scores.select("run_id", "predicted", "low", "high", "p_good")
              .sort(pl.col("predicted").fill_nan(None), "run_id", descending=[True, False], nulls_last=True)
              .with_row_index("rank", offset=1))
    keep = triage.keep_rule
    if isinstance(keep, KeepPGood):
        kept = pl.col("p_good").fill_null(-1.0) >= keep.p_good
    else:
        kept = pl.col("rank") <= kept_count(keep, ranked.height)
    decision = pl.when(kept).then(pl.lit(Decision.KEEP)).otherwise(pl.lit(Decision.STOP))
    return ranked.with_columns(decision.alias("decision")).select(DECISION_SCHEMA.keys()).cast(DECISION_SCHEMA)
