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


class FanOutDisplay:
    """A stage's live progress in the terminal: units done and failed, and optionally a finer count the
    stage polls (`detail`: label, total, completed())."""

    def __init__(self, label: str, total: int, detail=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        self.units = self.bar.add_task(label, total=total, status="")
        self.detail, self.failed = detail, 0
        self.detail_line = self.bar.add_task(detail.label, total=detail.total, status="") if detail else None

    def __enter__(self) -> "FanOutDisplay":
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
