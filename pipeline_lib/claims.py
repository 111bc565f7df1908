"""Per-run claims on the data directory: two processes on one study never train the same run at once."""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .layout import DataLayout


@contextmanager
def claimed_runs(data_dir: str | Path, run_ids: Iterable[str], say: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock per run (`runs/<run_id>/claim.lock`) while inside.

    A run claimed by another process is waited for (said once); inside, its state is then final
    or resumable, never being written. Claims are taken in run_id order, so studies that share
    runs cannot deadlock. The locks go with the process: a killed holder frees them.
    """
    handles = []
    try:
        for run_id in sorted(set(run_ids)):
            path = DataLayout(data_dir).claim(run_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")
            handles.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say(f"run {run_id} is claimed by another process training this study; waiting for it")
                fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        for handle in handles:
            handle.close()  # closing releases the lock
