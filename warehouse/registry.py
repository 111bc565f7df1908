"""The predictor registry (schema/007_predictors.sql, 008_scores.sql, the view best_predictors of
014_best_predictor.sql): record a study's fitted predictors, look one up and load it, refusing a
changed file (the fitting is `stages.register`)."""
from __future__ import annotations

import polars as pl
from sklearn.pipeline import Pipeline

from pipeline_lib.decisions import corpus, registry
from pipeline_lib.vocabulary import Task

from .db import Warehouse, replace_where


def record_predictors(wh: Warehouse, study: str, predictors: pl.DataFrame) -> None:
    """Replace the study's rows of `predictors`."""
    with wh.writer() as con:
        replace_where(con, "predictors", predictors, "study = ?", [study])


def registered(wh: Warehouse, study: str | None = None) -> pl.DataFrame:
    """Rows of `predictors`, of one study or of all."""
    if study is None:
        return wh.query("SELECT * FROM predictors ORDER BY study, k, feature_set, task, predictor")
    return wh.query("SELECT * FROM predictors WHERE study = ? ORDER BY k, feature_set, task, predictor", [study])


def ranked_predictors(wh: Warehouse, k: int, datasets: list[str], architectures: list[str],
                      study: str | None = None) -> pl.DataFrame:
    """The registered regression predictors at k with an out-of-fold Kendall tau (view
    best_predictors) fitted on one of `datasets` and on all `architectures`, of `study` or any; those
    of full studies first (not `triaged`), then by tau."""
    return wh.query("""SELECT * EXCLUDE (tau, tau_low, tau_high, standing) FROM best_predictors
                       WHERE k = ? AND dataset = ANY(?) AND list_has_all(architectures, ?) AND study = coalesce(?, study)
                       ORDER BY coalesce(triaged, false), tau DESC, id""", [k, datasets, architectures, study])


def best_predictor(wh: Warehouse, k: int, datasets: list[str], architectures: list[str],
                   study: str | None = None) -> dict | None:
    """The first of `ranked_predictors`: the highest tau, a full study's before a triaged one's."""
    rows = ranked_predictors(wh, k, datasets, architectures, study)
    return rows.row(0, named=True) if rows.height else None


def load_predictor(wh: Warehouse, pid: str) -> tuple[Pipeline, dict]:
    """The fitted model and its row; RegistryError if the id is unknown or the file fails its checks."""
    if corpus.is_corpus(pid):  # shipped with the project (pipeline_lib/corpus_data/predictor/), not registered here
        row = corpus.row_of(pid)
        return corpus.load_model(row), row
    rows = wh.query("SELECT * FROM predictors WHERE id = ?", [pid])
    if rows.is_empty():
        raise registry.RegistryError(f"no registered predictor {pid!r} in {wh.path}")
    row = rows.row(0, named=True)
    return registry.load(row["path"], row["file_digest"], row["code_digest"]), row


def classification_twin(wh: Warehouse, predictor: dict) -> tuple[Pipeline, dict] | None:
    """The classification predictor fitted with the same study, feature set, k and model, if registered."""
    if corpus.is_corpus(predictor["id"]):
        return corpus.load_twin(predictor)
    rows = wh.query("""SELECT id FROM predictors WHERE task = ? AND study = ? AND feature_set = ?
                       AND k = ? AND predictor = ?""",
                    [Task.CLASSIFICATION, predictor["study"], predictor["feature_set"], predictor["k"],
                     predictor["predictor"]])
    return load_predictor(wh, rows["id"][0]) if rows.height else None
