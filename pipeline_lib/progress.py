"""Per-epoch progress of training tasks, in small JSON files a flow can poll from another process.

Each task owns one file mapping run_id to the last epoch it finished (0 = initialisation
evaluated); a file is replaced atomically, so a reader never sees half of one.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from .files import DamagedFile, atomic_write, read_checked

log = logging.getLogger(__name__)


class ProgressFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.epochs: dict[str, int] = {}

    def record(self, run_id: str, epoch: int) -> None:
        self.epochs[run_id] = epoch
        text = json.dumps(self.epochs)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))


def epochs_reported(directory: str | Path) -> dict[str, int]:
    """Last finished epoch per run, over every progress file in `directory`; a damaged file (it is
    only a progress display's) is skipped."""
    merged: dict[str, int] = {}
    for path in Path(directory).glob("*.json"):
        try:
            merged.update(read_checked(path, lambda p: json.loads(p.read_text())))
        except DamagedFile as e:
            log.warning("progress not shown: %s", e)
    return merged
