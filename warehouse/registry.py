"""The predictor registry (schema/007_predictors.sql, 008_scores.sql): fit, save and record every
predictor of a study on all its finished runs, with what its out-of-fold predictions say of its
uncertainty; look one up and load it, refusing a changed file."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import polars as pl
from sklearn.pipeline import Pipeline

from pipeline_lib.decisions import corpus, registry
from pipeline_lib.decisions.uncertainty import fit_calibration
from pipeline_lib.layout import DataLayout
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import Study
from pipeline_lib.vocabulary import FITTED_PREDICTORS, Split, Task

from .db import Warehouse, replace_where
from .predict import design_matrices, study_runs


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
    under <data_dir>/predictors/ and replace the study's rows of `predictors`; returns them."""
    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    run_ids = targets["run_id"].to_list()
    runs = wh.query("SELECT DISTINCT dataset, architecture, width FROM runs WHERE study = ? AND run_id IN "
                    "(SELECT unnest(?))", [study.name, run_ids])
    evaluations = wh.query("SELECT * FROM evaluations WHERE study = ? AND split = ?", [study.name, Split.CV])
    oof = wh.query("SELECT task, predictor, feature_set, k, y_true, y_pred, score FROM predictions "
                   "WHERE study = ? AND split = ? AND run_id IN (SELECT unnest(?))", [study.name, Split.CV, run_ids])
    code = registry.prediction_code_digest()
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
                             "features": columns, "path": str(path), "file_digest": digest, "code_digest": code,
                             "created": datetime.now(timezone.utc).replace(tzinfo=None)})
    frame = pl.DataFrame(rows, schema_overrides={"k": pl.Int32, "runs_used": pl.Int32,
                                                 "oof_residuals": pl.List(pl.Float64), "calibration": pl.List(pl.Float64)})
    with wh.writer() as con:
        replace_where(con, "predictors", frame, "study = ?", [study.name])
    return frame


def registered(wh: Warehouse, study: str | None = None) -> pl.DataFrame:
    """Rows of `predictors`, of one study or of all."""
    if study is None:
        return wh.query("SELECT * FROM predictors ORDER BY study, k, feature_set, task, predictor")
    return wh.query("SELECT * FROM predictors WHERE study = ? ORDER BY k, feature_set, task, predictor", [study])


def load_predictor(wh: Warehouse, pid: str) -> tuple[Pipeline, dict]:
    """The fitted model and its row; RegistryError if the id is unknown or the file fails its checks."""
    if corpus.is_corpus(pid):  # shipped with the project (corpus/predictor/), not registered here
        row = corpus.row_of(pid)
        return corpus.load_model(row), row
    rows = wh.query("SELECT * FROM predictors WHERE id = ?", [pid])
    if rows.is_empty():
        raise registry.RegistryError(f"no registered predictor {pid!r} in {wh.path}")
    row = rows.row(0, named=True)
    return registry.load(row["path"], row["file_digest"], row["code_digest"]), row
