"""The cost of the decision path: graph work per snapshot for just the properties a predictor reads,
measured, against training per model-epoch as recorded.

RQ3 (`prediction.costs`) charges a graph predictor the whole graph stage: every property, closeness
and betweenness (a Dijkstra per source) included. Scoring a run needs less: the properties behind
the columns its fitted predictor kept (the selection step drops the rest), computed on the run's
snapshots of epochs 0..k. This measures that work on a sample of the study's snapshots, and the
whole property set on the same snapshots in the same loop, so both see the same load.
Timed per snapshot: read the file, build the rolled graph, compute the properties, summarise them
(what the graph features read); not the Parquet write of the graph stage, which scoring skips.
"""
from __future__ import annotations

import time
from collections.abc import Collection

import numpy as np
import polars as pl
from sklearn.pipeline import Pipeline

from ..graphs.properties import PROPERTIES
from ..graphs.snapshot_metrics import SnapshotJob, snapshot_node_metrics
from ..graphs.summaries import summarise
from ..prediction.costs import COST_SCHEMA
from ..spec import GraphOptions
from ..vocabulary import CostStrategy

STRATEGIES = (CostStrategy.DECISION_PATH, CostStrategy.GRAPH_STAGE)  # its rows of `costs`
SAMPLE = 8     # snapshots timed per study
REPEATS = 3    # timings per snapshot and property set; the least is kept


def columns_used(model: Pipeline, columns: list[str]) -> list[str]:
    """The columns a registered predictor really reads: those its selection step keeps (all without one)."""
    select = model.named_steps.get("select")
    if select is None:
        return list(columns)
    return [c for c, kept in zip(columns, select.get_support()) if kept]


def properties_read(columns: Collection[str]) -> tuple[str, ...]:
    """Node properties (PROPERTIES order) behind feature columns of the graph sets, which are named
    `<scope>/<property>/<statistic>@<time>` with scope `graph` or `depth:<b>`; other columns (the
    Perron value, which every graph computes; weight statistics `order:<b>/weight/..`, learning
    curves, hyper-parameters) need none."""
    found = set()
    for column in columns:
        parts = column.split("@")[0].split("/")
        if len(parts) == 3 and (parts[0] == "graph" or parts[0].startswith("depth:")) and parts[1] in PROPERTIES:
            found.add(parts[1])
    return tuple(p for p in PROPERTIES if p in found)


def sample_snapshots(jobs: list[SnapshotJob], size: int = SAMPLE, seed: int = 0) -> list[SnapshotJob]:
    """A seeded uniform sample of the study's snapshots (its mean cost estimates the study's mean)."""
    if len(jobs) <= size:
        return list(jobs)
    picked = np.random.default_rng(seed).choice(len(jobs), size=size, replace=False)
    return [jobs[i] for i in sorted(picked)]


def graph_work(job: SnapshotJob, options: GraphOptions, properties: Collection[str]) -> pl.DataFrame:
    """One snapshot's decision-path graph work: those node properties (`GraphOptions.properties`), summarised."""
    nodes, _ = snapshot_node_metrics(job, options.model_copy(update={"properties": list(properties)}))
    return summarise(nodes.with_columns(pl.lit(job.run_id).alias("run_id"), pl.lit(job.epoch).alias("epoch")))


def seconds_per_snapshot(jobs: list[SnapshotJob], options: GraphOptions,
                         property_sets: dict[str, tuple[str, ...]], repeats: int = REPEATS) -> dict[str, float]:
    """Per named property set, the mean over `jobs` of the least of `repeats` timings of `graph_work`
    (the timing other processes disturbed least: on shared cores a median still moved a 9-property
    set above the 10-property one). The sets are timed in turn on each snapshot (interleaved, after
    one untimed pass that builds the architectures' templates), so load falls on all of them alike."""
    for job in jobs:
        graph_work(job, options, PROPERTIES)
    timings: dict[str, list[float]] = {name: [] for name in property_sets}
    for job in jobs:
        runs = {name: [] for name in property_sets}
        for _ in range(repeats):
            for name, properties in property_sets.items():
                start = time.perf_counter()
                graph_work(job, options, properties)
                runs[name].append(time.perf_counter() - start)
        for name, seconds in runs.items():
            timings[name].append(min(seconds))
    return {name: float(np.mean(seconds)) for name, seconds in timings.items()}


COST_COLUMNS = {**COST_SCHEMA, "properties": pl.List(pl.Utf8), "snapshot_seconds": pl.Float64,
                "epoch_seconds": pl.Float64, "snapshots_timed": pl.Int64}


def key_of(properties: Collection[str]) -> str:
    """The name a property set is timed under."""
    return ",".join(properties)


def decision_path_rows(chosen: pl.DataFrame, per_snapshot: dict[str, float], snapshots_to_k: dict[int, int],
                       epoch_seconds: float, train_all: float, timed: int, recorded_to_k: dict[int, float]
                       ) -> pl.DataFrame:
    """`costs` rows: per chosen predictor (k, feature_set, predictor, properties) a `decision_path`
    row, and per k a `graph_stage` row for the whole property set on the same snapshots.

    chosen: k, feature_set, predictor, properties; per_snapshot: measured seconds per snapshot by
    property-set key (`key_of`), 'all' for the whole set; snapshots_to_k: snapshots at epochs 0..k of
    the study's finished runs; recorded_to_k: the graph stage's recorded seconds of those snapshots
    (what RQ3 charges). `seconds` = seconds per snapshot x snapshots_to_k: deciding for every run."""
    rows = []
    for k in sorted(snapshots_to_k):
        n = snapshots_to_k[k]
        for r in chosen.filter(pl.col("k") == k).iter_rows(named=True):
            each = per_snapshot[key_of(r["properties"])] if r["properties"] else 0.0
            rows.append({"strategy": CostStrategy.DECISION_PATH, "k": k, "feature_set": r["feature_set"],
                         "predictor": r["predictor"], "seconds": each * n, "properties": list(r["properties"]),
                         "snapshot_seconds": each,
                         "detail": f"{n} snapshots x {each:.4f} s, graph work for {len(r['properties'])} quantities"})
        each = per_snapshot["all"]
        rows.append({"strategy": CostStrategy.GRAPH_STAGE, "k": k, "seconds": each * n, "properties": list(PROPERTIES),
                     "snapshot_seconds": each,
                     "detail": f"{n} snapshots x {each:.4f} s, every property; the graph stage recorded "
                               f"{recorded_to_k[k]:.1f} s for them (what predict_then_finish charges)"})
    frame = pl.DataFrame(rows, schema={c: COST_COLUMNS[c] for c in
                                       ("strategy", "k", "feature_set", "predictor", "seconds", "properties",
                                        "snapshot_seconds", "detail")})
    return frame.with_columns(
        (pl.col("seconds") / train_all).alias("fraction"), pl.lit(None, pl.Int64).alias("runs_to_end"),
        pl.lit(None, pl.Float64).alias("best_final_acc"), pl.lit(epoch_seconds).alias("epoch_seconds"),
        pl.lit(timed, pl.Int64).alias("snapshots_timed")).select(COST_COLUMNS.keys()).cast(COST_COLUMNS)
