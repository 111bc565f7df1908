"""The main job end to end through Prefect on a tiny spec: train, graphs, features, predictors,
width transfer, registry and its decision path's cost, report; then a re-run that finds everything done,
and the replay stage on the finished study."""
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

import flows.replay as replay_flow  # noqa: E402  (an import error must fail the test, not skip it)
import flows.report as report_flow  # noqa: E402
import flows.study as study_flow  # noqa: E402
from pipeline_lib.features import BASE_SETS  # noqa: E402
from pipeline_lib.graphs.properties import PROPERTIES  # noqa: E402
from warehouse.registry import registered, registered_source  # noqa: E402


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
    source = registered_source(wh, predictors["id"][0])
    model, row = source.model, source.row
    assert len(row["features"]) == model.n_features_in_

    # the decision path's costs: per k a predictor reading a strict subset of the graph quantities (the
    # graph predictors keep at most 64 of thousands of columns), cheaper than every property on the same
    # snapshots when it skips the Dijkstra-based ones; its fraction is its seconds over the recorded
    # training of every run, counted here in SQL
    path = wh.query("SELECT * FROM costs WHERE strategy IN ('decision_path', 'graph_stage') ORDER BY k, strategy")
    assert set(path["k"]) == {1, 2} and path.filter(pl.col("strategy") == "graph_stage").height == 2
    counts = wh.query("""SELECT (SELECT sum(seconds) FROM epoch_metrics) AS train_all,
                                (SELECT avg(seconds) FROM epoch_metrics WHERE epoch >= 1) AS per_epoch,
                                (SELECT count(*) FROM snapshots WHERE epoch <= 1) AS to_1,
                                (SELECT count(*) FROM snapshots WHERE epoch <= 2) AS to_2""").row(0, named=True)
    for r in path.iter_rows(named=True):
        n = counts[f"to_{r['k']}"]
        assert r["seconds"] == pytest.approx(r["snapshot_seconds"] * n)
        assert r["fraction"] == pytest.approx(r["snapshot_seconds"] * n / counts["train_all"])
        assert r["epoch_seconds"] == pytest.approx(counts["per_epoch"]) and r["runs_to_end"] is None
    full = {r["k"]: r["snapshot_seconds"] for r in path.filter(pl.col("strategy") == "graph_stage").iter_rows(named=True)}
    graph_paths = path.filter((pl.col("strategy") == "decision_path") & (pl.col("properties").list.len() > 0))
    assert graph_paths.height >= 2  # the best graph predictor of each k
    for r in graph_paths.iter_rows(named=True):
        assert set(r["properties"]) < {*PROPERTIES, "perron_value"}, r
        if not {"closeness", "betweenness"} & set(r["properties"]):
            assert r["snapshot_seconds"] < full[r["k"]], r
    report_md = Path(results["report"]["path"]).read_text()
    assert "## Decisions" in report_md and "### The cost of the decision path" in report_md
    assert "No replay of stopping policies is stored" in report_md  # the replay is a stage of its own
    assert set(results["report"]["tables"]) >= {"registered", "decision_path"}

    # the UI shows each stage as a subflow of the study's run, named as when it runs alone
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        children = [r for r in client.read_flow_runs() if r.parent_task_run_id is not None]
        assert {client.read_flow(r.flow_id).name for r in children} >= {
            "train-sweep", "graph-metrics", "features", "evaluate", "width-transfer", "register", "report"}

    before = {t: wh.query(f"SELECT * FROM {t} ORDER BY ALL")
              for t in ("features", "evaluations", "predictions", "predictors", "costs")}
    again = study_flow.study(str(spec), wh_path, reports)
    assert again["graph_metrics"]["computed"] == 0 and again["features"] == {}
    assert again["evaluate"] == {"up_to_date": True} and again["width_transfer"] == {"up_to_date": True}
    assert again["register"] == {"up_to_date": True}
    for table_name, frame in before.items():
        assert wh.query(f"SELECT * FROM {table_name} ORDER BY ALL").equals(frame), table_name
    assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == n_runs
    assert pl.DataFrame(summary).equals(pl.DataFrame(again["report"]["summary"]))

    # the replay stage: its rows in `replays`, read (not recomputed) by the report
    out = replay_flow.replay(str(spec), wh_path, workers=2, random_orders=1, reports_dir=reports)
    rows = wh.query("SELECT * FROM replays WHERE study = 'tiny-study'")
    assert out["rows"] == rows.height and set(rows["order_index"]) == {0, 1}
    full = rows.filter(pl.col("policy") == "train_all")
    assert full["epochs_fraction"].to_list() == [1.0, 1.0] and full["regret"].to_list() == [0.0, 0.0]
    assert {"i_epoch", "online", "oracle", "MedianPruner", "triage"} <= set(rows["policy"])
    triage = rows.filter(pl.col("source") == "accuracy")  # the synchronous triage, rung lists below 3 epochs
    assert set(triage["policy"]) == {"triage"} and triage.height == 3 * 7 * 2
    assert {"rungs=1 keep=0.5", "rungs=1,2 reduction_factor=3"} <= set(triage["setting"])
    assert not rows.filter(pl.col("policy") == "oracle")["deployable"].any()
    assert (rows["epochs_fraction"] <= 1.0 + 1e-12).all() and (rows["regret"] >= 0).all()
    assert (Path(reports) / "tiny-study" / "replay.md").read_text().startswith("### Replayed stopping policies")
    report_md = Path(report_flow.report(str(spec), wh_path, reports)["path"]).read_text()
    assert "### Replayed stopping policies" in report_md and "![replay pareto](replay_pareto.png)" in report_md
