"""Training sweep flow: expand a study into runs and train them concurrently, then load the warehouse.

    python -m flows.train_sweep --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Runs are fanned out on a process pool, one worker per device slot (GPUs: `runs_per_device` per
GPU; CPU: the cores divided among workers). Finished runs are skipped, interrupted runs resume.
Only this flow's process writes the DuckDB file.
"""
from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline_lib.placement import plan_placement
from pipeline_lib.spec import ExecutionSpec, expand_runs, load_study
from pipeline_lib.training import is_finished
from tasks.training import set_torch_threads, train_run_task
from warehouse.runs import record_runs, record_study

from ._cli import execution_from_args, run_cli, study_arguments
from ._runtime import make_task_runner, open_warehouse, requesting, training_device


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn())


@flow(name="train-sweep", log_prints=True)
def train_sweep(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None) -> dict:
    """Train every run of the study; returns counts by status. `execution` overrides the spec's."""
    logger = get_run_logger()
    study = load_study(spec)
    execution = execution or study.execution
    wh = open_warehouse(warehouse, execution)
    record_study(wh, study)
    configs = expand_runs(study)
    data_dir = str(wh.data_dir)
    todo = [c for c in configs if not is_finished(c, data_dir)]
    placement = plan_placement(study.device, study.runs_per_device)
    logger.info("study %s: %d runs (%d to train) on %s, %d torch threads each",
                study.name, len(configs), len(todo), ",".join(sorted(set(placement.slots))), placement.threads_per_slot)

    results, errors = {}, {}
    # Runs already finished are read back without a worker; the rest go to the pool.
    for config in configs:
        if config not in todo:
            results[config.run_id] = train_run_task.fn(config, data_dir, "cpu")
    if todo:
        runner = make_task_runner(execution, min(placement.concurrency, len(todo)), set_torch_threads,
                                  (placement.threads_per_slot,))
        with runner, _progress() as bar, requesting(execution, "training"):
            job = bar.add_task(f"training {study.name}", total=len(todo), status="")
            futures = {runner.submit(train_run_task, {"config": c, "data_dir": data_dir, "device": training_device(
                           execution, placement.slots[i % placement.concurrency])}): c
                       for i, c in enumerate(todo)}
            for future in as_completed(list(futures)):
                config = futures[future]
                try:
                    results[config.run_id] = future.result()
                except Exception as e:  # a failed run is recorded; the sweep goes on
                    errors[config.run_id] = f"{type(e).__name__}: {e}"
                    logger.error("run %s failed: %s", config.run_id, errors[config.run_id])
                bar.update(job, advance=1, status=f"{len(errors)} failed" if errors else "")
    record_runs(wh, study.name, configs, results, errors)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    if errors:
        counts["failed"] = len(errors)
    logger.info("runs by status: %s; warehouse %s; snapshots under %s", counts, wh.path, wh.data_dir / "snapshots")
    return counts


def main() -> None:
    args = study_arguments(__doc__.splitlines()[0]).parse_args()
    study = load_study(args.spec)  # validate before starting Prefect, so bad specs fail fast and plainly
    train_sweep(args.spec, args.warehouse, execution_from_args(args, study))


if __name__ == "__main__":
    run_cli(main)
