"""Prefect runtime helpers shared by the flows."""
from __future__ import annotations

import os

from prefect.client.orchestration import get_client
from prefect.task_runners import ProcessPoolTaskRunner


def share_api_with_workers() -> None:
    """Point process-pool workers at this flow's API.

    Without a configured server each spawned worker would start its own ephemeral server
    (seconds each, and task runs invisible to the flow's UI). Workers inherit os.environ.
    """
    if not os.environ.get("PREFECT_API_URL"):
        with get_client(sync_client=True) as client:
            os.environ["PREFECT_API_URL"] = str(client.api_url).rstrip("/")


def process_pool(workers: int, initializer=None, initargs: tuple = ()) -> ProcessPoolTaskRunner:
    """A process pool whose workers report to this flow's API."""
    share_api_with_workers()
    return ProcessPoolTaskRunner(max_workers=max(1, workers), initializer=initializer, initargs=initargs)
