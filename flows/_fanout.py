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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from threadpoolctl import threadpool_limits

from pipeline_lib.placement import WorkerPlan
from pipeline_lib.spec import ExecutionSpec
from stages.context import Detail, Failed

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
    with _Display(label, sum(sizes), detail) as display:
        if plan.in_process and execution.runner == "local":
            _in_process(task, parameters, plan.threads, initializer, finished, display, sizes)
        else:
            _on_runner(task, parameters, execution, plan, stage, initializer, finished, display, sizes)
    return results


def _in_process(task, parameters, threads, initializer, finished, display, sizes) -> None:
    import torch

    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS/OpenMP thread counts the initializer sets
        try:
            if initializer is not None:
                initializer(threads)
            for i, p in enumerate(parameters):
                try:
                    value = task(**p)
                except Exception as e:
                    value = Failed.of(e)
                finished(i, value)
                display.advance(sizes[i], isinstance(value, Failed))
        finally:
            torch.set_num_threads(torch_threads)


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


class _Display:
    """The stage's live progress: units done and failed, and the flow's own finer count."""

    def __init__(self, label: str, total: int, detail: Detail | None):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        self.units = self.bar.add_task(label, total=total, status="")
        self.detail, self.failed = detail, 0
        self.detail_line = self.bar.add_task(detail.label, total=detail.total, status="") if detail else None

    def __enter__(self) -> "_Display":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.detail is not None and exc[0] is None:
            self.bar.update(self.detail_line, completed=self.detail.total)
        self.bar.__exit__(*exc)

    def advance(self, size: int, failed: bool) -> None:
        self.failed += failed
        self.bar.update(self.units, advance=size, status=f"{self.failed} failed" if self.failed else "")

    def poll(self) -> None:
        if self.detail is not None:
            self.bar.update(self.detail_line, completed=min(self.detail.completed(), self.detail.total))
