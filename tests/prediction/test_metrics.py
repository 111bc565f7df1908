"""Pooled metrics, configuration-bootstrap intervals, paired verdicts, TSE and the degenerate-study
guard, on synthetic prediction tables (no training) checked against scipy, scikit-learn and hand
computation."""
import numpy as np
import polars as pl
import pytest
from scipy.stats import bootstrap, kendalltau, spearmanr
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, mean_absolute_error, r2_score,
                             roc_auc_score)

from pipeline_lib.features.curves import tse_features
from pipeline_lib.prediction.guard import degenerate_reasons
from pipeline_lib.prediction.metrics import (METRICS, comparison_table, config_bootstrap, evaluation_table,
                                             weighted_metrics)


def test_weighted_metrics_equal_the_libraries_on_the_repeated_rows():
    rng = np.random.default_rng(4)
    y = np.round(rng.uniform(0, 1, 30), 1)  # ties in truth and prediction
    pred = np.round(y + rng.normal(0, 0.3, 30), 1)
    for w in (np.ones(30), rng.integers(0, 4, 30).astype(float)):
        rows = np.repeat(np.arange(30), w.astype(int))
        got = dict(zip(METRICS["regression"], weighted_metrics("regression", w[None], y, pred)[:, 0]))
        yr, pr = y[rows], pred[rows]
        assert got["kendall_tau"] == pytest.approx(kendalltau(yr, pr).statistic)
        assert got["spearman_rho"] == pytest.approx(spearmanr(yr, pr).statistic)
        assert got["r2"] == pytest.approx(r2_score(yr, pr))
        assert got["mae"] == pytest.approx(mean_absolute_error(yr, pr))
        good, called, score = (y > 0.5).astype(float), (pred > 0.5).astype(float), pred
        got = dict(zip(METRICS["classification"], weighted_metrics("classification", w[None], good, called, score)[:, 0]))
        assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(good[rows], called[rows]))
        assert got["accuracy"] == pytest.approx(accuracy_score(good[rows], called[rows]))
        assert got["roc_auc"] == pytest.approx(roc_auc_score(good[rows], score[rows]))
    constant = weighted_metrics("regression", np.ones((1, 30)), y, np.full(30, 0.5))[:, 0]
    assert constant[0] == 0.0 and constant[1] == 0.0  # a constant prediction orders nothing


def _study(configs: int, seeds: int, noise: dict[str, float], rng, seed_noise: float = 0.0) -> pl.DataFrame:
    """Prediction rows of a synthetic study: per configuration a true accuracy, per seed a copy
    (plus seed_noise), per feature set a prediction = truth + noise of that set's size."""
    truth = rng.uniform(0.2, 0.9, configs)
    rows = []
    for c in range(configs):
        for s in range(seeds):
            y = truth[c] + rng.normal(0, seed_noise) if seed_noise else truth[c]
            for fs, sd in noise.items():
                rows.append({"task": "regression", "predictor": "linear", "feature_set": fs, "k": 1, "split": "cv",
                             "run_id": f"c{c}-s{s}", "config_id": f"c{c}", "fold": c % 5, "y_true": y,
                             "y_pred": y + rng.normal(0, sd), "score": None})
    return pl.DataFrame(rows, schema_overrides={"score": pl.Float64})


def _split(frame):
    return frame.drop("config_id"), frame.select("run_id", "config_id").unique()


def test_pooled_value_is_scipy_and_the_interval_resamples_configurations():
    rng = np.random.default_rng(0)
    one = _study(20, 1, {"a": 0.1}, rng)
    # the same study with every run's seed duplicated exactly: resampling configurations sees the
    # same study (tau-b, rho, R2 and MAE do not move when every row is doubled), resampling runs would not
    two = pl.concat([one, one.with_columns(pl.col("run_id") + "-twin")])
    ev1, ev2 = (evaluation_table(*_split(f)) for f in (one, two))
    tau1, tau2 = (e.filter(pl.col("metric") == "kendall_tau").row(0, named=True) for e in (ev1, ev2))
    assert tau1["value"] == pytest.approx(kendalltau(one["y_true"], one["y_pred"]).statistic)
    assert (tau2["value"], tau2["low"], tau2["high"]) == pytest.approx((tau1["value"], tau1["low"], tau1["high"]))
    assert tau2["configs"] == 20 and tau2["n"] == 40
    # control: a bootstrap over runs treats the twins as independent and is narrower
    y, p = two["y_true"].to_numpy(), two["y_pred"].to_numpy()
    runs = bootstrap((np.arange(40),), lambda i: kendalltau(y[i], p[i]).statistic, n_resamples=1000,
                     method="percentile", random_state=np.random.default_rng(0)).confidence_interval
    assert runs.high - runs.low < 0.8 * (tau2["high"] - tau2["low"])
    assert tau1["low"] < tau1["value"] < tau1["high"]


def test_config_bootstrap_is_seeded():
    groups = np.repeat(np.arange(10), 3)
    values = np.random.default_rng(1).normal(size=30)
    stat = lambda W: (W @ values / W.sum(1))[None]  # noqa: E731
    assert np.array_equal(config_bootstrap(groups, stat), config_bootstrap(groups, stat))
    assert not np.array_equal(config_bootstrap(groups, stat), config_bootstrap(groups, stat, seed=1))


def _verdict(frame, a, b, metric="kendall_tau"):
    rows = comparison_table(*_split(frame)).filter((pl.col("feature_set") == a) & (pl.col("baseline") == b)
                                                   & (pl.col("metric") == metric))
    return rows.row(0, named=True)


def test_verdicts_follow_the_paired_interval():
    rng = np.random.default_rng(2)
    same = _study(24, 2, {"a": 0.15, "b": 0.15}, rng, seed_noise=0.02)
    row = _verdict(same, "a", "b")
    assert row["low"] < 0 < row["high"] and row["verdict"] == "no detectable difference"
    real = _study(24, 2, {"sharp": 0.02, "blurred": 0.4}, rng, seed_noise=0.02)
    row = _verdict(real, "sharp", "blurred")
    assert row["low"] > 0 and row["verdict"] == "beats"
    assert row["difference"] == pytest.approx(
        kendalltau(*real.filter(pl.col("feature_set") == "sharp").select("y_true", "y_pred")).statistic
        - kendalltau(*real.filter(pl.col("feature_set") == "blurred").select("y_true", "y_pred")).statistic)
    assert _verdict(real, "blurred", "sharp")["verdict"] == "is beaten by"
    assert _verdict(real, "sharp", "blurred", "mae")["verdict"] == "beats"  # lower error wins


def test_tse_is_the_sum_of_training_losses():
    losses = {0: 2.3, 1: 1.5, 2: 1.0, 3: 0.8, 4: 0.7}
    em = pl.DataFrame({"run_id": ["r"] * 5 + ["d"] * 5, "epoch": list(losses) * 2,
                       "train_loss": list(losses.values()) + [2.3, 1.9, float("nan"), None, None]})
    runs = pl.DataFrame({"run_id": ["r", "d"], "diverged_epoch": [None, 2]})
    tse = dict(tse_features(runs, em, 3).filter(pl.col("feature") == "tse").select("run_id", "value").iter_rows())
    assert tse["r"] == pytest.approx(1.5 + 1.0 + 0.8) and tse["d"] is None
    ema = dict(tse_features(runs, em, 3, 0.9).filter(pl.col("feature") == "tse_ema").select("run_id", "value").iter_rows())
    assert ema["r"] == pytest.approx(0.81 * 1.5 + 0.9 * 1.0 + 0.8)


def test_degenerate_guard():
    rng = np.random.default_rng(3)
    chance = pl.DataFrame({"config_id": [f"c{i % 8}" for i in range(16)],
                           "final_acc": [0.1] * 14 + [0.6, 0.7]})
    reasons = degenerate_reasons(chance, 0.1)
    assert any("of the runs ended within" in r for r in reasons) and any("interquartile" in r for r in reasons)
    healthy = pl.DataFrame({"config_id": [f"c{i % 12}" for i in range(48)], "final_acc": rng.uniform(0.5, 0.9, 48)})
    assert degenerate_reasons(healthy, 0.1) == []
    assert degenerate_reasons(healthy.filter(pl.col("config_id").is_in(["c1", "c2", "c3"])), 0.1) == [
        "only 3 configurations (at least 8 are needed)"]


def test_top_kept_counts_the_true_top_runs_a_keep_rule_keeps():
    from pipeline_lib.prediction.metrics import top_kept

    truth = np.arange(16, dtype=float)  # run 15 is best
    perfect = truth.copy()
    assert top_kept(perfect, truth, 1 / 8) == 2 / 5  # keeps 2 of 16: the two best
    assert top_kept(perfect, truth, 1 / 4) == 4 / 5
    reversed_ = -truth
    assert top_kept(reversed_, truth, 1 / 4) == 0.0
    lost = perfect.copy()
    lost[15] = np.nan  # the best run has no score: it ranks last and is dropped
    assert top_kept(lost, truth, 1 / 8) == 2 / 5  # runs 14 and 13 kept; 15 lost
    assert top_kept(lost, truth, 1 / 16) == 1 / 5
