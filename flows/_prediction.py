"""Helpers shared by the prediction flows: opening a stage, the designs that finished."""
from __future__ import annotations

from typing import Callable

from prefect import get_run_logger

from pipeline_lib.spec import ExecutionSpec, Study, load_study
from warehouse.db import Warehouse
from warehouse.predict import stage_fingerprint, stage_inputs

from ._fanout import Failed
from ._runtime import open_warehouse


def open_stage(spec: str, warehouse: str | None, stage: str,
               fingerprint_of: Callable[[Warehouse, Study], str] | None = None,
               execution: ExecutionSpec | None = None) -> tuple[Study, Warehouse, str | None]:
    """The study, its warehouse (with the data directory the study owns) and the stage's input
    fingerprint; None instead of the fingerprint (and a log line) when the stage last ran on exactly
    these inputs, so the flow has nothing to do."""
    study = load_study(spec)
    wh = open_warehouse(warehouse, execution or study.execution, study.name)
    fingerprint = (fingerprint_of or stage_inputs)(wh, study)
    if stage_fingerprint(wh, study.name, stage) == fingerprint:
        get_run_logger().info("%s of %s is up to date; nothing to do", stage, study.name)
        return study, wh, None
    return study, wh, fingerprint


def finished_designs(designs: dict, results: list, logger) -> tuple[list[tuple], int]:
    """((feature_set, k), result) of the designs whose task succeeded, and how many failed (each
    logged with its error; the stage then stays unrecorded, so that the next run tries them again)."""
    done, failed = [], 0
    for (feature_set, k), result in zip(designs, results):
        if isinstance(result, Failed):
            failed += 1
            logger.error("design %s k=%d failed: %s", feature_set, k, result.error)
        else:
            done.append(((feature_set, k), result))
    return done, failed
