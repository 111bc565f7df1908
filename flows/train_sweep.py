"""Training sweep flow: expand a study into runs and train them concurrently, then load the warehouse.

    python -m flows.train_sweep --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

With `execution.stacked: true` (the default) runs that share `RunConfig.group_key` and dataset are
cut into groups of at most `execution.stack_size`, and each group trains as one vectorised model in
one task (`pipeline_lib.stacked`); with `stacked: false` every run is its own task. Tasks are
submitted largest estimated cost first, in more units than workers (`placement.plan_groups`), so
the workers finish together. They fan out (`flows._fanout`) on a process pool, one worker per
device slot (every visible GPU `execution.runs_per_device` times, default 2; or the CPU cores,
divided among the workers), or on Ray. Finished runs are read back, interrupted runs resume. A live
display follows runs and epochs (tasks write per-epoch progress files that the flow polls; each
task also keeps a Prefect progress artifact for the UI). Only this flow's process writes the DuckDB
file; group timings (GPU utilisation and memory included) go to the `training_groups` table.
With a `triage:` section, every run is trained to `at_epoch`, `flows.triage` decides (once) which
runs go on and stops the others, and the kept runs are trained to the end (`_triaged`).
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, execution_from_args, load_runnable_study, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

import shutil
import uuid

from prefect import flow, get_run_logger

from pipeline_lib.claims import claimed_runs
from pipeline_lib.layout import DataLayout
from pipeline_lib.placement import plan_groups, plan_placement, plan_workers, run_cost
from pipeline_lib.progress import epochs_reported
from pipeline_lib.run_state import RunResult
from pipeline_lib.files import clean_stale_temp_files
from pipeline_lib.spec import ExecutionSpec, RunConfig, expand_runs, load_study
from pipeline_lib.training import finished_result
from pipeline_lib.vocabulary import RunStatus
from tasks.training import set_torch_threads, train_group_task, train_run_task
from warehouse.quarantine import record_quarantined
from warehouse.runs import record_runs, record_study, record_training_groups

from ._fanout import Detail, Failed, fan_out
from ._runtime import open_warehouse, training_device
from .triage import TRIAGE_ERRORS, check_triage, triage


def _parameters(unit: list[RunConfig], stacked: bool, data_dir: str, device: str, options: dict,
                progress_file: str, until_epoch: int | None) -> dict:
    if stacked:
        return {"configs": unit, "data_dir": data_dir, "device": device, "options": options,
                "progress_file": progress_file, "until_epoch": until_epoch}
    return {"config": unit[0], "data_dir": data_dir, "device": device, "progress_file": progress_file,
            "until_epoch": until_epoch}


@flow(name="train-sweep", log_prints=True)
def train_sweep(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None,
                until_epoch: int | None = None, run_ids: list[str] | None = None) -> dict:
    """Train every run of the study (or those of `run_ids`, to `until_epoch` at most); returns counts
    by status. `execution` overrides the spec's. A spec with `triage:` runs the three phases of
    `_triaged` instead."""
    logger = get_run_logger()
    study = load_study(spec)
    if study.triage is not None and until_epoch is None and run_ids is None:
        return _triaged(spec, warehouse, execution, study.triage.at_epoch)
    execution = execution or study.execution
    wh = open_warehouse(warehouse, execution, study.name)
    record_study(wh, study)
    configs = [c for c in expand_runs(study) if run_ids is None or c.run_id in run_ids]
    data_dir = str(wh.data_dir)
    clean_stale_temp_files(data_dir)
    # another process training runs of this study: wait for it, then they are finished or resumable
    with claimed_runs(data_dir, [c.run_id for c in configs], logger.warning):
        results: dict[str, RunResult] = {}
        todo = []
        for config in configs:
            # finished runs are read back without a worker; one with a damaged file is trained again
            done = finished_result(config, data_dir, until_epoch)
            if done is None:
                todo.append(config)
            else:
                results[config.run_id] = done
        placement = plan_placement(execution.device, execution.runs_per_device)
        if execution.stacked:
            units = plan_groups(todo, execution.stack_size, placement.concurrency)
        else:
            units = [[c] for c in sorted(todo, key=run_cost, reverse=True)]
        plan = plan_workers(len(units), placement.concurrency)
        options = execution.stack_options.model_dump()
        logger.info("study %s: %d runs (%d to train) in %d %s on %s, %d workers x %d torch threads",
                    study.name, len(configs), len(todo), len(units), "stacked groups" if execution.stacked else "tasks",
                    ",".join(sorted(set(placement.slots))), plan.workers, plan.threads)

        errors: dict[str, str] = {}
        groups = []
        if units:
            progress_dir = DataLayout(wh.data_dir).progress(uuid.uuid4().hex)
            devices = [training_device(execution, placement.slots[i % placement.concurrency]) for i in range(len(units))]
            parameters = [_parameters(unit, execution.stacked, data_dir, device, options, str(progress_dir / f"{i}.json"),
                                      until_epoch) for i, (unit, device) in enumerate(zip(units, devices))]
            epochs = Detail("epochs", sum(min(c.epochs, until_epoch or c.epochs) + 1 for c in todo),
                            lambda: sum(e + 1 for e in epochs_reported(progress_dir).values())
                            if progress_dir.exists() else 0)
            try:
                outcomes = fan_out(train_group_task if execution.stacked else train_run_task, parameters, execution,
                                   plan, stage="training", label=f"runs of {study.name}",
                                   sizes=[len(u) for u in units], initializer=set_torch_threads, detail=epochs)
            finally:
                shutil.rmtree(progress_dir, ignore_errors=True)
            for unit, outcome in zip(units, outcomes):
                if isinstance(outcome, Failed):  # recorded; the sweep went on
                    errors.update((c.run_id, outcome.error) for c in unit)
                    logger.error("training of %d run(s) failed: %s", len(unit), outcome.error)
                elif isinstance(outcome, RunResult):
                    results[outcome.run_id] = outcome
                else:  # a stacked group
                    results.update((r.run_id, r) for r in outcome.results)
                    groups.append(([c.run_id for c in unit], outcome.timings))
    record_runs(wh, study.name, configs, results, errors)
    if groups:
        record_training_groups(wh, study.name, groups, options)
    if quarantined := record_quarantined(wh):
        logger.warning("%d file(s) quarantined so far under %s (table quarantined_files); their runs were "
                       "trained again", quarantined, wh.data_dir / "quarantine")
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    if errors:
        counts[RunStatus.FAILED.value] = len(errors)
    logger.info("runs by status: %s; warehouse %s; snapshots under %s", counts, wh.path, DataLayout(wh.data_dir).snapshots)
    return counts


def _triaged(spec: str, warehouse: str | None, execution: ExecutionSpec | None, at_epoch: int) -> dict:
    """Every run to `at_epoch`; the triage decides once which continue (flows.triage) and stops the
    others; the kept runs to the end. Each phase skips what is done, so a re-run after a kill trains
    and decides nothing twice. Returns the study's runs by status."""
    train_sweep(spec, warehouse, execution, until_epoch=at_epoch)
    kept = triage(spec, warehouse, execution)
    train_sweep(spec, warehouse, execution, run_ids=kept)
    study = load_study(spec)
    wh = open_warehouse(warehouse, execution or study.execution, study.name)
    return dict(wh.query("SELECT status, count(*) AS n FROM runs WHERE study = ? GROUP BY status ORDER BY status",
                         [study.name]).rows())


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    study = load_runnable_study(args.spec, trains=True)  # before Prefect starts, so bad specs fail fast and plainly
    check_warehouse("train_sweep", args, study.name)
    execution = execution_from_args(args, study)
    check_triage(args.warehouse, study)
    train_sweep(args.spec, args.warehouse, execution)


if __name__ == "__main__":
    run_cli(main, user_errors=TRIAGE_ERRORS)
