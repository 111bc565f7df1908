"""Graph stage in the warehouse: which snapshots still need a graph, loading results.

A snapshot's graph is done when its `graphs` row has no error and the fingerprint that the current
`graphs:` options and graph code give a graph of its size (`pipeline_lib.fingerprints`). Computed batches are staged as Parquet under `{data_dir}/staged/graphs/` and removed once loaded,
so a busy or failing warehouse (or an interrupted flow) loses no computed graph: the next run
loads what is staged before computing anything.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import polars as pl

from pipeline_lib.fingerprints import graph_fingerprints
from pipeline_lib.layout import DataLayout
from pipeline_lib.files import DamagedFile, atomic_write_table, quarantine, read_checked
from pipeline_lib.spec import GraphOptions

from .db import Warehouse, create_node_metrics_view, replace_where, upsert

def stage_graph_batch(data_dir: Path, graphs: pl.DataFrame, summaries: pl.DataFrame, options: GraphOptions) -> None:
    """Keep a computed batch, its graphs stamped with their fingerprints, on disk until it is loaded
    (summaries first: a graphs file means both are there)."""
    current = graph_fingerprints(options, graphs.filter(pl.col("error").is_null())["nodes"].unique().to_list())
    graphs = graphs.with_columns(pl.when(pl.col("error").is_null())
                                 .then(pl.col("nodes").replace_strict(current, default=None, return_dtype=pl.Utf8))
                                 .alias("fingerprint"))
    name = uuid.uuid4().hex
    atomic_write_table(summaries.to_arrow(), DataLayout(data_dir).staged_graphs / f"{name}.summaries.parquet")
    atomic_write_table(graphs.to_arrow(), DataLayout(data_dir).staged_graphs / f"{name}.graphs.parquet")


def load_staged_graphs(wh: Warehouse) -> int:
    """Load every staged batch, one transaction each, removing it once loaded; returns the graphs rows loaded.
    A damaged batch is quarantined (its snapshots have no graph yet, so the stage computes them again).
    A batch another process loaded and removed meanwhile (the same study run twice at once) is
    skipped; one both read is recorded twice, the same rows (the load replaces them)."""
    loaded = 0
    for graphs_file in sorted(DataLayout(wh.data_dir).staged_graphs.glob("*.graphs.parquet")):
        summaries_file = graphs_file.with_name(graphs_file.name.replace(".graphs.", ".summaries."))
        try:
            graphs, summaries = (read_checked(f, pl.read_parquet) for f in (graphs_file, summaries_file))
        except FileNotFoundError:
            continue
        except DamagedFile as e:
            for f in (graphs_file, summaries_file):
                quarantine(f, wh.data_dir, f"staged graph batch unusable: {e}")
            continue
        record_graph_results(wh, graphs, summaries)
        graphs_file.unlink(missing_ok=True)
        summaries_file.unlink(missing_ok=True)
        loaded += graphs.height
    return loaded


def computed_snapshots(wh: Warehouse, study: str) -> list[tuple[str, int]]:
    """(run_id, epoch) of the study's snapshots with a successful graph."""
    return wh.query("SELECT g.run_id, g.epoch FROM graphs g JOIN runs r USING (run_id) "
                    "WHERE r.study = ? AND g.error IS NULL ORDER BY 1, 2", [study]).rows()


def forget_graphs(wh: Warehouse, keys: list[tuple[str, int]]) -> None:
    """Drop the graphs rows of these snapshots so that the stage computes them again."""
    if keys:
        with wh.writer() as con:
            con.execute("DELETE FROM graphs WHERE run_id || '/' || CAST(epoch AS VARCHAR) IN (SELECT unnest(?))",
                        [[f"{r}/{e}" for r, e in keys]])


def pending_snapshots(wh: Warehouse, study: str, options: GraphOptions, recompute: bool = False,
                      until_epoch: int | None = None) -> pl.DataFrame:
    """Snapshots of the study's runs (at epochs <= `until_epoch`, if given) without a current graph:
    no `graphs` row, an error, or a fingerprint (NULL included) other than the current one for its
    size; all of them if `recompute`. With `options.properties` set, a graph of every property is
    current too (it holds the requested ones).

    Columns: run_id, epoch, path, architecture, width, depth, dataset; ordered by run and epoch.
    """
    sizes = wh.query("""SELECT DISTINCT g.nodes FROM graphs g JOIN runs r USING (run_id)
                        WHERE r.study = ? AND g.error IS NULL AND g.nodes IS NOT NULL""", [study])["nodes"].to_list()
    accepted = [options] + ([options.model_copy(update={"properties": None})] if options.properties is not None else [])
    current = [] if recompute else [item for o in accepted for item in graph_fingerprints(o, sizes).items()]
    return wh.query("""
        SELECT s.run_id, s.epoch, s.path, r.architecture, r.width, r.depth, r.dataset
        FROM snapshots s JOIN runs r ON r.run_id = s.run_id
        WHERE r.study = $1 AND s.epoch <= coalesce($4, s.epoch) AND NOT EXISTS (
            SELECT 1 FROM graphs g JOIN (SELECT unnest($2::INTEGER[]) AS nodes, unnest($3::VARCHAR[]) AS fingerprint) c
                 ON g.nodes = c.nodes AND g.fingerprint = c.fingerprint
            WHERE g.run_id = s.run_id AND g.epoch = s.epoch AND g.error IS NULL)
        ORDER BY s.run_id, s.epoch""", [study, [n for n, _ in current], [f for _, f in current], until_epoch])


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

