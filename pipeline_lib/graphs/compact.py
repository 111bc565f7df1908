"""Compact rolled graphs: what a model needs to learn from a snapshot's graph, small enough to commit.

A full rolled graph of a LeNet or AlexNet holds 20k-200k edges; the corpus' graphs of epochs 0..3
hold ~150 million. The compact graph of a snapshot keeps:
- every node, with its stored node properties (`NODE_FEATURES`: the centralities of nodes.parquet,
  without `strength` = in + out) and its layer;
- of the edges, each node's `m` heaviest incoming ones (top-m by weight, ties to the earlier edge of
  the template; a node with fewer keeps all). Nodes and so layers stay connected, and the edges
  that carry most of a channel's input are the ones kept.

Storage (`compact_table`, one row per snapshot): node features and edge weights as float16 of
value / scale, with the scale (the column's largest |value| in the snapshot, float32) beside it, so
nothing overflows float16 and every value keeps float16's relative precision (about 5e-4) down to
6e-8 x the scale (smaller values are rounded to float16's subnormals or 0). NaN (a centrality not
determined) stays NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from ..layout import DataLayout
from ..snapshots import read_snapshot
from .layered import LayeredGraph
from .properties import PROPERTIES
from .rolled import rolled_graph_of_snapshot

NODE_FEATURES: tuple[str, ...] = tuple(p for p in PROPERTIES if p != "strength")
TOP_M = 4  # incoming edges kept per node in the committed corpus (docs/results/metanetwork.md)


@dataclass(frozen=True)
class CompactGraph:
    """One snapshot's compact graph, decoded: node features (n x F, float32, NODE_FEATURES order),
    node layer, edges (src -> dst) with their weights (float32)."""

    run_id: str
    epoch: int
    features: np.ndarray
    layer: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.layer)


def top_incoming(dst: np.ndarray, weight: np.ndarray, m: int) -> np.ndarray:
    """Indices of the kept edges: each target node's `m` heaviest incoming edges (ties to the earlier
    edge), in order of target node, heaviest first."""
    order = np.lexsort((np.arange(len(dst)), -weight, dst))
    sorted_dst = dst[order]
    first = np.searchsorted(sorted_dst, sorted_dst, side="left")
    return order[np.arange(len(order)) - first < m]


def _scaled(values: np.ndarray) -> tuple[np.ndarray, float]:
    """(float16 of values / scale, scale): scale is the largest finite |value| (1 when there is none)."""
    finite = np.abs(values[np.isfinite(values)])
    scale = float(np.float32(finite.max())) if finite.size and finite.max() > 0 else 1.0
    return (values / scale).astype(np.float16), scale


def compact_row(run_id: str, epoch: int, graph: LayeredGraph, nodes: pl.DataFrame, m: int) -> dict:
    """The stored row of one snapshot from its full rolled graph and its nodes.parquet frame."""
    if nodes.height != graph.n_nodes or not (nodes["layer"].to_numpy() == graph.layer).all():
        raise ValueError(f"run {run_id} epoch {epoch}: nodes.parquet does not describe this rolled graph")
    kept = top_incoming(graph.dst, graph.weight, m)
    row = {"run_id": run_id, "epoch": epoch, "edges_full": graph.n_edges,
           "layer": graph.layer.astype(np.int16), "src": graph.src[kept].astype(np.int32),
           "dst": graph.dst[kept].astype(np.int32)}
    row["weight"], row["weight_scale"] = _scaled(graph.weight[kept])
    for name in NODE_FEATURES:
        row[name], row[f"{name}_scale"] = _scaled(nodes[name].cast(pl.Float64).fill_null(np.nan).to_numpy())
    return row


def compact_schema() -> pa.Schema:
    half = pa.list_(pa.float16())
    fields = [("study", pa.string()), ("run_id", pa.string()), ("epoch", pa.int16()), ("edges_full", pa.int64()),
              ("layer", pa.list_(pa.int16())), ("src", pa.list_(pa.int32())), ("dst", pa.list_(pa.int32())),
              ("weight", half), ("weight_scale", pa.float32())]
    for name in NODE_FEATURES:
        fields += [(name, half), (f"{name}_scale", pa.float32())]
    return pa.schema(fields)


def compact_table(study: str, rows: list[dict]) -> pa.Table:
    """Rows of `compact_row` as an Arrow table of `compact_schema` (float16 lists stay float16)."""
    schema = compact_schema()
    arrays = [pa.array([study] * len(rows), pa.string())]
    for field in list(schema)[1:]:
        values = [r[field.name] for r in rows]
        arrays.append(_list_array(values, field.type) if pa.types.is_list(field.type) else pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _list_array(values: list[np.ndarray], type_: pa.ListType) -> pa.Array:
    """A list array from numpy parts without a Python loop over elements (pa.array cannot take float16 lists)."""
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
    flat = np.concatenate(values) if values else np.zeros(0, type_.value_type.to_pandas_dtype())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type_.value_type))


def study_compact_graphs(study: str, snapshots: pl.DataFrame, runs: pl.DataFrame, data_dir: str | Path,
                         epochs: range = range(4), m: int = TOP_M) -> pa.Table:
    """Compact graphs of the `epochs` snapshots of `runs` (run_id, architecture, width, depth, dataset)
    from `snapshots` (run_id, epoch, path) and the node metrics under `data_dir`. A snapshot without
    a node-metrics file (its graph failed or was not computed) is left out."""
    layout = DataLayout(data_dir)
    jobs = (snapshots.filter(pl.col("epoch").is_in(list(epochs)))
            .join(runs.select("run_id", "architecture", "width", "depth", "dataset"), on="run_id")
            .sort("run_id", "epoch"))
    rows = []
    for job in jobs.iter_rows(named=True):
        node_file = layout.node_metrics(job["run_id"], job["epoch"])
        if not node_file.is_file():
            continue
        graph = rolled_graph_of_snapshot(read_snapshot(job["path"]), job["architecture"], job["width"],
                                         job["depth"], job["dataset"])
        rows.append(compact_row(job["run_id"], job["epoch"], graph, pl.read_parquet(node_file), m))
    return compact_table(study, rows)


def decode(table: pa.Table) -> list[CompactGraph]:
    """Every row of a compact-graphs table as a CompactGraph (float32 values, scales applied)."""
    table = table.combine_chunks()
    lists = {f.name: (table.column(f.name).chunk(0).offsets.to_numpy(),
                      table.column(f.name).chunk(0).values.to_numpy(zero_copy_only=False))
             for f in table.schema if pa.types.is_list(f.type)}
    scales = {f.name: table.column(f.name).to_numpy() for f in table.schema if f.name.endswith("_scale")}

    def values(name: str, i: int, scaled: bool = False) -> np.ndarray:
        offsets, flat = lists[name]
        part = flat[offsets[i]:offsets[i + 1]]
        return part.astype(np.float32) * scales[f"{name}_scale"][i] if scaled else part.astype(np.int64)

    run_ids, epochs = table.column("run_id").to_pylist(), table.column("epoch").to_pylist()
    return [CompactGraph(run_ids[i], int(epochs[i]),
                         np.column_stack([values(n, i, True) for n in NODE_FEATURES]), values("layer", i),
                         values("src", i), values("dst", i), values("weight", i, True))
            for i in range(table.num_rows)]
