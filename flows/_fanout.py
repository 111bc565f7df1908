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

from contextlib import nullcontext
from typing import Any, Callable, Literal

from prefect.futures import wait
from prefect.task_runners import ProcessPoolTaskRunner

from pipeline_lib.placement import WorkerPlan
from pipeline_lib.progress import FanOutDisplay
from pipeline_lib.spec import ExecutionSpec
from stages.context import Detail, Failed  # noqa: F401  (the result of a unit that raised; callers import it here)
from stages.local import POLL_SECONDS, collect, run_each

from ._cli import start_pool_worker
from ._runtime import make_task_runner, requesting, share_api_with_workers



class SharedProcessPool(ProcessPoolTaskRunner):
    """Prefect's process pool, kept open across the fan-outs of one command (`RunnerPools`)."""

    def for_current_run(self) -> "SharedProcessPool":
        """Task runs submitted next belong to the current flow run: Prefect caches the submitting
        context (flow run, settings) at a runner's first submit, for that runner's life."""
        self._cached_context = self._cached_env = None
        return self


class RunnerPools:
    """The local process pools of one command, one per kind of worker (initializer, workers, threads),
    started at their first fan-out and kept until `close`: the rungs of a triaged sweep, and the
    stages of a study, train in one pool instead of starting one (seconds: torch imports) each."""

    def __init__(self) -> None:
        self._open: dict[tuple, SharedProcessPool] = {}

    def runner(self, plan: WorkerPlan, initializer: Callable[[int], None] | None) -> SharedProcessPool:
        key = (initializer, plan.workers, plan.threads)
        if key not in self._open:
            share_api_with_workers()
            initargs = (plan.threads,) if initializer is not None else ()
            pool = SharedProcessPool(max_workers=max(1, plan.workers), initializer=start_pool_worker,
                                     initargs=(initializer, *initargs))
            self._open[key] = pool.__enter__()
        return self._open[key].for_current_run()

    def __deepcopy__(self, memo: dict) -> "RunnerPools":
        """The command's own pools, never copies (Prefect deep-copies a subflow's parameters to show them)."""
        return self

    def __reduce__(self):
        """Pickled (with the flow run's context sent to a task's worker) as no pools: workers start none."""
        return RunnerPools, ()

    def close(self) -> None:
        for pool in self._open.values():
            pool.__exit__(None, None, None)
        self._open.clear()


def fan_out(task, parameters: list[dict], execution: ExecutionSpec, plan: WorkerPlan, *,
            stage: Literal["training", "graphs", "prediction"], label: str, sizes: list[int] | None = None,
            initializer: Callable[[int], None] | None = None, on_result: Callable[[int, Any], None] | None = None,
            detail: Detail | None = None, pools: RunnerPools | None = None) -> list:
    """Run `task(**p)` for every p; the results (or `Failed`) in the order of `parameters`.

    `initializer(plan.threads)` sets a worker's thread counts (in this process, only for the
    units' duration). `sizes` weights the progress bar (default 1 per unit). `pools`: the command's
    open local pools to reuse (else a pool for this fan-out alone).
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
            _on_runner(task, parameters, execution, plan, stage, initializer, finished, display, sizes, pools)
    return results


def _on_runner(task, parameters, execution, plan, stage, initializer, finished, display, sizes, pools) -> None:
    if execution.runner == "local" and pools is not None:
        runner = nullcontext(pools.runner(plan, initializer))
    else:
        initargs = (plan.threads,) if initializer is not None else ()
        runner = make_task_runner(execution, plan.workers, initializer, initargs)
    with runner as runner, requesting(execution, stage):
        futures = {runner.submit(task, p): i for i, p in enumerate(parameters)}
        collect(futures, lambda pending: wait(list(pending), timeout=POLL_SECONDS), finished, display, sizes)
