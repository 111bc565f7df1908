"""From snapshot files to node metrics (Parquet) and summaries: the unit of work of the graph stage.

Node metrics of one snapshot lie hive-partitioned like the snapshots:

    {data_dir}/node_metrics/run_id={run_id}/epoch={epoch}/nodes.parquet

with one row per node: node, layer, relative_depth, kind, channel, module and every property of
`properties.PROPERTIES` (betweenness NULL when skipped). A snapshot that cannot be processed
(unreadable file, non-finite weights, a state that does not fit the architecture) yields a row
with its error and no node file; the other snapshots of the batch go on. A damaged snapshot is
quarantined, so that the training stage trains its run again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

import pyarrow.parquet as pq

from ..layout import DataLayout
from ..files import DamagedFile, atomic_write_table, quarantine, read_or_quarantine
from ..snapshots import read_snapshot
from ..spec import GraphOptions
from .layered import LayeredGraph
from .properties import PROPERTIES, node_properties
from .rolled import rolled_graph_of_snapshot
from .summaries import summarise

GRAPH_ROW_SCHEMA = {"run_id": pl.Utf8, "epoch": pl.Int64, "nodes": pl.Int64, "edges": pl.Int64,
                    "seconds": pl.Float64, "error": pl.Utf8, "perron_value": pl.Float64,
                    "katz_alpha": pl.Float64, "pivots": pl.Int64, "perron_gap": pl.Float64, "hits_gap": pl.Float64}
SUMMARY_SCHEMA = {"run_id": pl.Utf8, "epoch": pl.Int64, "scope": pl.Utf8, "property": pl.Utf8,
                  "statistic": pl.Utf8, "value": pl.Float64}


@dataclass(frozen=True)
class SnapshotJob:
    """One snapshot to turn into a graph, with what is needed to rebuild its model."""

    run_id: str
    epoch: int
    path: str
    architecture: str
    width: float
    depth: int
    dataset: str


@dataclass
class GraphBatch:
    """What a batch of snapshots produced: one `graphs` row each, and the summaries of those that worked."""

    graphs: pl.DataFrame
    summaries: pl.DataFrame


def unusable_node_metrics(data_dir: str | Path, keys: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """The (run_id, epoch) of computed snapshots whose node-metrics file is missing or damaged (read
    from its footer); damaged files are quarantined. Their graphs must be computed again."""
    return [(run_id, epoch) for run_id, epoch in keys
            if read_or_quarantine(DataLayout(data_dir).node_metrics(run_id, epoch), data_dir, pq.read_metadata) is None]


def snapshot_node_metrics(job: SnapshotJob, options: GraphOptions) -> tuple[pl.DataFrame, dict]:
    """Build one snapshot's rolled graph and compute its node properties (those `options` selects);
    (node frame, graph row)."""
    graph = rolled_graph_of_snapshot(read_snapshot(job.path), job.architecture, job.width, job.depth,
                                     job.dataset, fold_batchnorm=options.fold_batchnorm)
    return graph_node_metrics(graph, options)


def graph_node_metrics(graph: LayeredGraph, options: GraphOptions) -> tuple[pl.DataFrame, dict]:
    """A built graph's node properties (those `options` selects): (node frame, graph row). Shared by
    the graph stage (graphs of snapshot files) and `pipeline_lib.api` (graphs of a live model)."""
    props = node_properties(graph, options)
    nodes = pl.DataFrame({
        "node": pl.int_range(graph.n_nodes, eager=True, dtype=pl.Int32),
        "layer": graph.layer, "relative_depth": graph.relative_depth, "kind": graph.kind.tolist(),
        "channel": graph.channel, "module": graph.module.tolist(),
        **{name: pl.Series(name, props.values[name], dtype=pl.Float64, nan_to_null=True) for name in PROPERTIES},
    })
    row = {"nodes": graph.n_nodes, "edges": graph.n_edges, "perron_value": props.perron_value,
           "katz_alpha": props.katz_alpha, "pivots": props.pivots, "perron_gap": props.perron_gap,
           "hits_gap": props.hits_gap}
    return nodes, row


def process_snapshots(jobs: list[SnapshotJob], data_dir: str | Path, options: GraphOptions) -> GraphBatch:
    """Compute, write and summarise every snapshot of `jobs`; failures become error rows."""
    rows, frames = [], []
    for job in jobs:
        start = time.perf_counter()
        target = DataLayout(data_dir).node_metrics(job.run_id, job.epoch)
        try:
            nodes, row = snapshot_node_metrics(job, options)
            atomic_write_table(nodes.to_arrow(), target)
        except Exception as e:  # recorded per snapshot; the batch goes on
            if isinstance(e, DamagedFile):
                quarantine(e.path, data_dir, str(e))
            target.unlink(missing_ok=True)  # no stale node file from an earlier computation
            rows.append({"run_id": job.run_id, "epoch": job.epoch, "seconds": time.perf_counter() - start,
                         "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append({"run_id": job.run_id, "epoch": job.epoch, "seconds": time.perf_counter() - start, **row})
        frames.append(nodes.select(pl.lit(job.run_id).alias("run_id"), pl.lit(job.epoch, pl.Int64).alias("epoch"),
                                   "layer", "relative_depth", *PROPERTIES))
    graphs = pl.DataFrame(rows, schema=GRAPH_ROW_SCHEMA)
    summaries = summarise(pl.concat(frames)) if frames else pl.DataFrame(schema=SUMMARY_SCHEMA)
    return GraphBatch(graphs, summaries.select(SUMMARY_SCHEMA.keys()).cast(SUMMARY_SCHEMA))
