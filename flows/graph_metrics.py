"""Graph-metrics flow: every snapshot of a study becomes a rolled graph, node metrics and summaries.

    python -m flows.graph_metrics --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb] [--recompute]

Reads the `snapshots` of the study's runs, skips those already in `graphs` without error, and
fans batches of snapshots out on a process pool: one worker per core at most, graph-tool's
OpenMP threads set so that workers x threads = cores. Node metrics go to Parquet (written by the
workers); the flow loads `graphs` and `graph_summaries` (replacing the rows of recomputed
snapshots) and refreshes the `node_metrics` view. A snapshot that fails is recorded with its
error and does not stop the others.
"""
from __future__ import annotations

import time

import numpy as np
import polars as pl
from prefect import flow, get_run_logger
from prefect.futures import as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline_lib.graphs.snapshot_metrics import GRAPH_ROW_SCHEMA, GraphBatch, SnapshotJob
from pipeline_lib.placement import available_cores
from pipeline_lib.spec import load_study
from tasks.graphs import graph_metrics_task, set_graph_threads
from warehouse.db import Warehouse
from warehouse.graphs import pending_snapshots, record_graph_results
from warehouse.runs import record_study

from ._cli import run_cli, study_arguments
from ._runtime import process_pool

BATCHES_PER_WORKER = 4  # enough to balance widths of different cost, few enough to keep task overhead small


def plan_batches(jobs: list[SnapshotJob], cores: int) -> tuple[list[list[SnapshotJob]], int, int]:
    """Split the jobs (ordered by run) into batches; (batches, workers, OpenMP threads per worker)."""
    n_batches = min(len(jobs), cores * BATCHES_PER_WORKER)
    batches = [list(b) for b in np.array_split(np.array(jobs, dtype=object), n_batches)] if jobs else []
    workers = max(1, min(cores, len(batches)))
    return batches, workers, max(1, cores // workers)


def _failed_batch(batch: list[SnapshotJob], error: str) -> GraphBatch:
    rows = [{"run_id": j.run_id, "epoch": j.epoch, "error": error} for j in batch]
    return GraphBatch(pl.DataFrame(rows, schema=GRAPH_ROW_SCHEMA), pl.DataFrame())


@flow(name="graph-metrics", log_prints=True)
def graph_metrics(spec: str, warehouse: str | None = None, recompute: bool = False) -> dict:
    """Compute the graphs of every pending snapshot of the study; returns counts."""
    logger = get_run_logger()
    start = time.perf_counter()
    study = load_study(spec)
    wh = Warehouse(warehouse) if warehouse else Warehouse()
    record_study(wh, study)
    pending = pending_snapshots(wh, study.name, recompute)
    jobs = [SnapshotJob(**row) for row in pending.iter_rows(named=True)]
    n_snapshots = wh.query("SELECT count(*) AS n FROM snapshots s JOIN runs r USING (run_id) WHERE r.study = ?",
                           [study.name])["n"][0]
    batches, workers, threads = plan_batches(jobs, available_cores())
    logger.info("study %s: %d snapshots, %d to compute in %d batches on %d workers x %d threads",
                study.name, n_snapshots, len(jobs), len(batches), workers, threads)

    data_dir, options = str(wh.data_dir), study.graphs
    results: list[GraphBatch] = []
    if len(batches) == 1:  # not worth starting a pool
        set_graph_threads(threads)
        try:
            results.append(graph_metrics_task(batches[0], data_dir, options))
        except Exception as e:
            results.append(_failed_batch(batches[0], f"{type(e).__name__}: {e}"))
    elif batches:
        runner = process_pool(workers, set_graph_threads, (threads,))
        with runner, Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn()) as bar:
            job = bar.add_task(f"graphs of {study.name}", total=len(jobs))
            futures = {runner.submit(graph_metrics_task, {"jobs": b, "data_dir": data_dir, "options": options}): b
                       for b in batches}
            for future in as_completed(list(futures)):
                batch = futures[future]
                try:
                    results.append(future.result())
                except Exception as e:  # a crashed worker fails its batch, not the flow
                    results.append(_failed_batch(batch, f"{type(e).__name__}: {e}"))
                bar.update(job, advance=len(batch))

    computed = time.perf_counter()
    graphs = pl.concat([r.graphs for r in results]) if results else pl.DataFrame(schema=GRAPH_ROW_SCHEMA)
    summaries = pl.concat([r.summaries for r in results if not r.summaries.is_empty()] or [pl.DataFrame()])
    record_graph_results(wh, graphs, summaries)
    loaded = time.perf_counter()
    failed = graphs.filter(pl.col("error").is_not_null())
    for row in failed.head(5).iter_rows(named=True):
        logger.error("snapshot %s epoch %s failed: %s", row["run_id"], row["epoch"], row["error"])
    counts = {"computed": graphs.height - failed.height, "failed": failed.height,
              "skipped": n_snapshots - len(jobs)}
    logger.info("graphs: %s in %.1f s (computing %.1f s, %.3f s per snapshot in a worker; loading %.1f s)",
                counts, loaded - start, computed - start, graphs["seconds"].mean() or 0.0, loaded - computed)
    return counts


def main() -> None:
    parser = study_arguments(__doc__.splitlines()[0])
    parser.add_argument("--recompute", action="store_true", help="recompute snapshots already in the warehouse")
    args = parser.parse_args()
    load_study(args.spec)  # validate before starting Prefect, so bad specs fail fast and plainly
    graph_metrics(args.spec, args.warehouse, args.recompute)


if __name__ == "__main__":
    run_cli(main)
