"""Feature flow: feature vectors from the first k epochs of every finished run, into `features`.

    python -m flows.features --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

For every k of the spec's predict.k_epochs and every base feature set, computes the units
(run, k, set) not stored with their current fingerprint (feature code, and for graph sets the
fingerprints of the graphs read; `pipeline_lib.fingerprints`); graph features wait until a run's
graphs cover epochs 0..k. Re-running with the same code and graphs computes nothing.
"""
from __future__ import annotations

import polars as pl
from prefect import flow, get_run_logger

from pipeline_lib.spec import load_study
from tasks.predict import base_set_features_task
from warehouse.predict import (epoch_metrics, graph_ready_runs, invariant_graph_summaries, pending_features,
                               snapshot_paths, study_runs, write_features)

from ._cli import run_warehouse_stage
from ._runtime import open_warehouse


@flow(name="features", log_prints=True)
def features(spec: str, warehouse: str | None = None) -> dict:
    """Compute the feature units that are missing or stale; returns how many units were written per base set."""
    logger = get_run_logger()
    study = load_study(spec)
    wh = open_warehouse(warehouse, study.execution, study.name)
    runs = study_runs(wh, study.name)
    k_max = max(study.predict.k_epochs)
    inputs = {"epoch_metrics": epoch_metrics(wh, study.name),
              "graph_summaries": invariant_graph_summaries(wh, study.name, k_max),
              "snapshot_paths": snapshot_paths(wh, study.name)}
    futures, written = [], {}
    for k in study.predict.k_epochs:
        for feature_set, units in pending_features(wh, study.name, runs, k).items():
            if units.height:
                todo = runs.join(units.select("run_id"), on="run_id", how="semi")
                futures.append((units, base_set_features_task.submit(feature_set, k, todo, **inputs)))
                written[feature_set] = written.get(feature_set, 0) + units.height
    rows = [f.result().join(units, on="run_id") for units, f in futures]
    if rows:
        write_features(wh, study.name, pl.concat(rows))
    missing_graphs = runs.height - graph_ready_runs(wh, study.name, k_max).height if runs.height else 0
    logger.info("features of %d runs: computed %s (run x k units per set)%s", runs.height, written or "nothing new",
                f"; {missing_graphs} runs still lack graphs up to epoch {k_max}" if missing_graphs else "")
    return written


if __name__ == "__main__":
    run_warehouse_stage(features, __doc__.splitlines()[0])
