"""Registration: fit every predictor on all finished runs of the study and save it for later scoring.

Each (feature set, k, task, predictor) whose features cover every finished run is fitted on all of
them, saved with skops under <data_dir>/predictors/<id>.skops and recorded in `predictors` with its
pooled cross-validated metrics and intervals (from `evaluations`, so run it after evaluate), what
its out-of-fold predictions say of its uncertainty, the columns it reads, and what loading checks
(the file's digest, the pins of `fingerprints.PREDICTOR`: `decisions.registry.load`).
Then the cost of the decision path: per k, the best predictor's (and the best graph predictor's)
graph work per snapshot for just the quantities it reads, against every property, measured on a
sample of the study's snapshots, beside the training seconds per model-epoch, into `costs`.
Skipped when the evaluation it reads and its own options and code (`fingerprints.REGISTER`) have
not changed.
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from pipeline_lib.decisions import path_cost, registry
from pipeline_lib.decisions.uncertainty import fit_calibration
from pipeline_lib.fingerprints import EVALUATE, REGISTER, predictor_pins
from pipeline_lib.graphs.properties import PROPERTIES
from pipeline_lib.graphs.snapshot_metrics import SnapshotJob
from pipeline_lib.layout import DataLayout
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import Study
from pipeline_lib.vocabulary import FITTED_PREDICTORS, Split, Task
from warehouse import decision_path
from warehouse.db import Warehouse
from warehouse.predict import design_matrices, record_stage, stage_fingerprint, study_runs
from warehouse.registry import record_predictors, registered_source
from warehouse.triage import was_triaged

from ._prediction import fingerprint_to_run, too_few_configurations
from .context import StudyContext

log = logging.getLogger(__name__)


def predictor_id(study: str, feature_set: str, k: int, task: str, predictor: str) -> str:
    """Stable across refits, so a spec or a score that names it keeps pointing at the same unit."""
    return hashlib.sha1(f"{study}|{feature_set}|{k}|{task}|{predictor}".encode()).hexdigest()[:12]


def _metrics(evaluations: pl.DataFrame, task: str, predictor: str, feature_set: str, k: int) -> dict:
    rows = evaluations.filter((pl.col("task") == task) & (pl.col("predictor") == predictor)
                              & (pl.col("feature_set") == feature_set) & (pl.col("k") == k))
    return {r["metric"]: {"value": r["value"], "low": r["low"], "high": r["high"], "fold_mean": r["mean"],
                          "fold_std": r["std"], "folds": r["folds"]} for r in rows.iter_rows(named=True)}


def _uncertainty(oof: pl.DataFrame, task: str, predictor: str, feature_set: str, k: int) -> dict:
    """oof_residuals (regression) or calibration (classification, both classes seen) of one unit,
    from its out-of-fold cv predictions; NULL where evaluate left none."""
    rows = oof.filter((pl.col("task") == task) & (pl.col("predictor") == predictor)
                      & (pl.col("feature_set") == feature_set) & (pl.col("k") == k))
    if task == Task.REGRESSION:
        return {"oof_residuals": (rows["y_true"] - rows["y_pred"]).to_list() or None, "calibration": None}
    usable = rows.height > 0 and rows["y_true"].n_unique() == 2
    return {"oof_residuals": None,
            "calibration": fit_calibration(rows["score"].to_numpy(), rows["y_true"].to_numpy()) if usable else None}


def register_study(wh: Warehouse, study: Study) -> pl.DataFrame:
    """Fit every (feature set, k, task, predictor) whose features cover all finished runs, save it
    under <data_dir>/predictors/ and replace the study's rows of `predictors`; returns them. A triaged
    study's finished runs are the ones its triage kept: its predictors are marked `triaged`."""
    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    run_ids = targets["run_id"].to_list()
    runs = wh.query("SELECT DISTINCT dataset, architecture, width FROM runs WHERE study = ? AND run_id IN "
                    "(SELECT unnest(?))", [study.name, run_ids])
    evaluations = wh.query("SELECT * FROM evaluations WHERE study = ? AND split = ?", [study.name, Split.CV])
    oof = wh.query("SELECT task, predictor, feature_set, k, y_true, y_pred, score FROM predictions "
                   "WHERE study = ? AND split = ? AND run_id IN (SELECT unnest(?))", [study.name, Split.CV, run_ids])
    pins = predictor_pins()
    if triaged := was_triaged(wh, study.name):
        log.warning("study %s was triaged: its predictors are fitted on its %d kept runs only and registered as "
                    "triaged (predictors.triaged); triage's predictor auto never takes them, best only after full "
                    "studies'", study.name, len(run_ids))
    rows = []
    designs, _ = design_matrices(wh, study, run_ids)
    for (feature_set, k), (X, columns) in designs.items():
        for task in Task:
            if task == Task.CLASSIFICATION and targets["good"].n_unique() < 2:
                continue
            for predictor in FITTED_PREDICTORS:
                pid = predictor_id(study.name, feature_set, k, task, predictor)
                path = DataLayout(wh.data_dir).predictor(pid)
                digest = registry.save(registry.fit_on_all(task, predictor, X, targets), path)
                rows.append({"id": pid, "study": study.name, "dataset": runs["dataset"][0],
                             "architectures": sorted(runs["architecture"].unique().to_list()),
                             "widths": sorted(runs["width"].unique().to_list()), "feature_set": feature_set,
                             "k": k, "task": task, "predictor": predictor, "runs_used": len(run_ids),
                             "good_threshold": float(targets["threshold"][0]),
                             "metrics_json": json.dumps(_metrics(evaluations, task, predictor, feature_set, k)),
                             **_uncertainty(oof, task, predictor, feature_set, k),
                             "features": columns, "path": str(path), "file_digest": digest, "code_digest": pins,
                             "triaged": triaged, "created": datetime.now(timezone.utc).replace(tzinfo=None)})
    frame = pl.DataFrame(rows, schema_overrides={"k": pl.Int32, "runs_used": pl.Int32,
                                                 "oof_residuals": pl.List(pl.Float64), "calibration": pl.List(pl.Float64)})
    record_predictors(wh, study.name, frame)
    return frame


def chosen_predictors(wh: Warehouse, study: str) -> pl.DataFrame:
    """Per k, the registered regression predictor of highest pooled out-of-fold Kendall tau, and the
    best of those that read graph features (one row where they are the same); columns id, k,
    feature_set, predictor, tau, properties (the graph quantities its kept columns read)."""
    chosen = decision_path.timed_predictors(wh, study)
    properties = []
    for pid in chosen["id"]:
        source = registered_source(wh, pid)
        used = path_cost.columns_used(source.model, source.row["features"])
        properties.append(list(path_cost.properties_read(used)))
    return chosen.with_columns(pl.Series("properties", properties, dtype=pl.List(pl.Utf8)))


def measure_decision_path(wh: Warehouse, study: Study) -> pl.DataFrame:
    """Time the chosen predictors' graph work (and every property, for comparison) on a sample of the
    study's snapshots; replace the study's decision_path and graph_stage rows of `costs`; return them."""
    chosen = chosen_predictors(wh, study.name)
    if chosen.is_empty():
        return pl.DataFrame(schema=path_cost.COST_COLUMNS)
    snapshots = decision_path.finished_snapshots(wh, study.name)
    jobs = path_cost.sample_snapshots([SnapshotJob(**r) for r in snapshots.iter_rows(named=True)],
                                      seed=study.graphs.seed)
    sets = {"all": PROPERTIES, **{path_cost.key_of(p): tuple(p) for p in chosen["properties"].to_list() if p}}
    per_snapshot = path_cost.seconds_per_snapshot(jobs, study.graphs, sets)
    epoch_seconds, train_all = decision_path.training_seconds(wh, study.name)
    recorded = decision_path.recorded_graph_seconds(wh, study.name)
    ks = sorted(set(chosen["k"]))
    rows = path_cost.decision_path_rows(
        chosen, per_snapshot, {k: int((snapshots["epoch"] <= k).sum()) for k in ks}, epoch_seconds, train_all,
        len(jobs), {k: float(recorded.filter(pl.col("epoch") <= k)["seconds"].sum()) for k in ks})
    decision_path.record_decision_path(wh, study.name, rows)
    return rows


def unusable_files(wh: Warehouse, study: str) -> list[str]:
    """The study's registered predictor files that are missing or no longer what was registered (their
    sha256): the register stage then fits them again, whatever its fingerprint says."""
    rows = wh.query("SELECT path, file_digest FROM predictors WHERE study = ? ORDER BY path", [study])
    return [path for path, digest in rows.rows() if not Path(path).is_file() or registry.file_digest(path) != digest]


def run(ctx: StudyContext) -> dict:
    """Fit, save and record the study's predictors and their decision path's cost; returns how many
    predictors (or that they were up to date)."""
    study, wh = ctx.study, ctx.warehouse
    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    if reason := too_few_configurations(REGISTER.stage, study.name, targets):
        return {"skipped": reason}
    inputs = stage_fingerprint(wh, study.name, EVALUATE.stage) or ""
    if unusable := unusable_files(wh, study.name):
        log.warning("%d registered predictor file(s) of %s are missing or changed (e.g. %s): registering again",
                    len(unusable), study.name, unusable[0])
        inputs += "|refit:" + ",".join(unusable)
    fingerprint = fingerprint_to_run(ctx, REGISTER, inputs)
    if fingerprint is None:
        return {"up_to_date": True}
    rows = register_study(wh, study)
    log.info("registered %d predictors of %s under %s", rows.height, study.name, ctx.layout.predictors)
    for r in measure_decision_path(wh, study).iter_rows(named=True):
        what = f"{r['feature_set']}/{r['predictor']}" if r["feature_set"] else "every property"
        log.info("k = %d, %s: %.4f s of graph work per snapshot (%s) against %.4f s of training per "
                 "model-epoch; for every run's snapshots 0..k, %.0f%% of training every run to the end", r["k"],
                 what, r["snapshot_seconds"], ", ".join(r["properties"]) or "none", r["epoch_seconds"],
                 100 * r["fraction"])
    record_stage(wh, study.name, REGISTER.stage, fingerprint)
    return {"predictors": rows.height}
