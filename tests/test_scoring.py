"""Acting on predictions: conformal intervals and calibrated P(good) from out-of-fold predictions,
and scoring the runs of a study (finished or still training) at epoch k with a registered predictor."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from scipy.special import expit, logit

from pipeline_lib.decisions.registry import fit_on_all
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.decisions.uncertainty import calibrated, conformal_intervals, fit_calibration
from pipeline_lib.prediction.evaluation import cross_validated_predictions, grouped_folds
from tests.conftest import add_runs, write_spec
from warehouse.db import Warehouse
from warehouse.registry import registered_source
from stages.score import score_study


def _conformal_half_width(residuals: np.ndarray, confidence: float) -> float:
    """Split conformal by hand: the ceil((n+1) c)-th smallest absolute residual."""
    ordered = np.sort(np.abs(residuals))
    return float(ordered[math.ceil((len(ordered) + 1) * confidence) - 1])


def _synthetic(rng, n_configs: int, seeds: int, offset: int = 0) -> tuple[np.ndarray, pl.DataFrame]:
    """Features x (3 normal columns, one irrelevant) of each configuration; final accuracy 0.5 + 0.15 x0 - 0.1 x1
    + a configuration effect (sd 0.02) + seed noise (sd 0.02): known noise, sd 0.028 in all."""
    x = rng.normal(0, 0.5, size=(n_configs, 3))  # normal: the rank-to-normal step keeps the model linear
    effect = rng.normal(0, 0.02, n_configs)
    X = np.repeat(x, seeds, axis=0)
    y = 0.5 + 0.15 * X[:, 0] - 0.1 * X[:, 1] + np.repeat(effect, seeds) + rng.normal(0, 0.02, len(X))
    config = np.repeat([f"c{offset + c}" for c in range(n_configs)], seeds)
    targets = pl.DataFrame({"run_id": [f"{c}s{i % seeds}" for i, c in enumerate(config)], "config_id": config,
                            "final_acc": y, "good": (y > 0.5).astype(np.int64)})
    return X, targets


@pytest.mark.parametrize("confidence", [0.9, 0.5])
def test_conformal_interval_covers_held_out_configurations(confidence):
    """Out-of-fold residuals of 60 configurations calibrate the model fitted on all of them; 400 new
    configurations are covered at the nominal rate within sampling error."""
    rng = np.random.default_rng(7)
    X, targets = _synthetic(rng, 60, 2)
    oof = cross_validated_predictions("regression", "linear", X, grouped_folds(targets, 5))
    residuals = (oof["y_true"] - oof["y_pred"]).to_numpy()
    model = fit_on_all("regression", "linear", X, targets)
    X_new, new = _synthetic(rng, 400, 2, offset=1000)
    interval = conformal_intervals(residuals, model.predict(X_new), confidence)

    half_width = _conformal_half_width(residuals, confidence)
    np.testing.assert_allclose(interval[:, 1] - model.predict(X_new), half_width, rtol=1e-9)
    if confidence == 0.9:  # about 1.645 noise sd (0.028) plus a little model error
        assert 0.035 < half_width < 0.07
    y = new["final_acc"].to_numpy()
    covered = (interval[:, 0] <= y) & (y <= interval[:, 1])
    # sampling error: the calibration set's 120 residuals (the conformal quantile's own spread) and
    # 400 configurations tested (seeds of one configuration share its effect: counted once)
    sd = math.sqrt(confidence * (1 - confidence) * (1 / 120 + 1 / 400))
    assert abs(covered.mean() - confidence) < 3 * sd, (covered.mean(), sd)


def test_calibration_recovers_known_probabilities():
    """Scores whose true P(good) is expit(3 logit(s) - 0.5): Platt scaling finds the map, and the
    calibrated probabilities match the observed frequencies bin by bin."""
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.05, 0.95, 4000)
    truth = expit(3 * logit(scores) - 0.5)
    good = rng.random(4000) < truth
    slope, intercept = fit_calibration(scores, good)
    assert abs(slope - 3) < 0.3 and abs(intercept + 0.5) < 0.15
    p = calibrated(scores, [slope, intercept])
    np.testing.assert_allclose(p, expit(slope * logit(scores) + intercept))
    for low in np.arange(0, 1, 0.2):
        in_bin = (p >= low) & (p < low + 0.2)
        assert abs(p[in_bin].mean() - good[in_bin].mean()) < 0.05


# --- scoring on a hand-built warehouse: study "tiny" (fitted), scored studies beside it ---------

K = 1


@pytest.fixture
def fitted(registered_tiny) -> Warehouse:
    """Study "tiny" registered at k = K (see `registered_warehouse`); the scored studies are added by the tests."""
    return registered_tiny


def _predictor(wh, **where) -> dict:
    rows = wh.query("SELECT * FROM predictors WHERE study = 'tiny' AND k = ?", [K])
    for column, value in where.items():
        rows = rows.filter(pl.col(column) == value)
    return rows.row(0, named=True)


def test_registration_keeps_residuals_and_calibration(fitted):
    wh = fitted
    reg = _predictor(wh, feature_set="early_acc", task="regression", predictor="linear")
    oof = wh.query("""SELECT y_true - y_pred AS r FROM predictions WHERE study = 'tiny' AND split = 'cv' AND k = ?
                      AND task = 'regression' AND predictor = 'linear' AND feature_set = 'early_acc' ORDER BY run_id""", [K])
    assert sorted(reg["oof_residuals"]) == pytest.approx(sorted(oof["r"]))
    assert reg["calibration"] is None
    cls = _predictor(wh, feature_set="early_acc", task="classification", predictor="linear")
    scored = wh.query("""SELECT score, y_true FROM predictions WHERE study = 'tiny' AND split = 'cv' AND k = ?
                         AND task = 'classification' AND predictor = 'linear' AND feature_set = 'early_acc'""", [K])
    assert cls["oof_residuals"] is None
    assert cls["calibration"] == pytest.approx(fit_calibration(scored["score"].to_numpy(), scored["y_true"].to_numpy()))


def test_scores_another_study_with_the_best_predictor_including_runs_still_training(fitted):
    wh = fitted
    add_runs(wh, "sweep-b", [0.1, 0.4, 0.7, 0.95], 2, width=0.5)  # a width tiny never trained: allowed
    add_runs(wh, "sweep-b", [0.55, 0.25], 1, last_epoch=1, status="pending")  # still training, at epoch 1
    add_runs(wh, "sweep-b", [0.8], 1, last_epoch=0, status="pending")  # not at epoch 1 yet: waits

    scores, plan = score_study(wh, "sweep-b", "best", K, confidence=0.9)

    taus = {r["id"]: json.loads(r["metrics_json"])["kendall_tau"]["value"]
            for r in wh.query("SELECT * FROM predictors WHERE task = 'regression' AND k = ?", [K]).iter_rows(named=True)}
    assert plan.source.id == max(taus, key=taus.get) and plan.waiting == 1
    runs = wh.query("SELECT * FROM runs WHERE study = 'sweep-b' AND epochs_done >= 1 ORDER BY run_id")
    assert sorted(scores["run_id"]) == runs["run_id"].to_list() and scores.height == 10

    # the same numbers, made here from the raw tables and the saved files
    model, row = plan.source.model, plan.source.row
    assert row["feature_set"] == "early_acc"  # early accuracy carries the quality; hparams draws lr at random
    acc1 = wh.query("SELECT run_id, test_acc FROM epoch_metrics WHERE epoch = 1 AND run_id IN (SELECT unnest(?))",
                    [runs["run_id"].to_list()])
    mine = runs.select("run_id").join(acc1, on="run_id", maintain_order="left").with_columns(pl.lit(0.0).alias("diverged_by_k"))
    assert row["features"] == ["diverged_by_k", "test_acc@k"]
    predicted = model.predict(mine.select("diverged_by_k", "test_acc").to_numpy())
    got = scores.sort("run_id")
    np.testing.assert_allclose(got["predicted"], predicted)
    half = _conformal_half_width(np.array(row["oof_residuals"]), 0.9)
    np.testing.assert_allclose(got["low"], np.clip(predicted - half, 0, 1))
    np.testing.assert_allclose(got["high"], np.clip(predicted + half, 0, 1))
    twin = registered_source(wh, _predictor(wh, feature_set="early_acc", task="classification",
                                            predictor=row["predictor"])["id"])
    classifier, twin = twin.model, twin.row
    raw = classifier.predict_proba(mine.select("diverged_by_k", "test_acc").to_numpy())[:, 1]
    slope, intercept = twin["calibration"]
    np.testing.assert_allclose(got["p_good"], expit(slope * logit(np.clip(raw, 1e-6, 1 - 1e-6)) + intercept))
    assert got.sort("rank")["predicted"].to_list() == sorted(predicted, reverse=True)

    # stored, and configurations ranked over their seeds
    stored = wh.query("SELECT * FROM scores WHERE study = 'sweep-b'")
    assert stored.height == 10 and set(stored["predictor_id"]) == {row["id"]} and set(stored["k"]) == {K}
    configs = wh.query("SELECT * FROM configuration_scores WHERE study = 'sweep-b' ORDER BY rank")
    expected = (got.join(runs.select("run_id", "config_id"), on="run_id").group_by("config_id")
                .agg(pl.col("predicted").mean()).sort("predicted", descending=True))
    assert configs["config_id"].to_list() == expected["config_id"].to_list()
    np.testing.assert_allclose(configs["mean_predicted"], expected["predicted"])
    assert configs["rank"].to_list() == list(range(1, 7))

    score_study(wh, "sweep-b", "best", K)  # scoring again replaces, never duplicates
    assert wh.query("SELECT count(*) AS n FROM scores WHERE study = 'sweep-b'")["n"][0] == 10


def test_refuses_what_it_cannot_score(fitted):
    wh = fitted
    best = _predictor(wh, feature_set="early_acc", task="regression", predictor="linear")["id"]
    add_runs(wh, "not-started", [0.5], 2, last_epoch=0, status="pending")
    with pytest.raises(ScoringError, match="no run of study 'not-started' has reached epoch 1 yet"):
        score_study(wh, "not-started", "best", K)
    add_runs(wh, "other-family", [0.5], 2, architecture="vgg")
    with pytest.raises(ScoringError, match=r"architecture \['vgg'\], but predictor .* fitted on architecture \['lenet'\] only"):
        score_study(wh, "other-family", best, K)
    with pytest.raises(ScoringError, match="no registered regression predictor at k = 1 .* architectures"):
        score_study(wh, "other-family", "best", K)
    add_runs(wh, "other-data", [0.5], 2, dataset="fashion_mnist")
    with pytest.raises(ScoringError, match=r"dataset \['fashion_mnist'\], but predictor"):
        score_study(wh, "other-data", best, K)
    with pytest.raises(ScoringError, match="k = 1; scoring at epoch 2 needs"):
        score_study(wh, "other-data", best, 2)
    # a graph predictor on runs whose graph stage never ran (refused before its file is opened)
    add_runs(wh, "no-graphs", [0.2, 0.6], 1)
    with wh.writer() as con:
        con.execute("""INSERT INTO predictors SELECT * REPLACE ('graphpred' AS id, 'graph_compact' AS feature_set)
                       FROM predictors WHERE id = ?""", [best])
    with pytest.raises(ScoringError, match="2 run.* lack processed graphs .* run flows.graph_metrics"):
        score_study(wh, "no-graphs", "graphpred", K)
    assert wh.query("SELECT count(*) AS n FROM scores WHERE study IN ('not-started', 'other-family', 'other-data', "
                    "'no-graphs')")["n"][0] == 0


def test_command_line_refuses_with_exit_2_and_no_traceback(fitted, tmp_path):
    spec = write_spec(tmp_path, name="other-family")
    done = subprocess.run([sys.executable, "-m", "flows.score", "--spec", str(spec), "--warehouse", str(fitted.path),
                           "--predictor", "best", "--at-epoch", str(K)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: no registered regression predictor") and "Traceback" not in done.stderr


def test_command_line_refuses_another_data_dir_than_the_study_s(fitted, tmp_path):
    """The scoring command opens the warehouse as every flow does: a spec asking for a data_dir other
    than the one the study owns is refused before Prefect starts."""
    with fitted.writer() as con:
        con.execute("INSERT OR REPLACE INTO studies VALUES ('owned', '{}', ?, now())", [str(tmp_path / "owned")])
    spec = write_spec(tmp_path, name="owned", execution={"data_dir": str(tmp_path / "elsewhere")})
    done = subprocess.run([sys.executable, "-m", "flows.score", "--spec", str(spec), "--warehouse", str(fitted.path),
                           "--predictor", "best", "--at-epoch", str(K)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "keeps its snapshots and node metrics in" in done.stderr and "Traceback" not in done.stderr
    assert "Starting temporary server" not in done.stdout + done.stderr


@pytest.mark.slow
def test_score_flow_writes_scores(fitted, tmp_path, prefect_harness):
    from flows.score import score

    add_runs(fitted, "flow-study", [0.3, 0.9], 2)
    result = score(str(write_spec(tmp_path, name="flow-study")), str(fitted.path), "best", K)
    stored = fitted.query("SELECT * FROM scores WHERE study = 'flow-study'")
    assert {k: result[k] for k in ("predictor", "scored", "waiting")} == \
        {"predictor": stored["predictor_id"][0], "scored": 4, "waiting": 0} and stored.height == 4


def test_command_line_scores_in_process_without_a_server(fitted, tmp_path):
    """No Prefect server configured: the command runs its stage in this process, starts no temporary
    server, imports no Prefect, and writes the same scores the flow writes (the flow's test below)."""
    add_runs(fitted, "cli-study", [0.2, 0.7], 2)
    spec = write_spec(tmp_path, name="cli-study")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    probe = ("import runpy, sys; sys.argv = ['flows.score'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('flows.score', run_name='__main__')\n"
             "finally:\n    print('prefect imported' if 'prefect' in sys.modules else 'no prefect', file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, "--spec", str(spec), "--warehouse", str(fitted.path),
                           "--predictor", "best", "--at-epoch", str(K)], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Starting temporary server" not in done.stdout + done.stderr
    assert done.stderr.strip().endswith("no prefect") and "scored 4 runs of cli-study at epoch" in done.stderr
    assert fitted.query("SELECT count(*) AS n FROM scores WHERE study = 'cli-study'")["n"][0] == 4


def test_a_server_is_configured_by_environment_prefect_toml_or_the_active_profile(tmp_path, monkeypatch):
    from flows._in_process import server_configured

    for name in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "prefect.toml").write_text('home = ".prefect"\n')
    assert not server_configured(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert server_configured(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL")
    (tmp_path / ".prefect").mkdir()
    (tmp_path / ".prefect" / "profiles.toml").write_text(
        'active = "local"\n[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    assert server_configured(tmp_path)
    (tmp_path / ".prefect" / "profiles.toml").write_text('active = "ephemeral"\n[profiles.ephemeral]\n')
    assert not server_configured(tmp_path)
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://127.0.0.1:4200/api"\n')
    assert server_configured(tmp_path)
