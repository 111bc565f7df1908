"""Features: feature vectors from the first k epochs of every finished run, into `features`.

For every k of the spec's predict.k_epochs and every base feature set, computes the units
(run, k, set) not stored with their current fingerprint (`pipeline_lib.fingerprints.FEATURES[set]`:
the code of that set, and for graph sets the fingerprints of the graphs read); graph features wait until a
run's graphs cover epochs 0..k. Re-running with the same code and graphs computes nothing. One task
per (base set, k) (in this process, on Ray when asked); one that fails is logged and its units stay
pending. A run whose snapshot a set reads (weight statistics) is damaged or missing costs only
that run's unit: a damaged file is quarantined, so the next train-sweep trains the run again, and
then this stage computes the unit. Failed units are counted for the command's exit status.
"""
from __future__ import annotations

import logging

import polars as pl

from pipeline_lib.placement import plan_table_units
from warehouse.predict import (epoch_metrics, graph_ready_runs, invariant_graph_summaries, pending_features,
                               snapshot_paths, study_runs, write_features)
from warehouse.quarantine import record_quarantined

from .context import Failed, StudyContext, Work

log = logging.getLogger(__name__)


def run(ctx: StudyContext) -> dict:
    """Compute the feature units that are missing or stale; returns how many units were written per base set."""
    study, wh = ctx.study, ctx.warehouse
    runs = study_runs(wh, study.name)
    k_max = max(study.predict.k_epochs)
    inputs = {"epoch_metrics": epoch_metrics(wh, study.name),
              "graph_summaries": invariant_graph_summaries(wh, study.name, k_max),
              "snapshot_paths": snapshot_paths(wh, study.name), "data_dir": str(wh.data_dir)}
    pending, written, rows = [], {}, []
    for k in study.predict.k_epochs:
        for feature_set, units in pending_features(wh, study.name, runs, k).items():
            if units.height:
                pending.append((feature_set, k, units))
    results = ctx.fan_out(Work.FEATURES,
                          [{"feature_set": fs, "k": k, "runs": runs.join(units.select("run_id"), on="run_id", how="semi"),
                            **inputs} for fs, k, units in pending],
                          plan_table_units(len(pending)), label=f"feature sets x k of {study.name}")
    failures, unreadable = [], set()  # (units, what, error); runs whose snapshot could not be read
    for (feature_set, k, units), result in zip(pending, results):
        if isinstance(result, Failed):  # its units stay pending: the next run computes them
            failures.append((units.height, f"features {feature_set} k={k}", result.error))
            continue
        computed, errors = result  # a run left out for its snapshot: its unit alone stays pending
        failures += [(1, f"features {feature_set} k={k} of run {run_id}", error) for run_id, error in errors.items()]
        unreadable |= set(errors)
        done = units.filter(~pl.col("run_id").is_in(list(errors)))
        rows.append(computed.join(done, on="run_id"))
        if done.height:
            written[feature_set] = written.get(feature_set, 0) + done.height
    if rows:
        write_features(wh, study.name, pl.concat(rows))
    if unreadable:
        record_quarantined(wh)
    _report_failures(ctx, failures, unreadable, sum(units.height for _, _, units in pending))
    missing_graphs = runs.height - graph_ready_runs(wh, study.name, k_max).height if runs.height else 0
    log.info("features of %d runs: computed %s (run x k units per set)%s", runs.height, written or "nothing new",
             f"; {missing_graphs} runs still lack graphs up to epoch {k_max}" if missing_graphs else "")
    return written


def _report_failures(ctx: StudyContext, failures: list[tuple[int, str, str]], unreadable: set[str], total: int) -> None:
    """A line for each of the first few failures, the command that redoes runs whose snapshot could not be
    read, and the count of failed units (the command's exit status)."""
    for _, what, error in failures[:5]:
        log.error("%s failed: %s", what, error)
    if len(failures) > 5:
        log.error("... and %d more failures", len(failures) - 5)
    if unreadable:
        log.error("%d run(s) have a damaged or missing snapshot (a damaged one is moved to %s, table quarantined_files): "
                  "python -m flows.train_sweep --spec SPEC --warehouse %s trains them again; then this stage computes "
                  "their features", len(unreadable), ctx.layout.quarantine, ctx.warehouse.path)
    redo = "the stage's next run computes them" + (", after flows.train_sweep trains the runs of damaged snapshots"
                                                   if unreadable else "")
    ctx.report_failures(sum(n for n, _, _ in failures), total, "feature units (run x k x set)", redo)
