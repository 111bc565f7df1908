"""Claims on a data directory: two processes on one study never train the same run, nor compute the
same snapshot's graph, at once.

A claim is a POSIX record lock on one byte of one shared lock file (`DataLayout.run_claims`,
`DataLayout.graph_claims`), at an offset that a hash of the key gives. A sweep of any size holds one
file handle (a lock file per run ran out of handles past about a thousand runs), and the locks go
with the process: a killed holder frees them. Record locks belong to the process, so claims exclude
other processes only, which is what they are for (the stages claim in the main process).
"""
from __future__ import annotations

import fcntl
import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator


def _offset(key: str) -> int:
    """A byte of the lock file per key: 62 bits of its hash (a collision only makes one claim wait)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 2


@contextmanager
def claimed(lock_file: str | Path, keys: Iterable[str], waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive claim on each key while inside.

    A key claimed by another process is waited for (`waiting(key)` tells of the first such key
    only); inside, its work is then done or resumable, never being written. Claims are taken in key order, so two
    commands that share keys cannot deadlock.
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    told = False
    with open(lock_file, "a") as handle:  # closing it releases every claim this process holds on it
        for key in sorted(set(keys)):
            offset = _offset(key)
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another process holds it
                if not told:
                    waiting(key)
                    told = True
                fcntl.lockf(handle, fcntl.LOCK_EX, 1, offset)
        yield
