"""Graph stage in the warehouse: which snapshots still need a graph, loading results, the node_metrics view."""
from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from .db import Warehouse, replace_where, upsert

NODE_METRICS_GLOB = "node_metrics/*/*/nodes.parquet"


def pending_snapshots(wh: Warehouse, study: str, recompute: bool = False) -> pl.DataFrame:
    """Snapshots of the study's runs without a successful `graphs` row (all of them if `recompute`).

    Columns: run_id, epoch, path, architecture, width, depth, dataset; ordered by run and epoch.
    """
    done = "" if recompute else "AND NOT EXISTS (SELECT 1 FROM graphs g WHERE g.run_id = s.run_id " \
                                "AND g.epoch = s.epoch AND g.error IS NULL)"
    return wh.query(f"""
        SELECT s.run_id, s.epoch, s.path, r.architecture, r.width, r.depth, r.dataset
        FROM snapshots s JOIN runs r ON r.run_id = s.run_id
        WHERE r.study = ? {done}
        ORDER BY s.run_id, s.epoch""", [study])


def record_graph_results(wh: Warehouse, graphs: pl.DataFrame, summaries: pl.DataFrame) -> None:
    """Replace the graphs rows and summaries of the snapshots in `graphs`; refresh the node_metrics view."""
    if graphs.is_empty():
        return
    keys = graphs.select(pl.format("{}/{}", "run_id", "epoch")).to_series().to_list()
    with wh.writer() as con:
        upsert(con, "graphs", graphs)
        replace_where(con, "graph_summaries", summaries,
                      "run_id || '/' || CAST(epoch AS VARCHAR) IN (SELECT unnest(?))", [keys])
        create_node_metrics_view(con, wh.data_dir)


def create_node_metrics_view(con: duckdb.DuckDBPyConnection, data_dir: Path) -> bool:
    """(Re)create the view `node_metrics` over the node Parquet files under data_dir, if there are any.

    The view reads the files at query time, so it follows new snapshots without being recreated;
    run_id and epoch come from the hive partition names (typed explicitly: a run_id of digits must
    stay a string).
    """
    if not any((data_dir / "node_metrics").glob("*/*/nodes.parquet")):
        return False
    glob = str(data_dir / NODE_METRICS_GLOB).replace("'", "''")
    con.execute(f"""CREATE OR REPLACE VIEW node_metrics AS SELECT * FROM read_parquet('{glob}',
                    hive_partitioning = true, hive_types = {{'run_id': 'VARCHAR', 'epoch': 'INTEGER'}})""")
    return True
