"""Helpers shared by the prediction flows: fan-out of designs, opening a stage."""
from __future__ import annotations

from typing import Callable

from prefect import get_run_logger
from threadpoolctl import threadpool_limits

from pipeline_lib.placement import available_cores
from pipeline_lib.spec import Study, load_study
from tasks.predict import single_threaded_numerics
from warehouse.db import Warehouse
from warehouse.predict import stage_fingerprint, stage_inputs

from ._runtime import open_warehouse, process_pool

POOL_MIN_RUNS = 40  # below this, fits take milliseconds and a process pool's start-up costs more than it saves


def run_per_design(task, parameters: list[dict], n_runs: int) -> list:
    """Run one task per design matrix: on a process pool of single-threaded workers for a real
    study, in this process for a small one; results in the order of `parameters`."""
    if n_runs < POOL_MIN_RUNS or len(parameters) < 2:
        with threadpool_limits(1):
            return [task(**p) for p in parameters]
    with process_pool(min(available_cores(), len(parameters)), single_threaded_numerics) as runner:
        futures = [runner.submit(task, p) for p in parameters]
        return [f.result() for f in futures]


def open_stage(spec: str, warehouse: str | None, stage: str,
               fingerprint_of: Callable[[Warehouse, Study], str] | None = None) -> tuple[Study, Warehouse, str | None]:
    """The study, its warehouse (with the data directory the study owns) and the stage's input
    fingerprint; None instead of the fingerprint (and a log line) when the stage last ran on exactly
    these inputs, so the flow has nothing to do."""
    study = load_study(spec)
    wh = open_warehouse(warehouse, study.execution, study.name)
    fingerprint = (fingerprint_of or stage_inputs)(wh, study)
    if stage_fingerprint(wh, study.name, stage) == fingerprint:
        get_run_logger().info("%s of %s is up to date; nothing to do", stage, study.name)
        return study, wh, None
    return study, wh, fingerprint
