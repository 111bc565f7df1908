"""Per-epoch progress of training tasks, in small JSON files a flow can poll from another process.

Each task owns one file mapping run_id to the last epoch it finished (0 = initialisation
evaluated); a file is replaced atomically, so a reader never sees half of one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class ProgressFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.epochs: dict[str, int] = {}

    def record(self, run_id: str, epoch: int) -> None:
        self.epochs[run_id] = epoch
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.epochs))
        os.replace(tmp, self.path)


def epochs_reported(directory: str | Path) -> dict[str, int]:
    """Last finished epoch per run, over every progress file in `directory`."""
    merged: dict[str, int] = {}
    for path in Path(directory).glob("*.json"):
        merged.update(json.loads(path.read_text()))
    return merged
