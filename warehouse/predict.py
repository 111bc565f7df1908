"""Reading the prediction stage's inputs from the warehouse and writing its tables.

Inputs: runs, epoch_metrics, snapshots, graph_summaries (graph and depth scopes), graphs.seconds.
Outputs: features, evaluations, predictions, comparisons, costs, stage_fingerprints
(schema/004_predict.sql, 005_evaluation.sql).
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import polars as pl

from pipeline_lib.features import BASE_SETS, FEATURE_SETS, GRAPH_BASE_SETS
from pipeline_lib.fingerprints import digest, feature_fingerprints
from pipeline_lib.decisions.path_cost import STRATEGIES as DECISION_PATH
from pipeline_lib.decisions.savings import STRATEGY as TRIAGE
from pipeline_lib.prediction.evaluation import feature_matrix
from pipeline_lib.spec import Study
from pipeline_lib.vocabulary import FINISHED, Split, Task

from .db import Warehouse, replace_where, upsert


def study_runs(wh: Warehouse, study: str) -> pl.DataFrame:
    """The study's runs that have an outcome (completed or diverged)."""
    return wh.query("SELECT * FROM runs WHERE study = ? AND list_contains(?, status) ORDER BY run_id",
                    [study, list(FINISHED)])


def epoch_metrics(wh: Warehouse, study: str) -> pl.DataFrame:
    return wh.query("""SELECT m.* FROM epoch_metrics m JOIN runs r USING (run_id)
                       WHERE r.study = ? ORDER BY m.run_id, m.epoch""", [study])


def snapshot_paths(wh: Warehouse, study: str) -> pl.DataFrame:
    return wh.query("""SELECT s.run_id, s.epoch, s.path FROM snapshots s JOIN runs r USING (run_id)
                       WHERE r.study = ? ORDER BY s.run_id, s.epoch""", [study])


def invariant_graph_summaries(wh: Warehouse, study: str, max_epoch: int) -> pl.DataFrame:
    """graph_summaries rows of the width-invariant scopes ('graph', 'depth:<b>') up to max_epoch, and
    each graph's Perron value as a row (scope 'graph', property 'perron_value', statistic 'value')."""
    return wh.query("""SELECT g.run_id, g.epoch, g.scope, g.property, g.statistic, g.value
                       FROM graph_summaries g JOIN runs r USING (run_id)
                       WHERE r.study = $1 AND g.epoch <= $2 AND (g.scope = 'graph' OR g.scope LIKE 'depth:%')
                       UNION ALL
                       SELECT g.run_id, g.epoch, 'graph', 'perron_value', 'value', g.perron_value
                       FROM graphs g JOIN runs r USING (run_id)
                       WHERE r.study = $1 AND g.epoch <= $2 AND g.error IS NULL AND g.perron_value IS NOT NULL""",
                    [study, max_epoch])


def graph_ready_runs(wh: Warehouse, study: str, k: int) -> pl.DataFrame:
    """Runs whose every snapshot at epochs <= k has a processed graph with summaries; `graphs` joins
    those graphs' fingerprints in epoch order (what the run's graph features at k read)."""
    return wh.query("""
        SELECT s.run_id, string_agg(coalesce(g.fingerprint, ''), ',' ORDER BY s.epoch) AS graphs
        FROM snapshots s JOIN runs r USING (run_id)
        LEFT JOIN graphs g ON g.run_id = s.run_id AND g.epoch = s.epoch AND g.error IS NULL
        LEFT JOIN (SELECT DISTINCT run_id, epoch FROM graph_summaries) gs ON gs.run_id = s.run_id AND gs.epoch = s.epoch
        WHERE r.study = ? AND s.epoch <= ?
        GROUP BY s.run_id HAVING bool_and(g.run_id IS NOT NULL AND gs.run_id IS NOT NULL)
        ORDER BY s.run_id""", [study, k])


def graph_seconds(wh: Warehouse, study: str) -> pl.DataFrame:
    return wh.query("""SELECT g.run_id, g.epoch, coalesce(g.seconds, 0) AS seconds FROM graphs g
                       JOIN runs r USING (run_id) WHERE r.study = ?""", [study])


def pending_features(wh: Warehouse, study: str, runs: pl.DataFrame, k: int) -> dict[str, pl.DataFrame]:
    """Per base set, the (run_id, fingerprint) units at k to compute: those not stored with the
    fingerprint the current feature code (and, for graph sets, the run's current graphs) give.
    A graph set waits until the run's graphs cover epochs 0..k."""
    stored = wh.query("SELECT DISTINCT run_id, feature_set, fingerprint FROM features WHERE study = ? AND k = ?",
                      [study, k])
    graph_inputs = runs.select("run_id").join(graph_ready_runs(wh, study, k), on="run_id")
    pending = {}
    for feature_set in BASE_SETS:
        units = graph_inputs if feature_set in GRAPH_BASE_SETS else runs.select("run_id", graphs=pl.lit(""))
        current = units.select("run_id", fingerprint=pl.Series(
            feature_fingerprints(feature_set, units["graphs"].to_list()), dtype=pl.Utf8))
        done = stored.filter(pl.col("feature_set") == feature_set).select("run_id", "fingerprint")
        pending[feature_set] = current.join(done, on=["run_id", "fingerprint"], how="anti")
    return pending


def write_features(wh: Warehouse, study: str, rows: pl.DataFrame) -> int:
    """Replace the stored units (run_id, k, feature_set) that `rows` holds (each row with its unit's fingerprint)."""
    if rows.is_empty():
        return 0
    frame = rows.with_columns(pl.lit(study).alias("study"))
    keys = frame.select("run_id", "k", "feature_set").unique()
    with wh.writer() as con:
        con.register("_feature_keys", keys.to_arrow())
        try:
            con.execute("""DELETE FROM features WHERE study = ? AND (run_id, k, feature_set) IN
                           (SELECT (run_id, k, feature_set) FROM _feature_keys)""", [study])
        finally:
            con.unregister("_feature_keys")
        return upsert(con, "features", frame)


def load_features(wh: Warehouse, study: str, k: int, base_sets: tuple[str, ...]) -> pl.DataFrame:
    """Long feature rows (run_id, feature_set, feature, value) of the given base sets at k."""
    return wh.query("""SELECT run_id, feature_set, feature, value FROM features
                       WHERE study = ? AND k = ? AND feature_set IN (SELECT unnest(?))""", [study, k, list(base_sets)])


def design_matrices(wh: Warehouse, study: Study, run_ids: list[str]
                    ) -> tuple[dict[tuple[str, int], tuple[np.ndarray, list[str]]], list[str]]:
    """{(feature_set, k): (matrix with one row per run_id, its columns)} for every combination whose
    base sets are stored for all the runs; and a note per combination left out."""
    designs, left_out = {}, []
    for k in study.predict.k_epochs:
        for name, base_sets in FEATURE_SETS.items():
            rows = load_features(wh, study.name, k, base_sets)
            covered = [set(rows.filter(pl.col("feature_set") == b)["run_id"]) for b in base_sets]
            missing = max(len(set(run_ids) - c) for c in covered)
            if missing:
                left_out.append(f"{name}@k={k} ({missing} runs lack features)")
                continue
            designs[(name, k)] = feature_matrix(rows, run_ids)
    return designs, left_out


def write_results(wh: Warehouse, study: str, splits: list[str], evaluations: pl.DataFrame,
                  predictions: pl.DataFrame, comparisons: pl.DataFrame | None = None,
                  costs: pl.DataFrame | None = None) -> None:
    """Replace the study's evaluations, predictions and comparisons of the given splits (split names,
    or prefixes ending in ':' such as 'cv:') and its RQ3 costs, at once; a table given None is kept."""
    where = "study = ? AND (list_contains(?, split) OR list_contains(?, split_part(split, ':', 1) || ':'))"
    with wh.writer() as con:
        for table, frame in (("evaluations", evaluations), ("predictions", predictions), ("comparisons", comparisons)):
            if frame is not None:
                replace_where(con, table, frame.with_columns(pl.lit(study).alias("study")), where, [study, splits, splits])
        if costs is not None:  # RQ3's rows; the decision path's (flows.register) and the triage's stay
            replace_where(con, "costs", costs.with_columns(pl.lit(study).alias("study")),
                          "study = ? AND NOT list_contains(?, strategy)", [study, [*DECISION_PATH, TRIAGE]])


def input_fingerprint(wh: Warehouse, study: str) -> str:
    """A digest of everything the evaluation reads: the study's features (their values and
    fingerprints, so new feature code re-evaluates), run outcomes and graph seconds."""
    row = wh.query("""
        SELECT (SELECT count(*) FROM features WHERE study = $1)::VARCHAR || ':' ||
               coalesce((SELECT sum(hash(run_id, k, feature_set, feature, value, fingerprint)) FROM features
                         WHERE study = $1), 0)::VARCHAR
               || ':' || coalesce((SELECT sum(hash(run_id, config_id, width, status, final_test_acc)) FROM runs
                                   WHERE study = $1), 0)::VARCHAR
               || ':' || coalesce((SELECT sum(hash(run_id, epoch, seconds)) FROM graphs JOIN runs USING (run_id)
                                   WHERE study = $1), 0)::VARCHAR AS digest""", [study])
    return digest(row["digest"][0])


def stage_fingerprint(wh: Warehouse, study: str, stage: str) -> str | None:
    rows = wh.query("SELECT fingerprint FROM stage_fingerprints WHERE study = ? AND stage = ?", [study, stage])
    return rows["fingerprint"][0] if rows.height else None


def record_stage(wh: Warehouse, study: str, stage: str, fingerprint: str) -> None:
    frame = pl.DataFrame([{"study": study, "stage": stage, "fingerprint": fingerprint,
                           "finished_at": datetime.now(timezone.utc).replace(tzinfo=None)}])
    with wh.writer() as con:
        upsert(con, "stage_fingerprints", frame)


def report_tables(wh: Warehouse, study: str) -> dict[str, pl.DataFrame | str | None]:
    """What the report reads: runs, the leaderboard and the predictor its tables show (views.sql),
    comparisons, cross-validated regression predictions, costs, the whole-graph property statistics
    per epoch, registered predictors and the stored replay of stopping policies."""
    shown = wh.query("SELECT predictor FROM predictor_standing WHERE study = ? AND split = ? AND rank = 1",
                     [study, Split.CV])
    return {
        "predictor": shown["predictor"][0] if shown.height else None,
        "runs": wh.query("SELECT run_id, config_id, architecture, width, depth, seed, dataset, status, final_test_acc "
                         "FROM runs WHERE study = ?", [study]),
        "leaderboard": wh.query("SELECT * EXCLUDE (study) FROM leaderboard WHERE study = ?", [study]),
        "comparisons": wh.query("SELECT * EXCLUDE (study) FROM comparisons WHERE study = ?", [study]),
        "predictions": wh.query("""SELECT * EXCLUDE (study) FROM predictions
                                   WHERE study = ? AND task = ? AND split = ?""", [study, Task.REGRESSION, Split.CV]),
        "costs": wh.query("SELECT * EXCLUDE (study) FROM costs WHERE study = ?", [study]),
        "graph_summaries": wh.query("""SELECT s.run_id, s.epoch, s.property, s.statistic, s.value FROM graph_summaries s
                                       JOIN runs r USING (run_id) WHERE r.study = ? AND s.scope = 'graph'""", [study]),
        "predictors": wh.query("""SELECT id, k, feature_set, predictor, tau, tau_low, tau_high FROM best_predictors
                                  WHERE study = ? AND standing = 1""", [study]),
        "replays": wh.query("SELECT * EXCLUDE (study) FROM replays WHERE study = ?", [study]),
        "triage": wh.query("""SELECT r.run_id, r.architecture, r.width, r.epochs, r.epochs_done, r.status, r.final_test_acc,
                                     d.* EXCLUDE (study, run_id)
                              FROM runs r LEFT JOIN (SELECT * FROM triage_decisions WHERE study = ?
                                                     QUALIFY rung = max(rung) OVER (PARTITION BY run_id)) d USING (run_id)
                              WHERE r.study = ?""", [study, study]),
        "triage_rungs": wh.query("""SELECT rung, any_value(source) AS source, any_value(source_reason) AS source_reason,
                                           any_value(predictor_id) AS predictor_id, any_value(mismatches) AS mismatches,
                                           any_value(keep_policy) AS keep_policy, count(*) AS decided,
                                           count(*) FILTER (decision = 'keep') AS kept,
                                           any_value(graph_seconds) AS graph_seconds,
                                           any_value(scoring_seconds) AS scoring_seconds
                                    FROM triage_decisions WHERE study = ? GROUP BY rung ORDER BY rung""", [study]),
    }
