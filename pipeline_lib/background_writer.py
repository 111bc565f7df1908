"""A background thread that runs write jobs in submission order, so file I/O overlaps compute.

The queue is bounded: when the writer falls behind, `submit` blocks (back-pressure instead of
unbounded memory), and the time spent blocked is recorded. Jobs run in FIFO order, so a job
that records progress (a run's state file) never lands before the snapshot it refers to.
An error in a job is raised again by the next `submit` or by `close`.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

_STOP = object()


class BackgroundWriter:
    def __init__(self, max_pending: int = 64):
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self.wait_seconds = 0.0  # time submitters spent blocked on a full queue
        self.busy_seconds = 0.0  # time the thread spent running jobs
        self.jobs = 0
        self._thread = threading.Thread(target=self._work, name="background-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if self._error is None:  # after a failure, later jobs (which may depend on it) are skipped
                start = time.perf_counter()
                try:
                    job()
                except BaseException as e:  # noqa: BLE001 - handed to the submitting thread
                    self._error = e
                self.busy_seconds += time.perf_counter() - start
                self.jobs += 1

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise RuntimeError("background write failed") from self._error

    def submit(self, job: Callable[[], object]) -> None:
        self._raise_pending()
        start = time.perf_counter()
        self._queue.put(job)
        self.wait_seconds += time.perf_counter() - start

    def close(self) -> None:
        """Wait for every submitted job; raise the first error, if any."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_pending()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # finish what was queued (keeps files consistent), but let the original error propagate
            try:
                self.close()
            except RuntimeError:
                pass
