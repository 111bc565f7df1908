"""Compact rolled graphs (`pipeline_lib.graphs.compact`): of a tiny trained study, after the real graph
stage, each kept edge set is the top-m incoming by weight of the full rolled graph, and node features
are the stored node properties within float16 error, after a round trip through Parquet."""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline_lib.graphs.compact import NODE_FEATURES, decode, study_compact_graphs, top_incoming
from pipeline_lib.graphs.rolled import rolled_graph_of_snapshot
from pipeline_lib.layout import DataLayout
from pipeline_lib.snapshots import read_snapshot
from tests.conftest import train_in_process, write_spec
from warehouse.db import Warehouse

FLOAT16 = 2.0 ** -11  # float16's relative rounding error (unit roundoff)


def test_top_incoming_keeps_each_targets_heaviest_edges_ties_to_the_earlier():
    dst = np.array([1, 1, 1, 2, 1, 2])
    weight = np.array([0.5, 2.0, 0.5, 1.0, 0.1, 3.0])
    assert top_incoming(dst, weight, 2).tolist() == [1, 0, 5, 3]
    assert top_incoming(dst, weight, 1).tolist() == [1, 5]


def test_compact_graphs_of_a_trained_study_match_the_full_rolled_graphs(tmp_path):
    from stages import graph_metrics
    from stages.local import local_context

    spec = write_spec(tmp_path, widths=[0.5], seeds=[0], samples=2, epochs=2, width_transfer={},
                      predict={"k_epochs": [1], "n_folds": 2})
    warehouse = tmp_path / "w.duckdb"
    train_in_process(spec, Warehouse(warehouse))
    with local_context(spec, warehouse) as ctx:
        graph_metrics.run(ctx)
        runs = ctx.warehouse.query("SELECT * FROM runs")
        snapshots = ctx.warehouse.query("SELECT run_id, epoch, path FROM snapshots")
        data_dir = ctx.warehouse.data_dir
    m = 3
    table = study_compact_graphs("tiny", snapshots, runs, data_dir, epochs=range(2), m=m)
    pq.write_table(table, tmp_path / "graphs.parquet", compression="zstd")
    table = pq.read_table(tmp_path / "graphs.parquet")
    assert table.num_rows == 2 * 2 and table.schema.field("weight").type == pa.list_(pa.float16())

    paths = {(r, e): p for r, e, p in snapshots.rows()}
    by_run = {r["run_id"]: r for r in runs.iter_rows(named=True)}
    truncated = 0
    for graph in decode(table):
        run = by_run[graph.run_id]
        full = rolled_graph_of_snapshot(read_snapshot(paths[(graph.run_id, graph.epoch)]), run["architecture"],
                                        run["width"], run["depth"], run["dataset"])
        assert graph.layer.tolist() == full.layer.tolist()
        for node in range(full.n_nodes):
            incoming = np.sort(full.weight[full.dst == node])[::-1][:m]
            kept = graph.weight[graph.dst == node]
            truncated += (full.dst == node).sum() > m
            assert len(kept) == len(incoming)
            np.testing.assert_allclose(np.sort(kept)[::-1], incoming, rtol=2 * FLOAT16,
                                       atol=full.weight.max() * 2.0 ** -24)
        # each kept edge is an edge of the full graph, with that edge's weight
        full_weight = dict(zip(zip(full.src.tolist(), full.dst.tolist()), full.weight.tolist()))
        np.testing.assert_allclose(graph.weight, [full_weight[e] for e in zip(graph.src.tolist(), graph.dst.tolist())],
                                   rtol=2 * FLOAT16)

        nodes = pl.read_parquet(DataLayout(data_dir).node_metrics(graph.run_id, graph.epoch))
        for j, name in enumerate(NODE_FEATURES):
            stored = nodes[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            scale = np.nanmax(np.abs(stored)) if np.isfinite(stored).any() else 1.0
            np.testing.assert_allclose(graph.features[:, j], stored, rtol=2 * FLOAT16, atol=scale * 2.0 ** -24,
                                       equal_nan=True, err_msg=name)
    assert truncated > 0  # the rule was exercised: some nodes have more than m incoming edges


def test_the_committed_graphs_describe_corpus_runs_within_the_size_budget():
    import json

    from pipeline_lib.corpus import SHIPPED_DIR, read_corpus, read_corpus_graphs
    from pipeline_lib.graphs.compact import TOP_M, compact_schema

    table = read_corpus_graphs(SHIPPED_DIR)
    meta = json.loads(table.schema.metadata[b"compact_graphs"])
    assert meta["top_m"] == TOP_M and meta["node_features"] == list(NODE_FEATURES)
    assert table.schema.remove_metadata() == compact_schema()
    runs = read_corpus(SHIPPED_DIR).runs
    assert set(table.column("run_id").to_pylist()) <= set(runs["run_id"])
    assert set(table.column("study").to_pylist()) == set(meta["studies"]) <= set(runs["study"])
    assert set(table.column("epoch").to_pylist()) == set(meta["epochs"]) == {0, 1, 2, 3}
    assert sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*") if p.is_file()) <= 60e6
