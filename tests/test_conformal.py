"""Per-run conformal intervals (normalized by a difficulty estimate, Mondrian by architecture) and the
conformal chance of ending above a threshold, on synthetic data with a known noise level per run."""
from __future__ import annotations


import numpy as np

from pipeline_lib.decisions.uncertainty import conformal_intervals, difficulty, mondrian_bins, p_above

CONFIDENCE = 0.9


def _heteroscedastic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x in [0.2, 0.8], final accuracy y = x + noise whose sd grows from 0.002 to 0.05 with x."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.8, n)
    sd = 0.002 + 0.08 * (x - 0.2)
    return x, sd, x + rng.normal(0, sd)


def test_normalized_widths_follow_difficulty_and_coverage_holds():
    x, _, y = _heteroscedastic(1000, 0)              # calibration: the prediction is x itself
    x_new, sd_new, y_new = _heteroscedastic(4000, 1)
    sigmas = difficulty(x.reshape(-1, 1), y - x, x_new.reshape(-1, 1), neighbours=25)
    band = conformal_intervals(y - x, x_new, CONFIDENCE, sigmas=sigmas)
    width = band[:, 1] - band[:, 0]
    covered = (band[:, 0] <= y_new) & (y_new <= band[:, 1])
    assert np.corrcoef(width, sd_new)[0, 1] > 0.8               # hard runs wide, easy runs narrow
    assert width[sd_new > 0.04].mean() > 3 * width[sd_new < 0.01].mean()
    assert abs(covered.mean() - CONFIDENCE) < 0.025              # 4000 runs: sd of the coverage ~0.005
    # unnormalized: one width for every run, coverage poor where the noise is large
    flat = conformal_intervals(y - x, x_new, CONFIDENCE)
    assert np.ptp(flat[:, 1] - flat[:, 0]) < 1e-12
    hard = sd_new > 0.04
    assert ((flat[hard, 0] <= y_new[hard]) & (y_new[hard] <= flat[hard, 1])).mean() < 0.8


def test_mondrian_bins_cover_each_architecture():
    rng = np.random.default_rng(2)
    arch = np.array(["lenet", "resnet"])[rng.integers(0, 2, 3000)]
    sd = np.where(arch == "lenet", 0.01, 0.05)
    y_hat = rng.uniform(0.3, 0.7, 3000)
    y = y_hat + rng.normal(0, sd)
    bins = mondrian_bins(arch[:1000], arch[1000:])
    assert bins is not None
    band = conformal_intervals(y[:1000] - y_hat[:1000], y_hat[1000:], CONFIDENCE, bins=bins)
    for name in ("lenet", "resnet"):
        held = arch[1000:] == name
        got = ((band[held, 0] <= y[1000:][held]) & (y[1000:][held] <= band[held, 1])).mean()
        assert abs(got - CONFIDENCE) < 0.035, name
    # too few calibration runs of one architecture: one pooled bin
    assert mondrian_bins(np.array(["lenet"] * 20 + ["resnet"] * 3), np.array(["resnet"])) is None


def test_p_above_is_the_share_of_calibration_residuals_above_the_gap():
    # independent reference: with n residuals, P(y_hat + e > t) is the share of residuals above t - y_hat,
    # within the 1/(n+1) of the conformal predictive system's ranks
    residuals = np.random.default_rng(4).normal(0, 0.05, 199)
    y_hat = np.array([0.5, 0.55, 0.6, 0.7])
    got = p_above(residuals, y_hat, 0.6)
    expected = np.array([(residuals > 0.6 - h).mean() for h in y_hat])
    assert np.abs(got - expected).max() <= 1 / (len(residuals) + 1) + 1e-12
    assert p_above(residuals, np.array([5.0]), 0.6)[0] >= 1 - 1 / (len(residuals) + 1) - 1e-12  # never certain
