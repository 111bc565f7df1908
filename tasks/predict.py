"""Prefect tasks of the prediction stages: each wraps one unit of `stages.units`."""
from __future__ import annotations

import numpy as np
import polars as pl
from prefect import task

from stages import units


@task(name="features", persist_result=False, tags=["features"], task_run_name="features-{feature_set}-k{k}")
def base_set_features_task(feature_set: str, k: int, runs: pl.DataFrame, epoch_metrics: pl.DataFrame,
                           graph_summaries: pl.DataFrame, snapshot_paths: pl.DataFrame,
                           data_dir: str) -> tuple[pl.DataFrame, dict[str, str]]:
    return units.features(feature_set, k, runs, epoch_metrics, graph_summaries, snapshot_paths, data_dir)


@task(name="cross-validate", persist_result=False, tags=["predict"], task_run_name="cv-{feature_set}-k{k}")
def cross_validate_task(feature_set: str, k: int, X: np.ndarray, targets: pl.DataFrame) -> pl.DataFrame:
    """Every task and predictor on one design matrix (feature_set and k name the task run)."""
    return units.cross_validate(feature_set, k, X, targets)


@task(name="transfer", persist_result=False, tags=["predict"], task_run_name="transfer-{feature_set}-k{k}")
def transfer_task(feature_set: str, k: int, X: np.ndarray, targets: pl.DataFrame,
                  directions: dict[str, tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
    return units.transfer(feature_set, k, X, targets, directions)
