"""Prefect task wrapping the graph stage's unit of work (`stages.units.graph_batch`)."""
from __future__ import annotations

from prefect import task

from pipeline_lib.graphs.snapshot_metrics import GraphBatch, SnapshotJob
from pipeline_lib.spec import GraphOptions
from stages import units


@task(name="graph-metrics", persist_result=False, tags=["graphs"],
      task_run_name="graphs-from-{jobs[0].run_id}-e{jobs[0].epoch}")
def graph_metrics_task(jobs: list[SnapshotJob], data_dir: str, options: GraphOptions) -> GraphBatch:
    """Rolled graphs, node properties (written to Parquet) and summaries of a batch of snapshots."""
    return units.graph_batch(jobs, data_dir, options)
