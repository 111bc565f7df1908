"""How sure a registered predictor is: split-conformal intervals for the final accuracy and a
calibrated P(good), both learned from the study's OUT-OF-FOLD predictions (table `predictions`,
split cv), i.e. from models that never saw the runs they were judged on.

Intervals: crepes' ConformalRegressor over the out-of-fold absolute residuals (grouped folds, so a
residual is that of a configuration the model had not seen). The registered model is refitted on
all runs, so its errors on a new configuration are at most those of the fold models: the interval
is, if anything, slightly conservative (the CV+ argument).

P(good): classifiers weight classes to balance, so their raw scores are not probabilities. Platt
scaling (a logistic regression on the logit of the out-of-fold score) maps them to frequencies.
"""
from __future__ import annotations

import numpy as np
from crepes import ConformalRegressor
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

SCORE_EPS = 1e-6  # keeps logit finite for scores of exactly 0 or 1


def conformal_intervals(residuals: np.ndarray, y_hat: np.ndarray, confidence: float) -> np.ndarray:
    """(low, high) per prediction, covering the true final accuracy with probability `confidence`
    for a run exchangeable with those the residuals came from; clipped to accuracies [0, 1]."""
    regressor = ConformalRegressor().fit(residuals=np.asarray(residuals, dtype=np.float64))
    return regressor.predict_int(y_hat=np.asarray(y_hat, dtype=np.float64), confidence=confidence,
                                 y_min=0.0, y_max=1.0)


def _logit(scores: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(scores, dtype=np.float64), SCORE_EPS, 1 - SCORE_EPS)).reshape(-1, 1)


def fit_calibration(scores: np.ndarray, good: np.ndarray) -> list[float]:
    """[slope, intercept] of Platt scaling fitted on out-of-fold scores and true labels (0/1)."""
    platt = LogisticRegression(C=1e6).fit(_logit(scores), np.asarray(good, dtype=np.int64))
    return [float(platt.coef_[0, 0]), float(platt.intercept_[0])]


def calibrated(scores: np.ndarray, calibration: list[float]) -> np.ndarray:
    """P(good) from a classifier's raw scores and its [slope, intercept]."""
    slope, intercept = calibration
    return expit(slope * _logit(scores).ravel() + intercept)
