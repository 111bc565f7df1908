"""A study's part of the corpus (pipeline_lib/corpus.py), read from its warehouse: finished runs with
their configuration and outcome, their curves, and their current features at every k."""
from __future__ import annotations

import polars as pl

from pipeline_lib.spec import Study

from .db import Warehouse
from .predict import pending_features, study_runs


class StaleFeatures(RuntimeError):
    """Some features of the study are missing or were computed by other code or from other graphs."""


def corpus_tables(wh: Warehouse, study: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """(runs, curves, features, facts) of the study's finished runs; StaleFeatures unless every
    feature unit at every k of its spec is current (the corpus records one feature-code fingerprint)."""
    spec = Study.model_validate_json(wh.query("SELECT spec_json FROM studies WHERE study = ?", [study])["spec_json"][0])
    runs = study_runs(wh, study)
    for k in spec.predict.k_epochs:
        stale = {s: p.height for s, p in pending_features(wh, study, runs, k).items() if p.height}
        if stale:
            raise StaleFeatures(f"{wh.path}: features of study {study} at k = {k} are not current for {stale} runs; "
                                f"run the features stage (flows.features) on it first")
    ids = runs["run_id"].to_list()
    curves = wh.query("SELECT * FROM epoch_metrics WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, epoch", [ids])
    features = wh.query("SELECT run_id, k, feature_set, feature, value FROM features WHERE study = ? "
                        "AND run_id IN (SELECT unnest(?))", [study, ids])
    facts = {"study": study, "runs": runs.height, "configurations": runs["config_id"].n_unique(),
             "k_epochs": spec.predict.k_epochs}
    return runs, curves, features, facts
