"""Out-of-fold and transfer predictions, every one made by a model that never saw its run.

- `grouped_folds`: GroupKFold by config_id, computed once per study and shared by every feature
  set, k, task and predictor, so their results are comparable. All seeds (and widths) of a
  hyper-parameter configuration fall in the same fold.
- `cross_validated_predictions`: fit on the other folds, predict the held-out fold.
- `transfer_predictions`: fit on one set of runs (e.g. narrow widths), predict another.
- `other_seed_predictions`: the noise ceiling. Each run is "predicted" by the mean outcome of the
  other seeds of its exact configuration; how well that ranks runs is as well as any predictor
  can hope to do from the configuration.
"""
from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.model_selection import GroupKFold

from ..vocabulary import FITTED_PREDICTORS, SEED_AGREEMENT, Predictor, Task
from .models import inner_splits, make_predictor
from .targets import CONFIGURATION

PREDICTION_SCHEMA = {"run_id": pl.Utf8, "fold": pl.Int64, "y_true": pl.Float64, "y_pred": pl.Float64,
                     "score": pl.Float64}
UNIT_COLUMNS = ("task", "predictor", "feature_set", "k", "split")  # what one evaluation summarises


def grouped_folds(targets: pl.DataFrame, n_folds: int) -> pl.DataFrame:
    """targets with a `fold` column (0..n-1); at most one fold per configuration group."""
    groups = targets["config_id"].to_numpy()
    n = min(n_folds, len(np.unique(groups)))
    if n < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 configurations, found {n}")
    fold = np.empty(targets.height, dtype=np.int64)
    for i, (_, test) in enumerate(GroupKFold(n).split(np.zeros(targets.height), groups=groups)):
        fold[test] = i
    return targets.with_columns(pl.Series("fold", fold))


def feature_matrix(features: pl.DataFrame, run_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """Long feature rows (run_id, feature, value) -> matrix with one row per run_id, in order, and
    one column per feature, sorted by name (NaN where a run lacks a feature).

    A feature shared by two base sets of a combination (the divergence flag) appears once.
    (Placed by index: Polars' pivot takes seconds for the thousands of graph columns.)"""
    columns = sorted(features["feature"].unique().to_list())
    cells = (features.join(pl.DataFrame({"run_id": run_ids, "row": range(len(run_ids))}), on="run_id")
             .join(pl.DataFrame({"feature": columns, "column": range(len(columns))}), on="feature")
             .unique(subset=["row", "column"], keep="first"))
    matrix = np.full((len(run_ids), len(columns)), np.nan)
    matrix[cells["row"].to_numpy(), cells["column"].to_numpy()] = cells["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return matrix, columns


def _target(task: str, targets: pl.DataFrame) -> np.ndarray:
    return targets["final_acc" if task == Task.REGRESSION else "good"].to_numpy().astype(np.float64)


def _fit_predict(task: str, predictor: str, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                 train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(y_pred, score) for the test rows, or None when a classifier's training rows hold one class."""
    if task == Task.CLASSIFICATION and len(np.unique(y[train])) < 2:
        return None
    splits = inner_splits(task, y[train], groups[train])
    model = make_predictor(predictor, task, len(train), X.shape[1], splits).fit(X[train], y[train])
    if task == Task.REGRESSION:
        return model.predict(X[test]), np.full(len(test), np.nan)
    score = model.predict_proba(X[test])[:, list(model.classes_).index(1.0)]
    return (score >= 0.5).astype(np.float64), score


def _frame(targets: pl.DataFrame, rows: np.ndarray, fold, y: np.ndarray, y_pred, score) -> pl.DataFrame:
    return pl.DataFrame({"run_id": targets["run_id"].to_numpy()[rows], "fold": fold, "y_true": y[rows],
                         "y_pred": y_pred, "score": score}, schema=PREDICTION_SCHEMA)


def cross_validated_predictions(task: str, predictor: str, X: np.ndarray, targets: pl.DataFrame) -> pl.DataFrame:
    """Out-of-fold predictions for every run (targets carry `fold`, from grouped_folds)."""
    y, groups, folds = _target(task, targets), targets["config_id"].to_numpy(), targets["fold"].to_numpy()
    frames = []
    for fold in np.unique(folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        made = _fit_predict(task, predictor, X, y, groups, train, test)
        if made is not None:
            frames.append(_frame(targets, test, fold, y, *made))
    return pl.concat(frames) if frames else pl.DataFrame(schema=PREDICTION_SCHEMA)


def transfer_predictions(task: str, predictor: str, X: np.ndarray, targets: pl.DataFrame,
                         train_mask: np.ndarray, test_mask: np.ndarray) -> pl.DataFrame:
    """Fit on the rows of train_mask, predict the rows of test_mask (one "fold", numbered 0)."""
    y, groups = _target(task, targets), targets["config_id"].to_numpy()
    train, test = np.flatnonzero(train_mask), np.flatnonzero(test_mask)
    made = _fit_predict(task, predictor, X, y, groups, train, test)
    if made is None or len(test) == 0:
        return pl.DataFrame(schema=PREDICTION_SCHEMA)
    return _frame(targets, test, 0, y, *made)


def other_seed_predictions(task: str, targets: pl.DataFrame) -> pl.DataFrame:
    """Each run predicted by the mean target of the other seeds of its configuration.

    Runs whose configuration has a single seed are left out. targets may carry `fold`
    (the predictions keep it, so the ceiling is summarised over the same folds); else fold 0."""
    value = "final_acc" if task == Task.REGRESSION else "good"
    if "fold" not in targets.columns:
        targets = targets.with_columns(pl.lit(0, pl.Int64).alias("fold"))
    group = list(CONFIGURATION)
    partners = targets.select(*group, pl.col("run_id").alias("partner"), pl.col(value).alias("partner_value"))
    other = (targets.join(partners, on=group).filter(pl.col("partner") != pl.col("run_id"))
             .group_by("run_id").agg(pl.col("partner_value").mean().alias("other")))
    others = targets.join(other, on="run_id", how="inner", maintain_order="left")
    if task == Task.REGRESSION:
        pred = others.select(pl.col("other").alias("y_pred"), pl.lit(None, pl.Float64).alias("score"))
    else:
        pred = others.select((pl.col("other") >= 0.5).cast(pl.Float64).alias("y_pred"), pl.col("other").alias("score"))
    return pl.concat([others.select("run_id", "fold", pl.col(value).cast(pl.Float64).alias("y_true")), pred],
                     how="horizontal").cast(PREDICTION_SCHEMA)


def with_unit(frame: pl.DataFrame, **labels) -> pl.DataFrame:
    """Prediction rows labelled with the unit (task, predictor, feature_set, k, split) they belong to."""
    frame = frame.with_columns(*[pl.lit(v).alias(c) for c, v in labels.items()]).with_columns(pl.col("k").cast(pl.Int64))
    return frame.select(*UNIT_COLUMNS, *PREDICTION_SCHEMA)


def seed_agreement_rows(targets: pl.DataFrame, ks: list[int], split: str) -> list[pl.DataFrame]:
    """The noise ceiling's predictions, repeated for every k (it does not depend on k) so that it
    sits beside every result."""
    return [with_unit(other_seed_predictions(task, targets), task=task, predictor=Predictor.OTHER_SEEDS,
                      feature_set=SEED_AGREEMENT, k=k, split=split) for task in Task for k in ks]


def per_architecture(predictions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """RQ1 within each family: the predictions of every split relabelled `<split>:<architecture>`,
    one copy per architecture (empty for a single-architecture study)."""
    joined = predictions.join(targets.select("run_id", "architecture"), on="run_id")
    if joined["architecture"].n_unique() < 2:
        return predictions.clear()
    return joined.with_columns(pl.format("{}:{}", "split", "architecture").alias("split")).select(predictions.columns)


def _labelled(frame: pl.DataFrame, **labels) -> pl.DataFrame:
    return frame.select(*[pl.lit(v).alias(k) for k, v in labels.items()], *PREDICTION_SCHEMA)


def cross_validate_design(X: np.ndarray, targets: pl.DataFrame) -> pl.DataFrame:
    """Out-of-fold predictions of every task and predictor on one design matrix (columns task, predictor, ...)."""
    return pl.concat([_labelled(cross_validated_predictions(task, predictor, X, targets), task=task, predictor=predictor)
                      for task in Task for predictor in FITTED_PREDICTORS])


def transfer_design(X: np.ndarray, targets: pl.DataFrame,
                    directions: dict[str, tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
    """Transfer predictions of every task and predictor for each named (train_mask, test_mask) split."""
    return pl.concat([_labelled(transfer_predictions(task, predictor, X, targets, train, test),
                                split=split, task=task, predictor=predictor)
                      for split, (train, test) in directions.items() for task in Task for predictor in FITTED_PREDICTORS])
