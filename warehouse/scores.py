"""Scores of runs at epoch k by a registered predictor, in `scores` (schema/008_scores.sql; the view
`configuration_scores` ranks configurations); the scoring is `stages.score`."""
from __future__ import annotations

import polars as pl

from pipeline_lib.vocabulary import RunStatus

from .db import Warehouse, replace_where


def runs_with_last_epoch(wh: Warehouse, study: str) -> pl.DataFrame:
    """The study's runs that did not fail, each with the last epoch it has metrics of (-1: none)."""
    return wh.query("""SELECT r.*, coalesce(max(m.epoch), -1) AS last_epoch FROM runs r
                       LEFT JOIN epoch_metrics m USING (run_id)
                       WHERE r.study = ? AND r.status <> ? GROUP BY ALL ORDER BY r.run_id""", [study, RunStatus.FAILED])


def record_scores(wh: Warehouse, study: str, predictor_id: str, k: int, scores: pl.DataFrame) -> None:
    """Replace the study's scores by this predictor at this k."""
    with wh.writer() as con:
        replace_where(con, "scores", scores, "study = ? AND predictor_id = ? AND k = ?", [study, predictor_id, k])
