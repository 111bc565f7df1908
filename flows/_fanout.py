"""The one way the flows fan work out: `fan_out`.

A stage cuts its work into units (the planners in `pipeline_lib.placement` say how many, on how
many workers of how many threads, and whether a pool is worth starting), and `fan_out` runs them:
in the flow's own process when the plan says so and the runner is local, else on the local process
pool or on Ray (`execution.runner`; a stage asked to run on Ray always does). A unit whose task
raises becomes a `Failed` in its place, for the flow to record; the others go on. Results come back
in submission order, and to `on_result` as each unit finishes. One rich progress display per
stage: units done (weighted by `sizes`), failures, and optionally a finer count the stage polls
(`stages.context.Detail`).
"""
from __future__ import annotations

from typing import Any, Callable, Literal

from prefect.futures import wait

from pipeline_lib.placement import WorkerPlan
from pipeline_lib.spec import ExecutionSpec
from pipeline_lib.progress import FanOutDisplay
from stages.context import Detail, Failed
from stages.local import run_each

from ._runtime import make_task_runner, requesting

POLL_SECONDS = 1.0


def fan_out(task, parameters: list[dict], execution: ExecutionSpec, plan: WorkerPlan, *,
            stage: Literal["training", "graphs", "prediction"], label: str, sizes: list[int] | None = None,
            initializer: Callable[[int], None] | None = None, on_result: Callable[[int, Any], None] | None = None,
            detail: Detail | None = None) -> list:
    """Run `task(**p)` for every p; the results (or `Failed`) in the order of `parameters`.

    `initializer(plan.threads)` sets a worker's thread counts (in this process, only for the
    units' duration). `sizes` weights the progress bar (default 1 per unit).
    """
    sizes = sizes or [1] * len(parameters)
    results: list = [None] * len(parameters)

    def finished(i: int, value) -> None:
        results[i] = value
        if on_result is not None:
            on_result(i, value)

    if not parameters:
        return results
    with FanOutDisplay(label, sum(sizes), detail) as display:
        if plan.in_process and execution.runner == "local":
            run_each(task, parameters, plan.threads, initializer, finished, display, sizes)
        else:
            _on_runner(task, parameters, execution, plan, stage, initializer, finished, display, sizes)
    return results


def _on_runner(task, parameters, execution, plan, stage, initializer, finished, display, sizes) -> None:
    initargs = (plan.threads,) if initializer is not None else ()
    runner = make_task_runner(execution, plan.workers, initializer, initargs)
    with runner, requesting(execution, stage):
        futures = {runner.submit(task, p): i for i, p in enumerate(parameters)}
        pending = list(futures)
        while pending:
            done, not_done = wait(pending, timeout=POLL_SECONDS)
            for future in done:
                i = futures[future]
                try:
                    value = future.result()
                except Exception as e:  # a crashed worker fails its unit, not the flow
                    value = Failed.of(e)
                finished(i, value)
                display.advance(sizes[i], isinstance(value, Failed))
            pending = list(not_done)
            display.poll()
