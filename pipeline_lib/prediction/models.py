"""The predictors: scikit-learn Pipelines with robust preprocessing and fixed or nested choices.

Preprocessing (fitted on the training rows only, inside the Pipeline):
  median imputation (missing = not observable at k, e.g. after divergence)
  -> SelectKBest by a rank-correlation F-score (at most MAX_FEATURES columns; keeps the models
     fast and the small-sample fits from drowning in thousands of graph columns)
  -> QuantileTransformer to a normal distribution (rank-based: the extreme values of diverging
     runs cannot dominate; a ridge on raw graph features gave R2 of -800 in the first probe).

Models:
  Classifiers weight the classes to balance: grouped folds hold uneven shares of good runs, and an
  unweighted model shrunk towards its training fold's base rate calls every run of a fold bad.
  linear: RidgeCV / L2 LogisticRegressionCV; the penalty is chosen by an inner grouped CV over
          the training configurations only (never on the test fold). With fewer than 2 training
          configurations the penalty is fixed (FALLBACK_ALPHA).
  hgb:    HistGradientBoosting with fixed hyper-parameters (no tuning at all).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.feature_selection import SelectKBest, f_regression
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import QuantileTransformer

from ..vocabulary import FITTED_PREDICTORS, Predictor, Task

MAX_FEATURES = 64
ALPHAS = np.logspace(-2, 4, 7)
FALLBACK_ALPHA = 10.0
INNER_FOLDS = 3
HGB_PARAMS = dict(max_iter=100, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=3,
                  l2_regularization=1.0, early_stopping=False, random_state=0)


def rank_f_score(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F-test of each column's rank correlation with y (Spearman; robust to extreme values).

    Constant columns score 0; numpy's warning about their zero norm is silenced."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return f_regression(rankdata(X, axis=0), y, force_finite=True)


def inner_splits(task: str, y: np.ndarray, groups: np.ndarray) -> list | None:
    """Grouped (and for classification stratified) splits of the training rows, or None if too few groups."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        return None
    folds = min(INNER_FOLDS, n_groups)
    splitter = StratifiedGroupKFold(folds) if task == Task.CLASSIFICATION else GroupKFold(folds)
    with warnings.catch_warnings():  # few configurations per class is the normal case here, not news
        warnings.filterwarnings("ignore", message="The least populated class")
        try:
            splits = list(splitter.split(np.zeros(len(y)), y, groups))
        except ValueError:  # a class with fewer members than folds: no inner CV, fixed penalty
            return None
    if task == Task.CLASSIFICATION and any(len(np.unique(y[train])) < 2 for train, _ in splits):
        return None
    return splits


def _model(predictor: str, task: str, splits: list | None):
    if predictor == Predictor.HGB:
        if task == Task.REGRESSION:
            return HistGradientBoostingRegressor(**HGB_PARAMS)
        return HistGradientBoostingClassifier(**HGB_PARAMS, class_weight="balanced")
    if predictor != Predictor.LINEAR:
        raise ValueError(f"unknown predictor {predictor!r}; known: {', '.join(FITTED_PREDICTORS)}")
    if task == Task.REGRESSION:
        return RidgeCV(alphas=ALPHAS, cv=splits) if splits else Ridge(alpha=FALLBACK_ALPHA)
    if splits:
        return LogisticRegressionCV(Cs=1.0 / ALPHAS, cv=splits, l1_ratios=(0.0,), scoring="neg_log_loss",
                                    class_weight="balanced", max_iter=5000, use_legacy_attributes=False)
    return LogisticRegression(C=1.0 / FALLBACK_ALPHA, class_weight="balanced", max_iter=5000)


def make_predictor(predictor: str, task: str, n_train: int, n_features: int, splits: list | None) -> Pipeline:
    """A fresh Pipeline for one fit on n_train rows of n_features columns."""
    if task not in tuple(Task):
        raise ValueError(f"unknown task {task!r}; known: {', '.join(Task)}")
    return Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("select", SelectKBest(rank_f_score, k=min(MAX_FEATURES, n_features))),
        ("rank", QuantileTransformer(n_quantiles=max(2, min(100, n_train)), output_distribution="normal")),
        ("model", _model(predictor, task, splits)),
    ])
