"""Weight snapshots as Parquet: one file per (run, epoch), one row per state_dict tensor.

Layout (hive-style, so one glob reads a whole study with DuckDB or Polars; every path under a data
directory is named in `layout.DataLayout`):

    {data_dir}/snapshots/run_id={run_id}/epoch={epoch}/snapshot.parquet

Schema: `name` (string, the state_dict key), `shape` (list<int64>), `values` (list<float32>,
the tensor flattened in row-major order). Buffers (BatchNorm running statistics) are included.
The footer's key-value metadata holds `written_id`, new at every write: a run trained again writes
new ids, so the graphs and features made from its old snapshots are known to be stale.
Written and read through `files` (atomic writes; a file that exists but cannot be read raises
`DamagedFile`, and the stage that owns it quarantines it and redoes its unit).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .files import atomic_write_table, read_checked
from .layout import DataLayout

WRITTEN_ID = "written_id"
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
    written_id: str | None  # None for a file written before the ids


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
    written_id = uuid.uuid4().hex
    table = state_to_table(state).replace_schema_metadata({WRITTEN_ID: written_id})
    atomic_write_table(table, path)
    n_params = int(sum(int(np.prod(s)) for s in table.column("shape").to_pylist()))
    return Snapshot(run_id, epoch, path, path.stat().st_size, n_params, written_id)


def read_snapshot(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a snapshot back as a state_dict of float32 CPU tensors; DamagedFile if it cannot be read."""
    return read_checked(path, _state_of_file)


def _state_of_file(path: Path) -> dict[str, torch.Tensor]:
    table = pq.read_table(path, columns=["name", "shape", "values"])
    flat = table.column("values").combine_chunks()
    offsets = flat.offsets.to_numpy()
    data = flat.values.to_numpy(zero_copy_only=False)
    return {name: torch.from_numpy(data[offsets[i]:offsets[i + 1]].copy()).reshape(shape)
            for i, (name, shape) in enumerate(zip(table.column("name").to_pylist(), table.column("shape").to_pylist()))}


def read_snapshot_info(path: str | Path, run_id: str, epoch: int) -> Snapshot:
    """Describe an existing snapshot from its file and Parquet footer, without reading the values.

    Reading the footer and the shapes finds a truncated file (DamagedFile).
    """
    path = Path(path)
    table = read_checked(path, lambda p: pq.read_table(p, columns=["shape"]))
    written_id = (table.schema.metadata or {}).get(WRITTEN_ID.encode())
    return Snapshot(run_id, epoch, path, path.stat().st_size,
                    int(sum(int(np.prod(s)) for s in table.column("shape").to_pylist())),
                    written_id.decode() if written_id else None)
