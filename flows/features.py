"""Feature flow: feature vectors from the first k epochs of every finished run, into `features`.

    python -m flows.features --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

For every k of the spec's predict.k_epochs and every base feature set, computes the units
(run, k, set) not stored yet; graph features wait until a run's graphs cover epochs 0..k.
Re-running computes nothing that is stored.
"""
from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from pipeline_lib.features import BASE_SETS, GRAPH_BASE_SETS
from pipeline_lib.spec import load_study
from tasks.predict import base_set_features_task
from warehouse.db import Warehouse
from warehouse.predict import (epoch_metrics, feature_keys, graph_ready_runs, invariant_graph_summaries,
                               snapshot_paths, study_runs, write_features)

from ._cli import run_warehouse_stage


@flow(name="features", log_prints=True)
def features(spec: str, warehouse: str | None = None) -> dict:
    """Compute the missing feature units; returns how many units were written per base set."""
    logger = get_run_logger()
    study = load_study(spec)
    wh = Warehouse(warehouse) if warehouse else Warehouse()
    runs = study_runs(wh, study.name)
    stored = feature_keys(wh, study.name)
    k_max = max(study.predict.k_epochs)
    inputs = {"epoch_metrics": epoch_metrics(wh, study.name),
              "graph_summaries": invariant_graph_summaries(wh, study.name, k_max),
              "snapshot_paths": snapshot_paths(wh, study.name)}
    futures, written = [], {}
    for k in study.predict.k_epochs:
        graph_ready = graph_ready_runs(wh, study.name, k)
        for feature_set in BASE_SETS:
            done = stored.filter((pl.col("k") == k) & (pl.col("feature_set") == feature_set))["run_id"]
            todo = runs.filter(~pl.col("run_id").is_in(done.implode()))
            if feature_set in GRAPH_BASE_SETS:
                todo = todo.filter(pl.col("run_id").is_in(list(graph_ready)))
            if todo.height:
                futures.append(base_set_features_task.submit(feature_set, k, todo, **inputs))
                written[feature_set] = written.get(feature_set, 0) + todo.height
    rows = [f.result() for f in futures]
    if rows:
        write_features(wh, study.name, pl.concat(rows))
    missing_graphs = runs.height - len(graph_ready_runs(wh, study.name, k_max)) if runs.height else 0
    logger.info("features of %d runs: computed %s (run x k units per set)%s", runs.height, written or "nothing new",
                f"; {missing_graphs} runs still lack graphs up to epoch {k_max}" if missing_graphs else "")
    return written


if __name__ == "__main__":
    run_warehouse_stage(features, __doc__.splitlines()[0])
