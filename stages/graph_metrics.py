"""Graph metrics: every snapshot of a study becomes a rolled graph, node metrics and summaries.

Reads the `snapshots` of the study's runs, skips those whose `graphs` row has no error and the
fingerprint the current `graphs:` options and graph code give (`pipeline_lib.fingerprints.GRAPHS`),
and fans batches of snapshots out (a single batch in this process) on a process pool or Ray: one
worker per core at most, graph-tool's OpenMP threads set so that workers x threads = cores
(`placement.plan_batches`). Node metrics go to Parquet (written by the workers); as each batch
finishes the stage stages it on disk and loads its `graphs` and `graph_summaries` rows (replacing
those of recomputed snapshots), so an interruption loses at most the batches in flight, and a
warehouse that cannot be written loses none (they stay staged; the next run loads them first). A
snapshot that fails is recorded with its error and does not stop the others. At start, temporary
files of crashed writes are removed and computed snapshots whose node-metrics file is missing or
damaged (quarantined) are computed again. The pending snapshots are claimed (`pipeline_lib.claims`):
the same study's graphs computed by two commands at once are computed once, the second waiting.
"""
from __future__ import annotations

import logging
import time

import polars as pl

from pipeline_lib.claims import claimed
from pipeline_lib.graphs.snapshot_metrics import (GRAPH_ROW_SCHEMA, SUMMARY_SCHEMA, GraphBatch, SnapshotJob,
                                                  unusable_node_metrics)
from pipeline_lib.layout import DataLayout
from pipeline_lib.placement import plan_batches
from pipeline_lib.files import clean_stale_temp_files
from pipeline_lib.spec import GraphOptions
from warehouse.db import Warehouse, WarehouseError
from warehouse.graphs import (computed_snapshots, forget_graphs, load_staged_graphs,
                              pending_snapshots, stage_graph_batch)
from warehouse.quarantine import record_quarantined
from warehouse.runs import record_study

from .context import Failed, StudyContext, Work

log = logging.getLogger(__name__)


def _failed_batch(batch: list[SnapshotJob], error: str) -> GraphBatch:
    rows = [{"run_id": j.run_id, "epoch": j.epoch, "error": error} for j in batch]
    return GraphBatch(pl.DataFrame(rows, schema=GRAPH_ROW_SCHEMA), pl.DataFrame(schema=SUMMARY_SCHEMA))


class _BatchLoader:
    """Stages each finished batch and loads it at once; after a failed load it only stages."""

    def __init__(self, wh: Warehouse, options: GraphOptions):
        self.wh, self.options, self.error, self.seconds, self.graphs = wh, options, None, 0.0, []

    def add(self, batch: GraphBatch) -> None:
        self.graphs.append(batch.graphs)
        stage_graph_batch(self.wh.data_dir, batch.graphs, batch.summaries, self.options)
        if self.error is None:
            start = time.perf_counter()
            try:
                load_staged_graphs(self.wh)
            except WarehouseError as e:
                self.error = e
            self.seconds += time.perf_counter() - start

    def finish(self) -> pl.DataFrame:
        """Every graphs row computed; raises the load's error, saying that the batches stay staged."""
        if self.error is not None:
            raise WarehouseError(f"{self.error}\nthe computed graphs stay staged under "
                                 f"{DataLayout(self.wh.data_dir).staged_graphs}; the next run loads them") from self.error
        return pl.concat(self.graphs) if self.graphs else pl.DataFrame(schema=GRAPH_ROW_SCHEMA)


def run(ctx: StudyContext, recompute: bool = False, until_epoch: int | None = None,
        properties: list[str] | None = None) -> dict:
    """Compute the graphs of every pending snapshot of the study; returns counts. Triage asks for the
    snapshots of epochs <= `until_epoch` only, with only the node `properties` its predictor reads (a
    graph of every property serves it too)."""
    start = time.perf_counter()
    study, wh = ctx.study, ctx.warehouse
    record_study(wh, study)
    clean_stale_temp_files(wh.data_dir)
    restaged = load_staged_graphs(wh)  # computed by an earlier run that could not load them
    redo = unusable_node_metrics(wh.data_dir, computed_snapshots(wh, study.name))
    forget_graphs(wh, redo)
    if restaged or redo:
        log.warning("loaded %d graphs staged by an earlier run; %d node-metrics files missing or damaged "
                    "(computed again)", restaged, len(redo))
    options = study.graphs if properties is None else study.graphs.model_copy(update={"properties": sorted(properties)})
    pending = pending_snapshots(wh, study.name, options, recompute, until_epoch)
    keys = [f"{run_id}/{epoch}" for run_id, epoch in pending.select("run_id", "epoch").rows()]
    loader = _BatchLoader(wh, options)
    # another process computing graphs of this study: wait for it, then compute only what it left
    with claimed(ctx.layout.graph_claims, keys, lambda key: log.warning(
            "the graph of snapshot %s is claimed by another process computing this study's graphs; waiting "
            "for it", key)):
        if not recompute:  # what the other process computed (loaded, or left staged) is done
            load_staged_graphs(wh)
            pending = pending_snapshots(wh, study.name, options, recompute, until_epoch)
        jobs = [SnapshotJob(**row) for row in pending.iter_rows(named=True)]
        n_snapshots = wh.query("SELECT count(*) AS n FROM snapshots s JOIN runs r USING (run_id) WHERE r.study = ? "
                               "AND s.epoch <= coalesce(?, s.epoch)", [study.name, until_epoch])["n"][0]
        batches, plan = plan_batches(jobs)
        log.info("study %s: %d snapshots, %d to compute in %d batches on %d workers x %d threads",
                 study.name, n_snapshots, len(jobs), len(batches), plan.workers, plan.threads)
        data_dir = str(wh.data_dir)
        ctx.fan_out(Work.GRAPH_BATCH, [{"jobs": b, "data_dir": data_dir, "options": options} for b in batches],
                    plan, label=f"graphs of {study.name}", sizes=[len(b) for b in batches],
                    on_result=lambda i, r: loader.add(_failed_batch(batches[i], r.error) if isinstance(r, Failed)
                                                      else r))

    graphs = loader.finish()
    record_quarantined(wh)
    loaded = time.perf_counter()
    failed = graphs.filter(pl.col("error").is_not_null())
    for row in failed.head(5).iter_rows(named=True):
        log.error("snapshot %s epoch %s failed: %s", row["run_id"], row["epoch"], row["error"])
    ctx.report_failures(failed.height, graphs.height, "snapshots' graphs",
                        "table graphs, column error; the next graph-metrics computes them")
    counts = {"computed": graphs.height - failed.height, "failed": failed.height,
              "skipped": n_snapshots - len(jobs)}
    log.info("graphs: %s in %.1f s (%.3f s per snapshot in a worker; loading %.1f s)",
             counts, loaded - start, graphs["seconds"].mean() or 0.0, loader.seconds)
    return counts
