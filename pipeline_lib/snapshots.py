"""Weight snapshots as Parquet: one file per (run, epoch), one row per state_dict tensor.

Layout (hive-style, so one glob reads a whole study with DuckDB or Polars; every path under a data
directory is named in `layout.DataLayout`):

    {data_dir}/snapshots/run_id={run_id}/epoch={epoch}/snapshot.parquet

Schema: `name` (string, the state_dict key), `shape` (list<int64>), `values` (list<float32>,
the tensor flattened in row-major order). Buffers (BatchNorm running statistics) are included.
Writes go to a temporary file that is renamed into place, so a crash never leaves a partial
file under the final name; `clean_stale_temp_files` removes what crashed writers left.

Reads validate: a file that exists but cannot be read raises `DamagedFile` naming it, and the
stage that owns the file moves it to `{data_dir}/quarantine/` (never deleted, with a JSON record
of its path and error that the flows load into the warehouse) and redoes its unit.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .layout import DataLayout


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
    target.with_name(target.name + ".json").write_text(json.dumps(record))
    log.warning("moved %s to %s: %s", path, target, error)
    return target


def quarantine_records(data_dir: str | Path) -> list[dict]:
    """The records of every file quarantined under data_dir."""
    return [json.loads(p.read_text()) for p in sorted(DataLayout(data_dir).quarantine.rglob("*.json"))]


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


SNAPSHOT_SCHEMA = pa.schema(
    [("name", pa.string()), ("shape", pa.list_(pa.int64())), ("values", pa.list_(pa.float32()))]
)


@dataclass(frozen=True)
class Snapshot:
    """Where one run's weights at one epoch lie."""

    run_id: str
    epoch: int
    path: Path
    bytes: int
    n_params: int


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def state_to_table(state: dict[str, torch.Tensor]) -> pa.Table:
    names, shapes, values = [], [], []
    for name, tensor in state.items():
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        names.append(name)
        shapes.append(list(t.shape))
        values.append(t.numpy().reshape(-1))
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
    flat = np.concatenate(values) if values else np.zeros(0, np.float32)
    value_col = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float32()))
    return pa.Table.from_arrays(
        [pa.array(names, pa.string()), pa.array(shapes, pa.list_(pa.int64())), value_col], schema=SNAPSHOT_SCHEMA
    )


def write_snapshot(state: dict[str, torch.Tensor], data_dir: str | Path, run_id: str, epoch: int) -> Snapshot:
    """Write one snapshot atomically and describe it."""
    path = DataLayout(data_dir).snapshot(run_id, epoch)
    table = state_to_table(state)
    atomic_write_table(table, path)
    n_params = int(sum(int(np.prod(s)) for s in table.column("shape").to_pylist()))
    return Snapshot(run_id, epoch, path, path.stat().st_size, n_params)


def read_snapshot(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a snapshot back as a state_dict of float32 CPU tensors; DamagedFile if it cannot be read."""
    try:
        table = pq.read_table(path, columns=["name", "shape", "values"])
        flat = table.column("values").combine_chunks()
        offsets = flat.offsets.to_numpy()
        data = flat.values.to_numpy(zero_copy_only=False)
        state = {}
        for i, (name, shape) in enumerate(zip(table.column("name").to_pylist(), table.column("shape").to_pylist())):
            state[name] = torch.from_numpy(data[offsets[i]:offsets[i + 1]].copy()).reshape(shape)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise DamagedFile(path, e) from e
    return state


def read_snapshot_info(path: str | Path, run_id: str, epoch: int) -> Snapshot:
    """Describe an existing snapshot from its file and Parquet footer, without reading the values.

    Reading the footer and the shapes finds a truncated file (DamagedFile).
    """
    path = Path(path)
    try:
        shapes = pq.read_table(path, columns=["shape"]).column("shape").to_pylist()
    except FileNotFoundError:
        raise
    except Exception as e:
        raise DamagedFile(path, e) from e
    return Snapshot(run_id, epoch, path, path.stat().st_size, int(sum(int(np.prod(s)) for s in shapes)))
