"""The graph-metrics flow end to end: a tiny trained study through Prefect into Parquet and DuckDB.
The runs are trained in-process (tests/test_train_sweep_flow.py covers the training flow)."""
import polars as pl
import pytest

from flows.graph_metrics import graph_metrics
from pipeline_lib.graphs.summaries import STATISTICS
from pipeline_lib.layout import DataLayout
from tests.conftest import train_in_process, write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

# LeNet on digits: 1 + 3 + 8 + 60 + 42 + 10 nodes at width 0.5, 1 + 6 + 16 + 120 + 84 + 10 at width 1
NODES = {0.5: 124, 1.0: 237}


def test_graph_stage_end_to_end(tmp_path, prefect_harness):
    spec = write_spec(tmp_path, epochs=2, samples=1, predict={"k_epochs": [1], "n_folds": 2},
                      graphs={"exact_limit": 200, "pivots": 16})
    wh_path = tmp_path / "w.duckdb"
    wh = Warehouse(wh_path)
    train_in_process(spec, wh)
    snapshots = wh.query("SELECT run_id, epoch, path FROM snapshots ORDER BY run_id, epoch")
    n = snapshots.height  # 4 runs x 3 snapshots
    corrupted = snapshots.row(4, named=True)
    original = open(corrupted["path"], "rb").read()
    with open(corrupted["path"], "wb") as f:
        f.write(b"not parquet")

    counts = graph_metrics(str(spec), str(wh_path))
    assert counts == {"computed": n - 1, "failed": 1, "skipped": 0}
    graphs = wh.query("""SELECT g.*, r.width FROM graphs g JOIN runs r USING (run_id) ORDER BY run_id, epoch""")
    assert graphs.height == n
    failed = graphs.filter(pl.col("error").is_not_null())
    assert failed.select("run_id", "epoch").row(0) == (corrupted["run_id"], corrupted["epoch"])
    assert not DataLayout(wh.data_dir).node_metrics(corrupted["run_id"], corrupted["epoch"]).exists()
    ok = graphs.filter(pl.col("error").is_null())
    assert ok["nodes"].to_list() == [NODES[w] for w in ok["width"]]
    assert (ok["edges"] > 0).all() and (ok["seconds"] > 0).all() and (ok["perron_value"] > 0).all()
    assert ok["pivots"].to_list() == [16 if w == 1.0 else 0 for w in ok["width"]]  # 237 nodes > exact_limit

    # summaries: 1 graph + 4 depth bins + 6 layers scopes, 10 properties, 10 statistics per snapshot
    per_snapshot = wh.query("SELECT run_id, epoch, count(*) AS n FROM graph_summaries GROUP BY ALL")
    assert per_snapshot.height == n - 1 and set(per_snapshot["n"]) == {11 * 10 * len(STATISTICS)}

    # the node_metrics view reads the Parquet; its aggregates agree with the stored statistics
    nodes = wh.query("SELECT count(*) AS n FROM node_metrics")["n"][0]
    assert nodes == ok["nodes"].sum()
    check = wh.query("""
        SELECT s.value AS stored, (SELECT quantile_cont(eigenvector, 0.9) FROM node_metrics m
                                   WHERE m.run_id = s.run_id AND m.epoch = s.epoch AND m.layer = 4) AS recomputed
        FROM graph_summaries s WHERE s.scope = 'layer:4' AND s.property = 'eigenvector' AND s.statistic = 'q90'""")
    assert check.height == n - 1
    assert (check["stored"] - check["recomputed"]).abs().max() < 1e-9

    # a re-run skips what is done and retries the failure; a repaired snapshot then completes
    mtimes = {p: p.stat().st_mtime_ns for p in (wh.data_dir / "node_metrics").glob("*/*/nodes.parquet")}
    assert graph_metrics(str(spec), str(wh_path)) == {"computed": 0, "failed": 1, "skipped": n - 1}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    with open(corrupted["path"], "wb") as f:
        f.write(original)
    assert graph_metrics(str(spec), str(wh_path)) == {"computed": 1, "failed": 0, "skipped": n - 1}
    assert wh.query("SELECT count(*) AS n FROM graphs WHERE error IS NULL")["n"][0] == n

    # recomputing everything replaces rows instead of adding them
    before = wh.query("SELECT count(*) AS n, sum(value) AS s FROM graph_summaries")
    assert graph_metrics(str(spec), str(wh_path), recompute=True) == {"computed": n, "failed": 0, "skipped": 0}
    after = wh.query("SELECT count(*) AS n, sum(value) AS s FROM graph_summaries")
    assert after["n"][0] == before["n"][0] == n * 11 * 10 * len(STATISTICS)
    assert after["s"][0] == pytest.approx(before["s"][0])
