"""Data files that survive crashes and damage: one way to write them, one way to read them.

Writes go to a temporary name beside the target and are renamed into place (`atomic_write`), so a
crash never leaves a partial file under the final name; `clean_stale_temp_files` removes what
crashed writers left. Reads go through `read_checked`: a file that exists but cannot be read
raises `DamagedFile` naming it, and the stage that owns the file moves it to
`{data_dir}/quarantine/` (never deleted, with a JSON record of its path and error that the flows
load into the warehouse) and redoes its unit; `read_or_quarantine` does both for a file whose
loss only means redoing its unit.
"""
from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from .layout import DataLayout

T = TypeVar("T")

_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.tmp$")  # .{name}.{pid}.tmp, see temp_path

log = logging.getLogger(__name__)


class DamagedFile(Exception):
    """A data file that exists but cannot be read (truncated, corrupted); the message names it."""

    def __init__(self, path: str | Path, error: BaseException | str):
        self.path = Path(path)
        self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        super().__init__(f"damaged file {self.path}: {self.error}")


def temp_path(path: Path) -> Path:
    """Where a write to `path` goes before it is renamed into place (the writer's PID in the name)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(temporary path)`, then rename the file into place: `path` holds the old file or the
    whole new one, never part of one. A failed write leaves no temporary file; an OSError that does
    not name a file (a full disk, as writers raise it) is raised again naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """A Parquet file (zstd), written atomically."""
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_checked(path: str | Path, read: Callable[[Path], T]) -> T:
    """`read(path)`; FileNotFoundError when the file is missing, DamagedFile when it exists but
    `read` fails on it (whatever it raised)."""
    path = Path(path)
    try:
        return read(path)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise DamagedFile(path, e) from e


def read_or_quarantine(path: str | Path, data_dir: str | Path, read: Callable[[Path], T]) -> T | None:
    """`read_checked`, for a file whose owner redoes its unit without it: None when the file is
    missing or damaged (then quarantined)."""
    try:
        return read_checked(path, read)
    except FileNotFoundError:
        return None
    except DamagedFile as e:
        quarantine(e.path, data_dir, str(e))
        return None


def quarantine(path: Path, data_dir: str | Path, error: str) -> Path | None:
    """Move a file that cannot be used to the quarantine folder beside the data, with a record of why.

    Returns where it went; None if it is already gone (another process moved it first).
    """
    data_dir = Path(data_dir)
    path = Path(path)
    try:
        relative = path.resolve().relative_to(data_dir.resolve())
    except ValueError:
        relative = Path(path.name)
    now = datetime.now(timezone.utc)
    target = DataLayout(data_dir).quarantine / relative.parent / f"{relative.name}.{now:%Y%m%dT%H%M%S%f}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    record = {"path": str(path), "quarantined_path": str(target), "error": error,
              "quarantined_at": now.replace(tzinfo=None).isoformat()}
    atomic_write(target.with_name(target.name + ".json"), lambda tmp: tmp.write_text(json.dumps(record)))
    log.warning("moved %s to %s: %s", path, target, error)
    return target


def quarantine_records(data_dir: str | Path) -> list[dict]:
    """The records of every file quarantined under data_dir."""
    return [read_checked(p, lambda p: json.loads(p.read_text()))
            for p in sorted(DataLayout(data_dir).quarantine.rglob("*.json"))]


def clean_stale_temp_files(data_dir: str | Path) -> list[Path]:
    """Remove the temporary files of writers that are gone (crashed mid-write); returns them.

    A temporary file whose writer still runs on this machine is kept.
    """
    removed = []
    root = Path(data_dir)
    for path in root.rglob(".*.tmp") if root.exists() else []:
        match = _TEMP_NAME.match(path.name)
        if not match or path.is_relative_to(DataLayout(root).quarantine):
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, someone else's
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.warning("removed %d temporary file(s) left by crashed writes under %s", len(removed), root)
    return removed
