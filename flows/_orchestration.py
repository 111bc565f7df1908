"""The stages' orchestration under Prefect (`stages.context.Orchestration`): their units of work as
Prefect tasks fanned out by `flows._fanout`, a nested stage as a subflow of that name, a published
table as an artifact; and the edge where a flow opens the study context."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from pipeline_lib.spec import ExecutionSpec
from stages.context import StudyContext, Work, open_context
from stages.units import UNITS
from tasks.graphs import graph_metrics_task
from tasks.predict import base_set_features_task, cross_validate_task, transfer_task
from tasks.training import train_group_task, train_run_task

from ._fanout import RunnerPools, fan_out

# each unit of work as its Prefect task (its initializer and kind of resources: `stages.units.UNITS`)
TASKS = {Work.TRAIN_RUN: train_run_task, Work.TRAIN_GROUP: train_group_task, Work.GRAPH_BATCH: graph_metrics_task,
         Work.FEATURES: base_set_features_task, Work.CROSS_VALIDATE: cross_validate_task, Work.TRANSFER: transfer_task}


class _ToRunLog(logging.Handler):
    def __init__(self):
        super().__init__()
        self.run_log = get_run_logger()

    def emit(self, record: logging.LogRecord) -> None:
        self.run_log.log(record.levelno, record.getMessage())


@contextmanager
def stage_logging() -> Iterator[None]:
    """The stages' log lines (plain `logging`) as the current flow run's: in the terminal and the UI."""
    logger = logging.getLogger("stages")
    saved = logger.handlers, logger.level, logger.propagate
    logger.handlers, logger.propagate = [_ToRunLog()], False
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


def run_stage(run: Callable[..., Any], context: StudyContext, options: dict | None = None) -> Any:
    """`run(context, **options)` in the current flow run, its log lines the run's."""
    with stage_logging():
        return run(context, **(options or {}))


def _in_subflow(run: Any, context: Any, options: Any = None) -> Any:
    """`run_stage` with parameters Prefect takes as they are, unvalidated (the UI shows the context's
    study spec and warehouse)."""
    return run_stage(run, context, options)


@cache
def _stage_flow(name: str):
    """A subflow named after the stage that runs it on the context its parent opened."""
    return flow(_in_subflow, name=name, log_prints=True, validate_parameters=False)


class PrefectOrchestration:
    """Units as Prefect tasks on the command's shared local pools (or Ray), stages as subflows."""

    def __init__(self) -> None:
        self.pools = RunnerPools()

    def fan_out(self, work: Work, parameters: list[dict], execution: ExecutionSpec, plan, **display) -> list:
        _, initializer, resources = UNITS[work]
        return fan_out(TASKS[work], parameters, execution, plan, stage=resources, initializer=initializer,
                       pools=self.pools, **display)

    def stage(self, name: str, run: Callable[..., Any], context: StudyContext, **options) -> Any:
        return _stage_flow(name)(run, context, options)

    def publish_table(self, rows: list[dict], key: str, description: str) -> None:
        create_table_artifact(rows, key=key, description=description)


@contextmanager
def study_context(spec: str | Path, warehouse: str | Path | None,
                  execution: ExecutionSpec | None = None) -> Iterator[StudyContext]:
    """The edge: the study context of a command line or a deployment's flow run, opened once; its
    process pools end with it."""
    orchestration = PrefectOrchestration()
    try:
        yield open_context(spec, warehouse, execution, orchestration)
    finally:
        orchestration.pools.close()
