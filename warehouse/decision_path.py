"""What the decision path's cost (schema/011_decision_path.sql) reads and writes: the registered
predictors it times, the study's snapshots and recorded training and graph seconds, its rows of
`costs` (the timing is `stages.register`, `pipeline_lib.decisions.path_cost`)."""
from __future__ import annotations

import polars as pl

from pipeline_lib.decisions.path_cost import STRATEGIES
from pipeline_lib.features import GRAPH_SETS
from pipeline_lib.vocabulary import FINISHED

from .db import Warehouse, replace_where

FINISHED_RUN = "r.study = ? AND list_contains(?, r.status)"  # parameters: study, list(FINISHED)


def timed_predictors(wh: Warehouse, study: str) -> pl.DataFrame:
    """Per k, the study's best registered regression predictor (view best_predictors) and the best of
    those that read graph features (one row where they are the same); columns id, k, feature_set,
    predictor, tau."""
    return wh.query("""SELECT id, k, feature_set, predictor, tau FROM best_predictors WHERE study = $1 AND standing = 1
                       UNION
                       SELECT id, k, feature_set, predictor, tau FROM best_predictors
                       WHERE study = $1 AND list_contains($2, feature_set)
                       QUALIFY row_number() OVER (PARTITION BY k ORDER BY standing) = 1
                       ORDER BY k, tau DESC, id""", [study, list(GRAPH_SETS)])


def finished_snapshots(wh: Warehouse, study: str) -> pl.DataFrame:
    """Snapshots of the study's finished runs, as graph jobs (run_id, epoch, path, architecture, width, depth, dataset)."""
    return wh.query(f"""SELECT s.run_id, s.epoch, s.path, r.architecture, r.width, r.depth, r.dataset
                        FROM snapshots s JOIN runs r USING (run_id) WHERE {FINISHED_RUN}
                        ORDER BY s.run_id, s.epoch""", [study, list(FINISHED)])


def training_seconds(wh: Warehouse, study: str) -> tuple[float, float]:
    """(seconds per model-epoch after initialisation, all training seconds) of the study's finished runs."""
    row = wh.query(f"""SELECT sum(m.seconds) AS train_all, avg(m.seconds) FILTER (m.epoch >= 1) AS epoch_seconds
                       FROM epoch_metrics m JOIN runs r USING (run_id) WHERE {FINISHED_RUN}""", [study, list(FINISHED)])
    return float(row["epoch_seconds"][0]), float(row["train_all"][0])


def recorded_graph_seconds(wh: Warehouse, study: str) -> pl.DataFrame:
    """epoch, seconds of every graph of the study's finished runs, as the graph stage recorded them."""
    return wh.query(f"""SELECT g.epoch, coalesce(g.seconds, 0) AS seconds FROM graphs g JOIN runs r USING (run_id)
                        WHERE {FINISHED_RUN}""", [study, list(FINISHED)])


def record_decision_path(wh: Warehouse, study: str, rows: pl.DataFrame) -> None:
    """Replace the study's decision_path and graph_stage rows of `costs`."""
    with wh.writer() as con:
        replace_where(con, "costs", rows.with_columns(pl.lit(study).alias("study")),
                      "study = ? AND list_contains(?, strategy)", [study, list(STRATEGIES)])
