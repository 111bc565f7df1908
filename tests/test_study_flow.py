"""The main job end to end through Prefect on a tiny spec: train, graphs, features, predictors,
width transfer, registry, report; then a re-run that finds everything done."""
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

import flows.study as study_flow  # noqa: E402  (an import error must fail the test, not skip it)
from pipeline_lib.features import BASE_SETS  # noqa: E402
from warehouse.registry import load_predictor, registered  # noqa: E402


def test_study_end_to_end_and_rerun(tmp_path, prefect_harness):
    spec = write_spec(tmp_path, name="tiny-study", samples=4, epochs=3,
                      sweep={"lr": {"log_uniform": [0.003, 0.3]}, "batch_size": [64]},
                      predict={"k_epochs": [1, 2], "n_folds": 2}, graphs={"exact_limit": 200, "pivots": 8})
    wh_path, reports = str(tmp_path / "w.duckdb"), str(tmp_path / "reports")
    results = study_flow.study(str(spec), wh_path, reports)
    wh = Warehouse(wh_path)
    n_runs = wh.query("SELECT count(*) AS n FROM runs")["n"][0]
    assert results["train_sweep"] == {"completed": n_runs}
    assert results["graph_metrics"]["failed"] == 0
    assert set(results["features"]) == set(BASE_SETS)
    assert results["evaluate"]["runs"] == n_runs
    evals = wh.query("SELECT DISTINCT split, feature_set FROM evaluations")
    assert {"cv", "width_transfer", "width_transfer_reverse"} <= set(evals["split"])
    assert {"graph", "graph+learning_curve", "seed_agreement"} <= set(evals["feature_set"])
    summary = results["report"]["summary"]
    assert {(r["feature_set"], r["k"]) for r in summary} >= {("graph", 1), ("graph", 2), ("early_acc", 1)}
    table = study_flow.format_summary(summary, results["report"]["predictor"], results["report"]["verdict"])
    assert "graph+learning_curve" in table and "seed tau" in table
    assert Path(results["report"]["path"]).read_text().startswith("# Study `tiny-study`")
    predictors = registered(wh, "tiny-study")
    assert results["register"] == {"predictors": predictors.height} and predictors.height > 0
    model, row = load_predictor(wh, predictors["id"][0])
    assert len(row["features"]) == model.n_features_in_

    before = {t: wh.query(f"SELECT * FROM {t} ORDER BY ALL") for t in ("features", "evaluations", "predictions", "predictors")}
    again = study_flow.study(str(spec), wh_path, reports)
    assert again["graph_metrics"]["computed"] == 0 and again["features"] == {}
    assert again["evaluate"] == {"up_to_date": True} and again["width_transfer"] == {"up_to_date": True}
    assert again["register"] == {"up_to_date": True}
    for table_name, frame in before.items():
        assert wh.query(f"SELECT * FROM {table_name} ORDER BY ALL").equals(frame), table_name
    assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == n_runs
    assert pl.DataFrame(summary).equals(pl.DataFrame(again["report"]["summary"]))
