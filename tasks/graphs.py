"""Prefect task wrapping the graph stage's unit of work: a batch of snapshots to graphs and metrics."""
from __future__ import annotations

from prefect import task

from pipeline_lib.graphs.snapshot_metrics import GraphBatch, SnapshotJob, process_snapshots
from pipeline_lib.spec import GraphOptions


def set_graph_threads(threads: int) -> None:
    """Process-pool initializer: graph-tool's OpenMP threads, BLAS's (scipy's eigensolvers) and torch's,
    so that workers x threads = cores (oversubscribed BLAS threads made ARPACK 3x slower here)."""
    import graph_tool
    import torch
    from threadpoolctl import threadpool_limits

    graph_tool.openmp_set_num_threads(threads)
    threadpool_limits(threads)
    torch.set_num_threads(threads)


@task(name="graph-metrics", persist_result=False, tags=["graphs"],
      task_run_name="graphs-from-{jobs[0].run_id}-e{jobs[0].epoch}")
def graph_metrics_task(jobs: list[SnapshotJob], data_dir: str, options: GraphOptions) -> GraphBatch:
    """Rolled graphs, node properties (written to Parquet) and summaries of a batch of snapshots."""
    return process_snapshots(jobs, data_dir, options)
