"""Scoring the runs of a study at epoch k with a registered predictor, into `scores`
(schema/008_scores.sql; the view `configuration_scores` ranks configurations).

Which runs: every run of the study that has reached epoch k (its epoch-k metrics are recorded, or
it diverged at or before k), finished or still training. Their features at k are computed here,
only for the base sets the predictor reads, with the same functions as the features stage.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl
from sklearn.pipeline import Pipeline

from pipeline_lib.decisions import corpus
from pipeline_lib.decisions.scoring import ScoringError, check_compatible, design_matrix, score
from pipeline_lib.features import FEATURE_SETS, GRAPH_BASE_SETS, base_set_features
from pipeline_lib.vocabulary import RunStatus, Task

from .db import Warehouse, replace_where
from .predict import epoch_metrics, graph_ready_runs, invariant_graph_summaries, snapshot_paths
from .registry import load_predictor

TAU = "json_extract(metrics_json, '$.kendall_tau.value')::DOUBLE"


@dataclass
class ScoringPlan:
    model: Pipeline       # the predictor, loaded (its file and code checked)
    predictor: dict       # its row of `predictors`
    runs: pl.DataFrame    # the runs to score: every one has reached epoch k
    waiting: int          # runs of the study that have not reached epoch k yet


def choose_predictor(wh: Warehouse, which: str, k: int, runs: pl.DataFrame) -> dict:
    """The registered regression predictor `which` (an id); with `which` = 'best' the one of highest
    pooled out-of-fold Kendall tau among those fitted at this k on the runs' dataset and
    architectures; with `which` a study name, the best such predictor of that study; with `which` =
    'corpus' the corpus predictor at k (pipeline_lib/decisions/corpus.py), whatever the warehouse holds."""
    if corpus.is_corpus(which):
        return corpus.row_of(which, k)
    of_study = None
    if which != "best":
        rows = wh.query("SELECT * FROM predictors WHERE id = ?", [which])
        if rows.is_empty() and wh.query("SELECT 1 FROM predictors WHERE study = ? LIMIT 1", [which]).is_empty():
            raise ScoringError(f"no registered predictor {which!r} in {wh.path}, nor a study of that name with "
                               "registered predictors; see `SELECT id, study, feature_set, k, task, predictor FROM "
                               "predictors` or use best")
        if rows.height:
            row = rows.row(0, named=True)
            if row["task"] != Task.REGRESSION or row["k"] != k:
                raise ScoringError(f"predictor {which} is a {row['task']} predictor fitted at k = {row['k']}; scoring "
                                   f"at epoch {k} needs a regression predictor fitted at k = {k}")
            return row
        of_study = which
    datasets, architectures = sorted(set(runs["dataset"])), sorted(set(runs["architecture"]))
    rows = wh.query(f"""SELECT * FROM predictors WHERE task = ? AND k = ? AND dataset = ANY(?)
                        AND list_has_all(architectures, ?) AND {TAU} IS NOT NULL AND study = coalesce(?, study)
                        ORDER BY {TAU} DESC, id LIMIT 1""", [Task.REGRESSION, k, datasets, architectures, of_study])
    if rows.is_empty():
        raise ScoringError(f"no registered regression predictor at k = {k}{f' of study {of_study!r}' if of_study else ''} "
                           f"with a cross-validated Kendall tau covers dataset {datasets} and architectures "
                           f"{architectures}; register a study of these (flows.register) or score at another epoch")
    return rows.row(0, named=True)


def plan_scoring(wh: Warehouse, study: str, which: str, k: int) -> ScoringPlan:
    """The predictor and the runs it will score, or ScoringError saying why it cannot (no run at
    epoch k, a dataset or architecture the predictor never saw, the graph stage not run), or
    RegistryError when its file or the prediction code changed since it was registered."""
    runs = wh.query("""SELECT r.*, coalesce(max(m.epoch), -1) AS last_epoch FROM runs r
                       LEFT JOIN epoch_metrics m USING (run_id)
                       WHERE r.study = ? AND r.status <> ? GROUP BY ALL ORDER BY r.run_id""", [study, RunStatus.FAILED])
    if runs.is_empty():
        raise ScoringError(f"study {study!r} has no runs in {wh.path}; train it first")
    reached = (pl.col("last_epoch") >= k) | (pl.col("diverged_epoch") <= k).fill_null(False)
    ready = runs.filter(reached)
    if ready.is_empty():
        raise ScoringError(f"no run of study {study!r} has reached epoch {k} yet (furthest: epoch "
                           f"{runs['last_epoch'].max()}); train further or score at a lower --at-epoch")
    predictor = choose_predictor(wh, which, k, ready)
    (corpus.check_runs if corpus.is_corpus(predictor["id"]) else check_compatible)(ready, predictor)
    bases = FEATURE_SETS[predictor["feature_set"]]
    if set(bases) & set(GRAPH_BASE_SETS):
        lacking = set(ready["run_id"]) - set(graph_ready_runs(wh, study, k)["run_id"])
        if lacking:
            raise ScoringError(f"predictor {predictor['id']} reads graph features ({predictor['feature_set']}), but "
                               f"{len(lacking)} run(s) of study {study!r} that reached epoch {k} lack processed graphs "
                               f"of their snapshots at epochs 0..{k} (e.g. run {sorted(lacking)[0]}); run "
                               "flows.graph_metrics on the study first")
    if "weight_stats" in bases:
        snapped = set(wh.query("SELECT run_id FROM snapshots WHERE epoch = ?", [k])["run_id"])
        lacking = set(ready.filter(pl.col("diverged_epoch").is_null() | (pl.col("diverged_epoch") > k))["run_id"]) - snapped
        if lacking:
            raise ScoringError(f"predictor {predictor['id']} reads weight statistics, but {len(lacking)} run(s) have "
                               f"no snapshot at epoch {k} (e.g. run {sorted(lacking)[0]})")
    model, predictor = load_predictor(wh, predictor["id"])
    return ScoringPlan(model, predictor, ready.drop("last_epoch"), runs.height - ready.height)


def _features(wh: Warehouse, study: str, k: int, runs: pl.DataFrame, bases: tuple[str, ...]) -> pl.DataFrame:
    """Feature rows of the runs at k, of the given base sets only (graph summaries read only if needed)."""
    inputs = {"epoch_metrics": epoch_metrics(wh, study),
              "graph_summaries": invariant_graph_summaries(wh, study, k) if set(bases) & set(GRAPH_BASE_SETS) else None,
              "snapshot_paths": snapshot_paths(wh, study) if "weight_stats" in bases else None}
    return pl.concat([base_set_features(base, k, runs, **inputs) for base in bases])


def classification_twin(wh: Warehouse, predictor: dict) -> tuple[Pipeline, dict] | None:
    """The classification predictor fitted with the same study, feature set, k and model, if registered."""
    if corpus.is_corpus(predictor["id"]):
        return corpus.load_twin(predictor)
    rows = wh.query("""SELECT id FROM predictors WHERE task = ? AND study = ? AND feature_set = ?
                       AND k = ? AND predictor = ?""",
                    [Task.CLASSIFICATION, predictor["study"], predictor["feature_set"], predictor["k"],
                     predictor["predictor"]])
    return load_predictor(wh, rows["id"][0]) if rows.height else None


def score_study(wh: Warehouse, study: str, which: str, k: int, confidence: float = 0.9) -> tuple[pl.DataFrame, ScoringPlan]:
    """Score every run of the study that reached epoch k; replaces the study's scores by this
    predictor at this k and returns them (with the plan: predictor, runs, runs still short of k)."""
    plan = plan_scoring(wh, study, which, k)
    predictor = plan.predictor
    run_ids = plan.runs["run_id"].to_list()
    X = design_matrix(_features(wh, study, k, plan.runs, FEATURE_SETS[predictor["feature_set"]]), run_ids,
                      predictor["features"])
    if corpus.is_corpus(predictor["id"]):  # it reads features normalized within the study (its input contract)
        X = corpus.normalize(X)
    scores = score(plan.model, predictor, X, run_ids, confidence, classification_twin(wh, predictor)).with_columns(
        pl.lit(study).alias("study"), pl.lit(predictor["id"]).alias("predictor_id"), pl.lit(k, pl.Int32).alias("k"),
        pl.lit(confidence).alias("confidence"),
        pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("scored_at"))
    with wh.writer() as con:
        replace_where(con, "scores", scores, "study = ? AND predictor_id = ? AND k = ?", [study, predictor["id"], k])
    return scores, plan
