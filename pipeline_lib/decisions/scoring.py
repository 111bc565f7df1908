"""Scoring runs at epoch k with a predictor: the checks that make a score meaningful, the design
matrix in the predictor's own column order, and the rank of the scores (which `sources` make).

A score is only as good as the predictor's training data: a run of another dataset or of an
architecture the predictor never saw is refused, not extrapolated to (other widths are allowed:
width transfer is what RQ2 measures, and the graph and hparams features are width-aware).
"""
from __future__ import annotations

import numpy as np
import polars as pl

from pipeline_lib.prediction.evaluation import feature_matrix

SCORE_SCHEMA = {"run_id": pl.Utf8, "predicted": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                "p_good": pl.Float64, "rank": pl.Int32}


class ScoringError(ValueError):
    """Runs that this predictor cannot score; the message says which and what to do."""


def check_compatible(runs: pl.DataFrame, predictor: dict) -> None:
    """Refuse runs whose dataset or architecture the predictor was not fitted on."""
    for column, seen in (("dataset", [predictor["dataset"]]), ("architecture", predictor["architectures"])):
        unseen = runs.filter(~pl.col(column).is_in(seen))
        if unseen.height:
            raise ScoringError(
                f"{unseen.height} run(s) have {column} {sorted(set(unseen[column]))}, but predictor "
                f"{predictor['id']} (study {predictor['study']}) was fitted on {column} {seen} only "
                f"(e.g. run {unseen['run_id'][0]}); choose a predictor registered on such runs")


def design_matrix(features: pl.DataFrame, run_ids: list[str], columns: list[str]) -> np.ndarray:
    """Long feature rows -> one row per run_id, the predictor's columns in its order (NaN where a
    run lacks one: the predictor's imputer fills it as it did in training)."""
    X, present = feature_matrix(features, run_ids)
    where = {name: i for i, name in enumerate(present)}
    out = np.full((len(run_ids), len(columns)), np.nan)
    for j, name in enumerate(columns):
        if name in where:
            out[:, j] = X[:, where[name]]
    return out


def ranked(scores: pl.DataFrame) -> pl.DataFrame:
    """A source's scores (`sources.ScoreSource.score`) with their rank (1 = best predicted, ties share)."""
    return scores.with_columns(
        pl.col("predicted").rank("min", descending=True).cast(pl.Int32).alias("rank")).cast(SCORE_SCHEMA)
