"""The in-process orchestration (`context.Orchestration` without Prefect): units of work run in this
process or on a local process pool kept for the command's life, a nested stage is a plain call,
and a published table goes to the log.

Commands whose work takes seconds use it when no Prefect server is configured (`flows._in_process`),
so they pay no temporary server; so do scripts, the tests of everything but Prefect itself, and
the API. A pool is started once per kind of worker and reused by every fan-out of the command (the
rungs of a triaged sweep train in one pool). Runs on Ray need Prefect's task runner.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline_lib.placement import WorkerPlan
from pipeline_lib.progress import FanOutDisplay
from pipeline_lib.spec import ExecutionSpec, SpecError

from .context import Detail, Failed, StudyContext, Work, open_context
from .units import UNITS

log = logging.getLogger("stages")
POLL_SECONDS = 1.0


def ignore_interrupts(initializer: Callable[..., None] | None, *initargs) -> None:
    """A pool worker's start: it ignores Ctrl-C (the terminal sends it to every process of the group,
    and the command's own process decides, `flows._interrupt`), then sets its threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def run_each(fn: Callable, parameters: list[dict], threads: int, initializer: Callable[[int], None] | None,
             finished: Callable[[int, Any], None], display: FanOutDisplay, sizes: list[int]) -> None:
    """Every unit one after the other in this process, its threads set by `initializer` for the
    units' duration only; a unit that raises becomes a `Failed`."""
    import torch
    from threadpoolctl import threadpool_limits

    torch_threads = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS/OpenMP thread counts the initializer sets
        try:
            if initializer is not None:
                initializer(threads)
            for i, p in enumerate(parameters):
                try:
                    value = fn(**p)
                except Exception as e:
                    value = Failed.of(e)
                finished(i, value)
                display.advance(sizes[i], isinstance(value, Failed))
        finally:
            torch.set_num_threads(torch_threads)


def collect(futures: dict, wait_some: Callable[[set], tuple], finished: Callable[[int, Any], None],
            display: FanOutDisplay, sizes: list[int]) -> None:
    """Each unit's result, or a `Failed` when its future raised (a crashed worker fails its unit, not the
    stage), to `finished` as it comes (`futures`: future -> unit index; `wait_some(pending)` returns the
    done and the still pending futures within a poll); the display advances and polls between waits."""
    pending = set(futures)
    while pending:
        done, pending = wait_some(pending)
        for future in done:
            i = futures[future]
            try:
                value = future.result()
            except Exception as e:
                value = Failed.of(e)
            finished(i, value)
            display.advance(sizes[i], isinstance(value, Failed))
        pending = set(pending)
        display.poll()


def _call(fn: Callable, parameters: dict) -> Any:
    return fn(**parameters)


class LocalOrchestration:
    """Stages in this process, their units in it or on local process pools; `close` ends the pools."""

    def __init__(self) -> None:
        self._pools: dict[tuple, ProcessPoolExecutor] = {}

    def _pool(self, initializer: Callable[[int], None] | None, plan: WorkerPlan) -> ProcessPoolExecutor:
        key = (initializer, plan.workers, plan.threads)
        if key not in self._pools:
            initargs = (plan.threads,) if initializer is not None else ()
            self._pools[key] = ProcessPoolExecutor(plan.workers, mp_context=multiprocessing.get_context("spawn"),
                                                   initializer=ignore_interrupts, initargs=(initializer, *initargs))
        return self._pools[key]

    def fan_out(self, work: Work, parameters: list[dict], execution: ExecutionSpec, plan: WorkerPlan, *,
                label: str, sizes: list[int] | None = None, on_result: Callable[[int, Any], None] | None = None,
                detail: Detail | None = None) -> list:
        if execution.runner != "local":
            raise SpecError(f"execution.runner {execution.runner!r} runs under Prefect: set PREFECT_API_URL (a "
                            "Prefect server) or run the stage's flow, e.g. python -m flows.study")
        fn, initializer, _ = UNITS[work]
        sizes = sizes or [1] * len(parameters)
        results: list = [None] * len(parameters)

        def finished(i: int, value: Any) -> None:
            results[i] = value
            if on_result is not None:
                on_result(i, value)

        if not parameters:
            return results
        with FanOutDisplay(label, sum(sizes), detail) as display:
            if plan.in_process or plan.workers == 1:
                run_each(fn, parameters, plan.threads, initializer, finished, display, sizes)
                return results
            pool = self._pool(initializer, plan)
            futures: dict[Future, int] = {pool.submit(_call, fn, p): i for i, p in enumerate(parameters)}
            collect(futures, lambda pending: wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED),
                    finished, display, sizes)
        return results

    def stage(self, name: str, run: Callable[..., Any], context: StudyContext, **options) -> Any:
        log.info("stage %s of study %s", name, context.study.name)
        return run(context, **options)

    def publish_table(self, rows: list[dict], key: str, description: str) -> None:
        import polars as pl

        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                       float_precision=3, tbl_width_chars=200):
            log.info("%s\n%s", description, pl.DataFrame(rows, infer_schema_length=None) if rows else "(no rows)")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools.clear()


@contextmanager
def local_context(spec: str | Path, warehouse: str | Path | None,
                  execution: ExecutionSpec | None = None) -> Iterator[StudyContext]:
    """The study context (`context.open_context`) on the in-process orchestration; its pools end on exit."""
    orchestration = LocalOrchestration()
    try:
        yield open_context(spec, warehouse, execution, orchestration)
    finally:
        orchestration.close()
