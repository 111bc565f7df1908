"""A small real graph stage for tests of the prediction stage: node strengths of the rolled graph
computed with numpy from real snapshots, summarised in the `graph_summaries` contract.

Nodes are the input channels and every kernel's output channels; a convolution edge weighs the
Frobenius norm of W[o, i], a linear edge |W[o, i]|, and a linear layer after a flatten of C
channels joins channel c to unit o with the norm of the weights from c's map to o.
"""
from __future__ import annotations

import time

import numpy as np
import polars as pl

from pipeline_lib.snapshots import read_snapshot

STATISTICS = ("mean", "std", "min", "max", "q10", "q25", "q50", "q75", "q90", "entropy")


def channel_adjacencies(path: str) -> list[np.ndarray]:
    """One (out, in) matrix of non-negative edge weights per kernel, in forward order."""
    state = read_snapshot(path)
    kernels = [t.numpy() for name, t in state.items() if name.endswith(".weight") and t.ndim >= 2]
    blocks, channels = [], kernels[0].shape[1]
    for w in kernels:
        if w.ndim == 4:
            blocks.append(np.sqrt((w ** 2).sum(axis=(2, 3))))
        else:
            w = w.reshape(w.shape[0], channels, -1)  # a flatten of `channels` maps (or 1 value each)
            blocks.append(np.sqrt((w ** 2).sum(axis=2)))
        channels = w.shape[0]
    return blocks


def _statistics(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    p = values / values.sum() if values.sum() > 0 else np.full(len(values), 1 / len(values))
    p = p[p > 0]
    return dict(zip(STATISTICS, [values.mean(), values.std(), values.min(), values.max(), *q,
                                 float(-(p * np.log(p)).sum())]))


def strength_summaries(run_id: str, epoch: int, path: str) -> tuple[list[dict], dict]:
    """(graph_summaries rows, graphs row) of one snapshot."""
    start = time.perf_counter()
    blocks = channel_adjacencies(path)
    layers = len(blocks) + 1  # node layers: inputs, then every kernel's outputs
    in_s = [np.zeros(blocks[0].shape[1])] + [b.sum(axis=1) for b in blocks]
    out_s = [b.sum(axis=0) for b in blocks] + [np.zeros(blocks[-1].shape[0])]
    props = {"in_strength": in_s, "out_strength": out_s, "strength": [i + o for i, o in zip(in_s, out_s)]}
    rows = []
    for prop, per_layer in props.items():
        bins = {"graph": np.concatenate(per_layer)}
        for j, values in enumerate(per_layer):
            key = f"depth:{min(3, 4 * j // layers)}"
            bins[key] = np.concatenate([bins.get(key, np.zeros(0)), values])
        for scope, values in bins.items():
            rows += [{"run_id": run_id, "epoch": epoch, "scope": scope, "property": prop, "statistic": s, "value": v}
                     for s, v in _statistics(values).items()]
    graph = {"run_id": run_id, "epoch": epoch, "nodes": sum(len(v) for v in in_s),
             "edges": sum(b.size for b in blocks), "seconds": time.perf_counter() - start, "error": None}
    return rows, graph


def fill_graph_tables(wh, study: str) -> int:
    """Compute and store strength summaries of every snapshot of the study; returns snapshots done."""
    from warehouse.db import upsert

    snaps = wh.query("SELECT s.run_id, s.epoch, s.path FROM snapshots s JOIN runs r USING (run_id) WHERE r.study = ?",
                     [study])
    summaries, graphs = [], []
    for run_id, epoch, path in snaps.iter_rows():
        rows, graph = strength_summaries(run_id, epoch, path)
        summaries += rows
        graphs.append(graph)
    with wh.writer() as con:
        upsert(con, "graph_summaries", pl.DataFrame(summaries))
        upsert(con, "graphs", pl.DataFrame(graphs, schema_overrides={"error": pl.Utf8}))
    return snaps.height
