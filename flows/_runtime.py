"""Prefect runtime helpers shared by the flows."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from prefect.client.orchestration import get_client
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner

from pipeline_lib.spec import ExecutionSpec

from ._cli import start_pool_worker


def share_api_with_workers() -> None:
    """Point process-pool workers at this flow's API.

    Without a configured server each spawned worker would start its own ephemeral server
    (seconds each, and task runs invisible to the flow's UI). Workers inherit os.environ.
    """
    if not os.environ.get("PREFECT_API_URL"):
        with get_client(sync_client=True) as client:
            os.environ["PREFECT_API_URL"] = str(client.api_url).rstrip("/")


def _process_pool(workers: int, initializer=None, initargs: tuple = ()) -> ProcessPoolTaskRunner:
    """A process pool whose workers report to this flow's API."""
    share_api_with_workers()
    return ProcessPoolTaskRunner(max_workers=max(1, workers), initializer=start_pool_worker,
                                 initargs=(initializer, *initargs))


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def make_task_runner(execution: ExecutionSpec, workers: int, initializer=None, initargs: tuple = ()) -> TaskRunner:
    """The task runner the execution spec asks for: a local process pool, or Prefect's RayTaskRunner.

    On Ray, `workers`, `initializer` and `initargs` do not apply: Ray schedules the tasks by the
    resources they request (see `requesting`). Ray workers import this project from PROJECT_ROOT,
    which must therefore be the same path on every node.
    """
    if execution.runner == "local":
        return _process_pool(workers, initializer, initargs)
    from prefect_ray import RayTaskRunner

    share_api_with_workers()
    env = {"PYTHONPATH": str(PROJECT_ROOT), "PREFECT_API_URL": os.environ["PREFECT_API_URL"],
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return RayTaskRunner(address=execution.ray_address, init_kwargs={"runtime_env": {"env_vars": env}})


@contextmanager
def requesting(execution: ExecutionSpec, stage: Literal["training", "graphs", "prediction"]) -> Iterator[None]:
    """Tasks submitted inside ask Ray for the stage's resources (a prediction task: one CPU, its fits
    are single-threaded); nothing changes on the local runner.

    Also hands the flow's API address to the Ray tasks, whose settings come from the submitting
    context rather than from their own environment.
    """
    if execution.runner == "local":
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_ray.context import remote_options

    if stage == "training":
        resources = {"num_cpus": execution.cpus_per_training_task, "num_gpus": execution.gpus_per_training_task}
    elif stage == "graphs":
        resources = {"num_cpus": execution.cpus_per_graph_task}
    else:
        resources = {"num_cpus": 1}
    with temporary_settings({PREFECT_API_URL: os.environ["PREFECT_API_URL"]}), remote_options(**resources):
        yield
