"""The prediction flows through Prefect on the small real study: features -> evaluate ->
width_transfer -> report, numbers checked against direct scikit-learn/scipy computation, and an
idempotent re-run."""
import base64
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prefect.artifacts import Artifact
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_absolute_error, r2_score, roc_auc_score

from flows.evaluate import evaluate
from flows.features import features
from flows.report import report
from flows.width_transfer import width_transfer
from pipeline_lib.features import BASE_SETS, FEATURE_SETS
from pipeline_lib.report.tables import interval

pytestmark = pytest.mark.slow


def _direct(task, rows):
    y, p = rows["y_true"].to_numpy(), rows["y_pred"].to_numpy()
    if task == "classification":
        out = {"accuracy": accuracy_score(y, p), "balanced_accuracy": balanced_accuracy_score(y, p)}
        if len(np.unique(y)) > 1:
            out["roc_auc"] = roc_auc_score(y, rows["score"].to_numpy())
        return out
    out = {"mae": mean_absolute_error(y, p)}
    if len(np.unique(y)) > 1:
        out["r2"] = r2_score(y, p)
        ranked = len(np.unique(p)) > 1
        out["kendall_tau"] = kendalltau(y, p).statistic if ranked else 0.0
        out["spearman_rho"] = spearmanr(y, p).statistic if ranked else 0.0
    return out


@pytest.fixture(scope="module")
def flowed(small_study, tmp_path_factory, prefect_harness):
    spec, wh = str(small_study.spec), str(small_study.warehouse.path)
    reports = tmp_path_factory.mktemp("reports")
    results = {"features": features(spec, wh), "evaluate": evaluate(spec, wh), "width": width_transfer(spec, wh),
               "report": report(spec, wh, str(reports))}
    return small_study, results, reports


def test_features_cover_every_run_set_and_k(flowed):
    small, results, _ = flowed
    keys = small.warehouse.query("SELECT k, feature_set, count(DISTINCT run_id) AS runs FROM features GROUP BY ALL")
    n_runs = small.warehouse.query("SELECT count(*) AS n FROM runs")["n"][0]
    assert keys.height == len(BASE_SETS) * len(small.study.predict.k_epochs)
    assert (keys["runs"] == n_runs).all()


def test_stored_metrics_equal_direct_computation(flowed):
    small, results, _ = flowed
    wh = small.warehouse
    preds = wh.query("SELECT * FROM predictions WHERE split = 'cv'")
    evals = wh.query("SELECT * FROM evaluations")
    units = preds.select("task", "predictor", "feature_set", "k").unique()
    assert units.height == 2 * 2 * len(FEATURE_SETS) * 2 + 2 * 2  # + the seed agreement per task and k
    assert evals.filter(pl.col("split").str.starts_with("cv:") | pl.col("split").str.starts_with("leave_out:")).is_empty()
    comparisons = wh.query("SELECT * FROM comparisons")
    assert comparisons.height == 2 * 2 * 2 * len(FEATURE_SETS) * (len(FEATURE_SETS) - 1) * 3.5  # reg 4 + cls 3 metrics
    checked = 0
    for task, predictor, fs, k in units.iter_rows():
        rows = preds.filter((pl.col("task") == task) & (pl.col("predictor") == predictor)
                            & (pl.col("feature_set") == fs) & (pl.col("k") == k))
        per_fold = [_direct(task, r) for _, r in rows.group_by("fold")]
        stored = evals.filter((pl.col("task") == task) & (pl.col("predictor") == predictor)
                              & (pl.col("feature_set") == fs) & (pl.col("k") == k))
        for metric in {m for f in per_fold for m in f}:
            values = [f[metric] for f in per_fold if metric in f]
            cv = stored.filter((pl.col("split") == "cv") & (pl.col("metric") == metric))
            assert cv["mean"][0] == pytest.approx(np.mean(values), abs=1e-9), (task, predictor, fs, k, metric)
            assert cv["std"][0] == pytest.approx(np.std(values), abs=1e-9)
            assert cv["folds"][0] == len(values)
            checked += 1
        # the leading number: every out-of-fold prediction pooled, inside its bootstrap interval
        for metric, value in _direct(task, rows).items():
            row = stored.filter((pl.col("split") == "cv") & (pl.col("metric") == metric)).row(0, named=True)
            assert row["value"] == pytest.approx(value, abs=1e-9), (task, predictor, fs, k, metric)
            assert row["n"] == rows.height and row["configs"] == 7
            assert row["low"] <= row["value"] + 1e-9 and row["value"] - 1e-9 <= row["high"]
    assert checked > 100
    # out-of-fold: every run predicted exactly once per unit, in its own configuration's fold
    runs = wh.query("SELECT run_id, config_id FROM runs")
    per_unit = preds.group_by("task", "predictor", "feature_set", "k").agg(pl.col("run_id").n_unique(), pl.len())
    assert (per_unit["run_id"] == runs.height).all() and (per_unit["len"] == runs.height).all()
    folds = preds.join(runs, on="run_id").group_by("config_id").agg(pl.col("fold").n_unique())
    assert (folds["fold"] == 1).all()


def test_width_transfer_rows_have_the_right_widths(flowed):
    small, _, _ = flowed
    wh, wt = small.warehouse, small.study.width_transfer
    preds = wh.query("SELECT p.split, p.feature_set, p.k, r.width FROM predictions p JOIN runs r USING (run_id)"
                     " WHERE p.split LIKE 'width_transfer%'")
    forward = preds.filter(pl.col("split") == "width_transfer")
    reverse = preds.filter(pl.col("split") == "width_transfer_reverse")
    assert set(forward["width"]) == set(wt.test_widths) and set(reverse["width"]) == set(wt.train_widths)
    evals = wh.query("SELECT DISTINCT split, feature_set, k FROM evaluations WHERE split LIKE 'width_transfer%'")
    expected = {(s, fs, k) for s in ("width_transfer", "width_transfer_reverse")
                for fs in [*FEATURE_SETS, "seed_agreement"] for k in small.study.predict.k_epochs}
    assert set(evals.iter_rows()) == expected


def test_report_and_costs(flowed):
    small, results, reports = flowed
    text = Path(results["report"]["path"]).read_text()
    for figure in ("metric_vs_k.png", "predicted_vs_true.png", "width_transfer.png", "compute_saving.png"):
        assert (reports / small.study.name / figure).stat().st_size > 5000
        assert figure in text
    evals = small.warehouse.query("SELECT * FROM evaluations WHERE split = 'cv' AND predictor = ? "
                                  "AND feature_set = 'graph' AND metric = 'kendall_tau' AND k = 1",
                                  [results["report"]["predictor"]])
    assert interval(*evals.select("value", "low", "high").row(0)) in text  # the table quotes the warehouse
    # 7 configurations: the guard speaks instead of verdicts, in the report and in the flow's result
    assert "Conclusions are not possible for this study: only 7 configurations" in text
    assert results["report"]["verdict"][0].startswith("Conclusions are not possible")
    assert "grouped 3-fold cross-validation" in text  # the folds actually used
    artifacts = {key: Artifact.get(f"predict-small-{key}") for key in ("report", "summary", "costs", "width-transfer")}
    assert all(artifacts.values())
    assert "graph+learning_curve" in str(artifacts["summary"].data)
    embedded = artifacts["report"].data  # the report's text with its figures inlined (a UI cannot follow files)
    assert embedded == results["report"]["markdown"] != text
    for figure in ("metric_vs_k.png", "predicted_vs_true.png", "width_transfer.png", "compute_saving.png"):
        assert base64.b64encode((reports / small.study.name / figure).read_bytes()).decode() in embedded
    costs = small.warehouse.query("SELECT * FROM costs")
    assert set(costs["strategy"]) == {"train_all", "early_stopping", "predict_then_finish"}
    assert costs.filter(pl.col("strategy") == "train_all")["fraction"].to_list() == [pytest.approx(1.0)]


def test_rerun_does_nothing(flowed):
    small, results, reports = flowed
    spec, wh = str(small.spec), str(small.warehouse.path)
    before = {t: small.warehouse.query(f"SELECT * FROM {t} ORDER BY ALL") for t in ("features", "evaluations", "costs")}
    assert features(spec, wh) == {}
    assert evaluate(spec, wh) == {"up_to_date": True}
    assert width_transfer(spec, wh) == {"up_to_date": True}
    for table, frame in before.items():
        assert small.warehouse.query(f"SELECT * FROM {table} ORDER BY ALL").equals(frame), table
