"""Features: feature vectors from the first k epochs of every finished run, into `features`.

For every k of the spec's predict.k_epochs and every base feature set, computes the units
(run, k, set) not stored with their current fingerprint (`pipeline_lib.fingerprints.FEATURES[set]`:
the code of that set, and for graph sets the fingerprints of the graphs read); graph features wait until a
run's graphs cover epochs 0..k. Re-running with the same code and graphs computes nothing. One task
per (base set, k) (in this process, on Ray when asked); one that fails is logged and its units stay
pending.
"""
from __future__ import annotations

import logging

import polars as pl

from pipeline_lib.placement import plan_table_units
from warehouse.predict import (epoch_metrics, graph_ready_runs, invariant_graph_summaries, pending_features,
                               snapshot_paths, study_runs, write_features)

from .context import Failed, StudyContext, Work

log = logging.getLogger(__name__)


def run(ctx: StudyContext) -> dict:
    """Compute the feature units that are missing or stale; returns how many units were written per base set."""
    study, wh = ctx.study, ctx.warehouse
    runs = study_runs(wh, study.name)
    k_max = max(study.predict.k_epochs)
    inputs = {"epoch_metrics": epoch_metrics(wh, study.name),
              "graph_summaries": invariant_graph_summaries(wh, study.name, k_max),
              "snapshot_paths": snapshot_paths(wh, study.name)}
    pending, written, rows = [], {}, []
    for k in study.predict.k_epochs:
        for feature_set, units in pending_features(wh, study.name, runs, k).items():
            if units.height:
                pending.append((feature_set, k, units))
    results = ctx.fan_out(Work.FEATURES,
                          [{"feature_set": fs, "k": k, "runs": runs.join(units.select("run_id"), on="run_id", how="semi"),
                            **inputs} for fs, k, units in pending],
                          plan_table_units(len(pending)), label=f"feature sets x k of {study.name}")
    for (feature_set, k, units), result in zip(pending, results):
        if isinstance(result, Failed):  # its units stay pending: the next run computes them
            log.error("features %s k=%d failed: %s", feature_set, k, result.error)
        else:
            rows.append(result.join(units, on="run_id"))
            written[feature_set] = written.get(feature_set, 0) + units.height
    if rows:
        write_features(wh, study.name, pl.concat(rows))
    missing_graphs = runs.height - graph_ready_runs(wh, study.name, k_max).height if runs.height else 0
    log.info("features of %d runs: computed %s (run x k units per set)%s", runs.height, written or "nothing new",
             f"; {missing_graphs} runs still lack graphs up to epoch {k_max}" if missing_graphs else "")
    return written
