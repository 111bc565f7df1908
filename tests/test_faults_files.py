"""Damaged files and a busy warehouse during a real tiny study (issue 13): each damaged file is
quarantined, recorded and its unit redone with the same result; a read-only connection held
during the graph stage loses no computed graph."""
from __future__ import annotations

import os
import subprocess
import sys

import polars as pl
import pytest

from flows.graph_metrics import graph_metrics
from flows.train_sweep import train_sweep
from pipeline_lib.features.weights import snapshot_weight_stats
from pipeline_lib.files import DamagedFile, atomic_write, quarantine_records
from pipeline_lib.layout import DataLayout
from pipeline_lib.progress import ProgressFile, epochs_reported
from pipeline_lib.snapshots import read_snapshot, read_snapshot_info, write_snapshot
from pipeline_lib.run_state import RunState, RunStore
from tests.conftest import write_spec
from warehouse.db import LOCK_TIMEOUT_ENV, Warehouse, WarehouseError
from warehouse.graphs import load_staged_graphs


SMALL = {"epochs": 2, "widths": [0.5], "seeds": [0], "samples": 2, "dataset": {"name": "digits", "subset": 200},
         "predict": {"k_epochs": [1], "n_folds": 2}, "width_transfer": {}, "graphs": {"exact_limit": 200}}


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _tables(wh: Warehouse) -> dict[str, pl.DataFrame]:
    return {"metrics": wh.query("SELECT * EXCLUDE (seconds) FROM epoch_metrics ORDER BY run_id, epoch"),
            "summaries": wh.query("SELECT * FROM graph_summaries ORDER BY ALL"),
            "nodes": wh.query("SELECT * FROM node_metrics ORDER BY run_id, epoch, node")}


def test_every_reader_of_a_damaged_snapshot_names_it(tmp_path):
    import torch

    path = write_snapshot({"w.weight": torch.ones(3, 2), "w.bias": torch.ones(3)}, tmp_path, "r", 1).path
    _truncate(path)
    for read in (read_snapshot, lambda p: read_snapshot_info(p, "r", 1), snapshot_weight_stats):
        with pytest.raises(DamagedFile, match=f"damaged file {path}: "):
            read(path)


def test_a_damaged_state_file_is_quarantined_and_the_run_starts_over(tmp_path):
    store = RunStore(tmp_path, "r")
    store.finish(RunState("completed", 3, None, 1.0, []))
    _truncate(store.path)
    assert store.load() is None and not store.path.exists()
    (moved,) = (tmp_path / "quarantine" / "runs" / "r").glob("state.pt.*[0-9]")
    assert moved.stat().st_size > 0


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write(path, lambda tmp: tmp.write_text("old"))

    def crash_midway(tmp):
        tmp.write_text("half of the n")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash_midway)
    assert path.read_text() == "old" and os.listdir(path.parent) == ["f.json"]


def test_a_damaged_progress_file_is_skipped_and_a_damaged_staged_batch_quarantined(tmp_path):
    ProgressFile(tmp_path / "progress" / "a.json").record("r1", 2)
    (tmp_path / "progress" / "b.json").write_text('{"r2": ')
    assert epochs_reported(tmp_path / "progress") == {"r1": 2}

    wh = Warehouse(tmp_path / "w.duckdb")
    staged = DataLayout(wh.data_dir).staged_graphs
    staged.mkdir(parents=True)
    pl.DataFrame({"run_id": ["r"]}).write_parquet(staged / "x.summaries.parquet")
    (staged / "x.graphs.parquet").write_bytes(b"PAR1 not parquet")
    assert load_staged_graphs(wh) == 0 and not list(staged.iterdir())
    records = quarantine_records(wh.data_dir)
    assert sorted(os.path.basename(r["path"]) for r in records) == ["x.graphs.parquet", "x.summaries.parquet"]
    assert all("damaged file" in r["error"] and "x.graphs.parquet" in r["error"] for r in records)


@pytest.mark.slow
def test_damaged_snapshot_state_and_node_file_each_cost_one_unit(tmp_path, prefect_harness):
    spec, wh_path = str(write_spec(tmp_path, **{**SMALL, "samples": 3})), str(tmp_path / "w.duckdb")
    train_sweep(spec, wh_path)
    graph_metrics(spec, wh_path)
    wh = Warehouse(wh_path)
    before = _tables(wh)
    run_a, run_b, run_c = wh.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].to_list()

    snapshot = DataLayout(wh.data_dir).snapshot(run_a, 1)
    state = RunStore(wh.data_dir, run_b).path
    node_file = DataLayout(wh.data_dir).node_metrics(run_c, 2)
    for path in (snapshot, state, node_file):
        _truncate(path)
    stale = snapshot.with_name(".snapshot.parquet.999999999.tmp")  # a crashed write (no such PID)
    stale.write_bytes(b"partial")
    live = snapshot.with_name(f".snapshot.parquet.{os.getpid()}.tmp")  # a write in progress
    live.write_bytes(b"partial")

    counts = train_sweep(spec, wh_path)
    assert counts == {"completed": 3}
    assert not stale.exists() and live.exists()
    live.unlink()
    graph_counts = graph_metrics(spec, wh_path)
    # the graphs of the runs trained again (run_a: its snapshot, run_b: its state file) and the damaged node file's
    assert graph_counts == {"computed": 7, "failed": 0, "skipped": 2}

    quarantined = wh.query("SELECT path, quarantined_path, error FROM quarantined_files ORDER BY path")
    damaged = {str(snapshot), str(state), str(node_file)}
    assert damaged <= set(quarantined["path"])
    for row in quarantined.iter_rows(named=True):
        assert os.path.exists(row["quarantined_path"])  # moved, never deleted
        assert str(wh.data_dir / "quarantine") in row["quarantined_path"]
        if row["path"] in damaged:
            assert row["error"].startswith(f"damaged file {row['path']}: ")
    # the other state file moved aside is run_a's: its snapshot was damaged, so it trained again
    assert set(quarantined["path"]) == damaged | {str(RunStore(wh.data_dir, run_a).path)}

    after = _tables(wh)
    for name in before:  # redone units give the very same results; nothing else changed
        assert after[name].equals(before[name]), name
    assert wh.query("SELECT count(*) AS n FROM graphs WHERE error IS NULL")["n"][0] == 9


def test_a_run_trained_again_drops_the_graphs_and_features_of_its_old_snapshots(tmp_path):
    """A run trained again after a damaged snapshot kept the graphs of its old snapshots for good
    ("0 to compute"); now its graphs and features are dropped, and only its own."""
    from stages import train_sweep as train_stage
    from stages.local import local_context
    from tests.conftest import train_in_process

    spec, wh = write_spec(tmp_path, **SMALL), Warehouse(tmp_path / "w.duckdb")
    train_in_process(spec, wh)
    runs = wh.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].to_list()
    with wh.writer() as con:  # rows standing for graphs and features computed from these snapshots
        con.execute("INSERT INTO graphs (run_id, epoch, fingerprint) SELECT run_id, epoch, 'made' FROM snapshots")
        con.execute("INSERT INTO features (study, run_id, k, feature_set, feature, value) "
                    "SELECT 'tiny', run_id, 1, 'learning_curve', 'acc_1', 0.5 FROM runs")
    _truncate(DataLayout(wh.data_dir).snapshot(runs[0], 1))
    with local_context(spec, wh.path) as ctx:
        assert train_stage.run(ctx) == {"completed": 2}
    graphs = wh.query("SELECT run_id, count(*) AS n FROM graphs GROUP BY run_id")
    assert graphs.rows() == [(runs[1], 3)]
    assert wh.query("SELECT run_id FROM features")["run_id"].to_list() == [runs[1]]
    ids = wh.query("SELECT run_id, count(DISTINCT written_id) AS n FROM snapshots GROUP BY run_id ORDER BY run_id")
    assert ids.rows() == [(runs[0], 3), (runs[1], 3)]


HOLD_WHEN_COMPUTED = """
import sys, time, duckdb
from pathlib import Path
data_dir, db = Path(sys.argv[1]), sys.argv[2]
while not any((data_dir / "node_metrics").glob("*/*/nodes.parquet")):
    time.sleep(0.05)
while True:
    try:
        con = duckdb.connect(db, read_only=True)  # what `duckdb -readonly FILE` holds
        break
    except duckdb.IOException:
        time.sleep(0.05)
print("holding", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_read_only_connection_during_the_graph_stage_loses_no_graph(tmp_path, prefect_harness, monkeypatch):
    spec, wh_path = str(write_spec(tmp_path, **SMALL)), str(tmp_path / "w.duckdb")
    train_sweep(spec, wh_path)
    wh = Warehouse(wh_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WHEN_COMPUTED, str(wh.data_dir), wh_path],
                              stdout=subprocess.PIPE, text=True)
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.05")  # 3 s
    try:
        with pytest.raises(WarehouseError, match="the next run loads them"):
            graph_metrics(spec, wh_path)
        assert holder.stdout.readline().strip() == "holding"
        assert list(DataLayout(wh.data_dir).staged_graphs.glob("*.graphs.parquet"))
    finally:
        holder.kill()
        holder.wait()
    assert graph_metrics(spec, wh_path) == {"computed": 0, "failed": 0, "skipped": 6}  # all loaded from staging
    assert not list(DataLayout(wh.data_dir).staged_graphs.glob("*.parquet"))
    assert wh.query("SELECT count(*) AS n FROM graphs WHERE error IS NULL")["n"][0] == 6
    assert wh.query("SELECT count(DISTINCT (run_id, epoch)) AS n FROM graph_summaries")["n"][0] == 6
