"""The predictor registry (schema/007_predictors.sql, 008_scores.sql, the view best_predictors of
014_best_predictor.sql): record a study's fitted predictors, look one up and load it, refusing a
changed file (the fitting is `stages.register`; the checks, `decisions.registry.load`)."""
from __future__ import annotations

import polars as pl

from pipeline_lib.decisions import registry
from pipeline_lib.decisions.sources import RegisteredSource
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


def registered_source(wh: Warehouse, pid: str) -> RegisteredSource:
    """The registered predictor `pid` with its classification twin when one is registered (the same
    study, feature set, k and model), loaded when first used; RegistryError if the id is unknown."""
    rows = wh.query("SELECT * FROM predictors WHERE id = ?", [pid])
    if rows.is_empty():
        raise registry.RegistryError(f"no registered predictor {pid!r} in {wh.path}")
    row = rows.row(0, named=True)
    twins = wh.query("""SELECT * FROM predictors WHERE task = ? AND study = ? AND feature_set = ?
                        AND k = ? AND predictor = ? AND id <> ?""",
                     [Task.CLASSIFICATION, row["study"], row["feature_set"], row["k"], row["predictor"], pid])
    return RegisteredSource(row, twins.row(0, named=True) if twins.height else None)
