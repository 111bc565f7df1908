"""Scores for the replay's synchronous triage (`replay.simulate_rungs`), made by the shipped code.

A scorer is called once per rung with the ids of the cohort's runs that reached the rung alive and
returns their scores with the columns of `sources.SCORES_SCHEMA` (run_id, predicted, low, high,
p_good); the replay hands them to `decisions.triage.decide`, as the triage stage does. An optional
attribute `charged_seconds`, read at the end of a replay, is decision work done ahead of time.

- `accuracy_scorer`: the test accuracy at the rung from the recorded curves: the `test_acc@k`
  feature as the features stage builds it (`features.curves.early_acc_features`), scored by
  `AccuracySource.score` (the i-Epoch rule of `predictor: auto` without a predictor);
- `FixedScores`: a fixed predictor's predictions made ahead of time (`replay.Predictions`), charged
  their measured seconds for every run scored.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import polars as pl

from pipeline_lib.features.curves import early_acc_features

from .sources import SCORES_SCHEMA, AccuracySource

if TYPE_CHECKING:
    from .replay import Curves

Scorer = Callable[[int, list[str]], pl.DataFrame]  # (rung, run ids) -> scores; optional attribute charged_seconds


def accuracy_scorer(curves: Curves, confidence: float = 0.9) -> Scorer:
    """Scores at a rung = the runs' recorded test accuracy there, exactly as `AccuracySource` scores
    the `test_acc@k` feature (a non-finite accuracy is NULL, as the features stage writes it)."""
    row = {run_id: i for i, run_id in enumerate(curves.run_ids)}

    def scores(rung: int, run_ids: list[str]) -> pl.DataFrame:
        acc = curves.acc[[row[r] for r in run_ids], rung - 1]
        runs = pl.DataFrame({"run_id": run_ids, "diverged_epoch": [None] * len(run_ids)},
                            schema={"run_id": pl.Utf8, "diverged_epoch": pl.Int64})
        metrics = pl.DataFrame({"run_id": run_ids, "epoch": [rung] * len(run_ids), "test_acc": acc},
                               schema={"run_id": pl.Utf8, "epoch": pl.Int64, "test_acc": pl.Float64})
        return AccuracySource(rung).score(early_acc_features(runs, metrics, rung), run_ids, confidence)

    return scores


class FixedScores:
    """A fixed predictor's predictions at k, made ahead of time for every run (the sweep's rows,
    `run_ids`): each call returns those of the runs asked and charges `seconds_per_run` for each."""

    def __init__(self, k: int, run_ids: tuple[str, ...], values: np.ndarray, seconds_per_run: float):
        self.k, self.values, self.seconds_per_run = k, values, seconds_per_run
        self.row = {run_id: i for i, run_id in enumerate(run_ids)}
        self.charged_seconds = 0.0

    def __call__(self, rung: int, run_ids: list[str]) -> pl.DataFrame:
        if rung != self.k:
            raise ValueError(f"predictions made at epoch {self.k} cannot score rung {rung}")
        self.charged_seconds += self.seconds_per_run * len(run_ids)
        predicted = self.values[[self.row[r] for r in run_ids]]
        return pl.DataFrame({"run_id": run_ids, "predicted": predicted}).with_columns(
            low=None, high=None, p_good=None).cast(SCORES_SCHEMA)
