"""How sure a registered predictor is: split-conformal intervals for the final accuracy and a
calibrated P(good), both learned from the study's OUT-OF-FOLD predictions (table `predictions`,
split cv), i.e. from models that never saw the runs they were judged on.

Intervals: crepes' ConformalRegressor over the out-of-fold absolute residuals (grouped folds, so a
residual is that of a configuration the model had not seen). The registered model is refitted on
all runs, so its errors on a new configuration are at most those of the fold models: the interval
is, if anything, slightly conservative (the CV+ argument).

Per-run intervals (normalized, Mondrian): given a difficulty estimate sigma per run (`difficulty`:
the mean |residual| of the k nearest calibration runs in the predictor's own feature space), each
residual is divided by its sigma, so a hard run gets a wide interval and an easy one a narrow one;
with `bins` (the architecture, where every bin has enough calibration runs: `mondrian_bins`) the
quantile is taken per bin. `p_above`: a run's chance of ending above a threshold, from crepes'
conformal predictive system on the same residuals (the stop rule with a stated miss rate).

P(good): classifiers weight classes to balance, so their raw scores are not probabilities. Platt
scaling (a logistic regression on the logit of the out-of-fold score) maps them to frequencies.
"""
from __future__ import annotations

import numpy as np
from crepes import ConformalPredictiveSystem, ConformalRegressor
from crepes.extras import DifficultyEstimator
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

SCORE_EPS = 1e-6  # keeps logit finite for scores of exactly 0 or 1


MIN_PER_BIN = 10  # calibration runs an architecture needs before it gets a quantile of its own


def conformal_intervals(residuals: np.ndarray, y_hat: np.ndarray, confidence: float,
                        sigmas: tuple[np.ndarray, np.ndarray] | None = None,
                        bins: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(low, high) per prediction, covering the true final accuracy with probability `confidence`
    for a run exchangeable with those the residuals came from; clipped to accuracies [0, 1].

    sigmas, bins: (of the calibration runs, of the predicted runs), from `difficulty` and
    `mondrian_bins`; without them one width for every run."""
    regressor = ConformalRegressor().fit(residuals=np.asarray(residuals, dtype=np.float64),
                                         sigmas=None if sigmas is None else sigmas[0],
                                         bins=None if bins is None else bins[0])
    return regressor.predict_int(y_hat=np.asarray(y_hat, dtype=np.float64), confidence=confidence,
                                 sigmas=None if sigmas is None else sigmas[1], bins=None if bins is None else bins[1],
                                 y_min=0.0, y_max=1.0)


def difficulty(X_calibration: np.ndarray, residuals: np.ndarray, X: np.ndarray, neighbours: int = 5
               ) -> tuple[np.ndarray, np.ndarray]:
    """(sigma of each calibration run, sigma of each run of X): the mean |residual| of the k nearest
    calibration runs (crepes' DifficultyEstimator; a calibration run's own residual left out)."""
    k = max(1, min(neighbours, len(residuals) - 1))
    estimator = DifficultyEstimator().fit(X=np.asarray(X_calibration, dtype=np.float64),
                                          residuals=np.asarray(residuals, dtype=np.float64), k=k, oob=True)
    return estimator.apply(), estimator.apply(np.asarray(X, dtype=np.float64))


def mondrian_bins(calibration: np.ndarray, predicted: np.ndarray, min_per_bin: int = MIN_PER_BIN
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Category labels (architectures) as crepes bins when every category of the predicted runs has
    at least `min_per_bin` calibration runs and there are two or more; None (one pooled bin) otherwise."""
    calibration, predicted = np.asarray(calibration), np.asarray(predicted)
    labels, counts = np.unique(calibration, return_counts=True)
    enough = dict(zip(labels, counts >= min_per_bin))
    if len(labels) < 2 or not all(enough.get(c, False) for c in np.unique(predicted)):
        return None
    return calibration, predicted


def p_above(residuals: np.ndarray, y_hat: np.ndarray, threshold: float,
            sigmas: tuple[np.ndarray, np.ndarray] | None = None,
            bins: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Per prediction, the conformal predictive probability that the final accuracy exceeds `threshold`."""
    system = ConformalPredictiveSystem().fit(residuals=np.asarray(residuals, dtype=np.float64),
                                             sigmas=None if sigmas is None else sigmas[0],
                                             bins=None if bins is None else bins[0])
    below = system.predict(y_hat=np.asarray(y_hat, dtype=np.float64), sigmas=None if sigmas is None else sigmas[1],
                           bins=None if bins is None else bins[1], y=threshold, smoothing=False)
    return 1.0 - np.asarray(below, dtype=np.float64).ravel()


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
