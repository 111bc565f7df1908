import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pipeline_lib.layout import NODE_METRICS_GLOB, DataLayout
from pipeline_lib.models import build_model
from pipeline_lib.snapshots import read_snapshot, write_snapshot


def test_round_trip_equals_model_state(tmp_path):
    model = build_model("resnet", in_channels=1, image_size=8, num_classes=10)
    model(torch.randn(4, 1, 8, 8))  # move BatchNorm running stats away from their init
    state = model.state_dict()
    snap = write_snapshot(state, tmp_path, "abc", 3)
    assert snap.path == DataLayout(tmp_path).snapshot("abc", 3) and snap.bytes > 0
    assert snap.n_params == sum(t.numel() for t in state.values())
    back = read_snapshot(snap.path)
    assert list(back) == list(state)
    for name, tensor in state.items():
        assert torch.equal(back[name], tensor.float()), name
    fresh = build_model("resnet", in_channels=1, image_size=8, num_classes=10)
    fresh.load_state_dict(back)
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(fresh.eval()(x), model.eval()(x))
    assert not list(tmp_path.rglob("*.tmp"))


def test_one_glob_reads_a_study_with_hive_partitions(tmp_path):
    model = build_model("lenet", in_channels=1, image_size=8, num_classes=10)
    for run in ("r1", "r2"):
        for epoch in (0, 1):
            write_snapshot(model.state_dict(), tmp_path, run, epoch)
    rows = duckdb.sql(
        f"SELECT run_id, epoch, count(*) AS tensors FROM read_parquet('{tmp_path}/snapshots/*/*/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    n = len(model.state_dict())
    assert rows == [("r1", 0, n), ("r1", 1, n), ("r2", 0, n), ("r2", 1, n)]


def test_the_layout_s_node_metrics_paths_are_what_its_glob_and_hive_partitions_read(tmp_path):
    """DuckDB finds a file written at DataLayout.node_metrics through NODE_METRICS_GLOB, and reads its
    run_id and epoch back from the partition names (what the node_metrics view relies on)."""
    layout = DataLayout(tmp_path)
    for run_id, epoch in (("0123", 0), ("abc", 7)):
        path = layout.node_metrics(run_id, epoch)
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"node": [1, 2]}), path)
    rows = duckdb.sql(f"""SELECT DISTINCT run_id, epoch FROM read_parquet('{tmp_path / NODE_METRICS_GLOB}',
                          hive_partitioning = true, hive_types = {{'run_id': 'VARCHAR', 'epoch': 'INTEGER'}})
                          ORDER BY run_id""").fetchall()
    assert rows == [("0123", 0), ("abc", 7)]
