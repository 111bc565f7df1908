"""Training sweep: expand a study into runs and train them concurrently, then load the warehouse.

With `execution.stacked: true` (the default) runs that share `RunConfig.group_key` and dataset are
cut into groups of at most `execution.stack_size`, and each group trains as one vectorised model in
one task (`pipeline_lib.stacked`); with `stacked: false` every run is its own task. Tasks are
submitted largest estimated cost first, in more units than workers (`placement.plan_groups`), so
the workers finish together. They fan out (`flows._fanout`) on a process pool, one worker per
device slot (every visible GPU `execution.runs_per_device` times, default 2; or the CPU cores,
divided among the workers), or on Ray. Finished runs are read back, interrupted runs resume. A live
display follows runs and epochs (tasks write per-epoch progress files that the stage polls; each
task also keeps a Prefect progress artifact for the UI). Only this stage's process writes the DuckDB
file; group timings (GPU utilisation and memory included) go to the `training_groups` table.
With a `triage:` section, rung by rung, the rung's cohort (every run at the first) is trained to
the rung and the triage stage (`stages.triage`) decides (once) which go on and stops the others; a
stacked group goes on with only its kept members (they are grouped anew); the runs kept at the last
rung are trained to the end.
"""
from __future__ import annotations

import logging
import shutil
import time
import uuid

from pipeline_lib.claims import claimed
from pipeline_lib.placement import plan_groups, plan_placement, plan_workers, run_cost
from pipeline_lib.progress import epochs_reported
from pipeline_lib.run_state import RunResult
from pipeline_lib.files import clean_stale_temp_files
from pipeline_lib.spec import ExecutionSpec, RunConfig, expand_runs
from pipeline_lib.training import finished_result
from pipeline_lib.vocabulary import RunStatus
from warehouse.quarantine import record_quarantined
from warehouse.runs import record_runs, record_study, record_training_groups
from warehouse.triage import recorded_decisions

from . import triage
from .context import Detail, Failed, StudyContext, Work

log = logging.getLogger(__name__)


def training_device(execution: ExecutionSpec, local_slot: str) -> str:
    """The device a training task uses: its local slot, or on Ray the GPU Ray assigned (else CPU)."""
    if execution.runner == "local":
        return local_slot
    return "cuda" if execution.gpus_per_training_task > 0 else "cpu"


def _parameters(unit: list[RunConfig], stacked: bool, data_dir: str, device: str, options: dict,
                progress_file: str, until_epoch: int | None) -> dict:
    if stacked:
        return {"configs": unit, "data_dir": data_dir, "device": device, "options": options,
                "progress_file": progress_file, "until_epoch": until_epoch}
    return {"config": unit[0], "data_dir": data_dir, "device": device, "progress_file": progress_file,
            "until_epoch": until_epoch}


def run(ctx: StudyContext, until_epoch: int | None = None, run_ids: list[str] | None = None) -> dict:
    """Train every run of the study (or those of `run_ids`, to `until_epoch` at most); returns counts
    by status. A spec with `triage:` runs the phases of `triaged` instead."""
    study, wh, execution = ctx.study, ctx.warehouse, ctx.execution
    if study.triage is not None and until_epoch is None and run_ids is None:
        return triaged(ctx)
    record_study(wh, study)
    configs = [c for c in expand_runs(study) if run_ids is None or c.run_id in run_ids]
    data_dir = str(wh.data_dir)
    clean_stale_temp_files(data_dir)
    # another process training runs of this study: wait for it, then they are finished or resumable
    with claimed(ctx.layout.run_claims, [c.run_id for c in configs],
                 lambda run_id: log.warning("run %s is claimed by another process training this study; waiting "
                                            "for it", run_id)):
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
        log.info("study %s: %d runs (%d to train) in %d %s on %s, %d workers x %d torch threads",
                 study.name, len(configs), len(todo), len(units), "stacked groups" if execution.stacked else "tasks",
                 ",".join(sorted(set(placement.slots))), plan.workers, plan.threads)

        errors: dict[str, str] = {}
        groups = []
        if units:
            progress_dir = ctx.layout.progress(uuid.uuid4().hex)
            devices = [training_device(execution, placement.slots[i % placement.concurrency]) for i in range(len(units))]
            parameters = [_parameters(unit, execution.stacked, data_dir, device, options, str(progress_dir / f"{i}.json"),
                                      until_epoch) for i, (unit, device) in enumerate(zip(units, devices))]
            epochs = Detail("epochs", sum(min(c.epochs, until_epoch or c.epochs) + 1 for c in todo),
                            lambda: sum(e + 1 for e in epochs_reported(progress_dir).values())
                            if progress_dir.exists() else 0)
            try:
                outcomes = ctx.fan_out(Work.TRAIN_GROUP if execution.stacked else Work.TRAIN_RUN, parameters, plan,
                                       label=f"runs of {study.name}", sizes=[len(u) for u in units], detail=epochs)
            finally:
                shutil.rmtree(progress_dir, ignore_errors=True)
            for unit, outcome in zip(units, outcomes):
                if isinstance(outcome, Failed):  # recorded; the sweep went on
                    errors.update((c.run_id, outcome.error) for c in unit)
                    log.error("training of %d run(s) failed: %s", len(unit), outcome.error)
                elif isinstance(outcome, RunResult):
                    results[outcome.run_id] = outcome
                else:  # a stacked group
                    results.update((r.run_id, r) for r in outcome.results)
                    groups.append(([c.run_id for c in unit], outcome.timings))
    record_runs(wh, study.name, configs, results, errors)
    ctx.report_failures(len(errors), len(configs), "runs", "table runs, status failed; the next train-sweep trains them")
    if groups:
        record_training_groups(wh, study.name, groups, options)
    if quarantined := record_quarantined(wh):
        log.warning("%d file(s) quarantined so far under %s (table quarantined_files); their runs were "
                    "trained again", quarantined, ctx.layout.quarantine)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    if errors:
        counts[RunStatus.FAILED.value] = len(errors)
    log.info("runs by status: %s; warehouse %s; snapshots under %s", counts, wh.path, ctx.layout.snapshots)
    return counts


def triaged(ctx: StudyContext) -> dict:
    """The rung's cohort to the rung (at the first rung every run), the triage decides once which
    continue and stops the others, and so on for each rung; the runs kept at the last rung to the end.
    Each phase skips what is done, so a re-run after a kill trains and decides nothing twice. Each
    phase is a stage of its own (in the Prefect UI, a subflow). Then the triage's savings go to
    `costs`. Returns the study's runs by status."""
    kept, start = None, time.perf_counter()
    decided = recorded_decisions(ctx.warehouse, ctx.study.name)
    deciding = set(ctx.study.triage.rungs) - set(decided["rung"].to_list() if decided.height else [])
    for rung in ctx.study.triage.rungs:
        ctx.stage("train-sweep", run, until_epoch=rung, run_ids=kept)
        kept = ctx.stage("triage", triage.run, rung=rung)
    ctx.stage("train-sweep", run, run_ids=kept)
    # the wall time only when this command decided a rung (a re-run that reads every decision back trains nothing)
    triage.record_triage_savings(ctx, time.perf_counter() - start if deciding else None)
    return dict(ctx.warehouse.query("SELECT status, count(*) AS n FROM runs WHERE study = ? GROUP BY status "
                                    "ORDER BY status", [ctx.study.name]).rows())
