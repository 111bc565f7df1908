"""Disk and lock faults of the warehouse (issue 13): the real error is named, waits say who holds
the lock and give up after the configured timeout, and nothing written before is lost."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import mounted_tmpfs
from warehouse.db import LOCK_TIMEOUT_ENV, Warehouse, WarehouseError, upsert

ROOT = Path(__file__).resolve().parents[1]


def _snapshot_rows(n: int, prefix: str = "r") -> pl.DataFrame:
    return pl.DataFrame({"run_id": [f"{prefix}{i}" for i in range(n)], "epoch": np.arange(n),
                         "path": [f"/data/snapshots/run_id={prefix}{i}/epoch=0/snapshot.parquet" for i in range(n)],
                         "bytes": np.arange(n), "n_params": np.arange(n)})


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 3 MiB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    with mounted_tmpfs(mount, "size=3m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root")
        yield mount


def test_full_disk_names_the_real_error_and_a_rerun_after_freeing_space_completes(small_tmpfs):
    wh = Warehouse(small_tmpfs / "w.duckdb")
    with wh.writer() as con:
        upsert(con, "snapshots", _snapshot_rows(10, "kept"))
    with pytest.raises(WarehouseError) as err:
        for attempt in range(20):  # fill the disk: either an insert or the commit hits it
            with wh.writer() as con:
                upsert(con, "snapshots", _snapshot_rows(100_000, f"a{attempt}-"))
    message = str(err.value) + "".join(getattr(err.value, "__notes__", []))
    assert "No space left on device" in message and str(wh.path) in message
    assert "no transaction is active" not in message

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)  # space freed
    with wh.writer() as con:
        upsert(con, "snapshots", _snapshot_rows(100_000, "after-"))
    counts = wh.query("SELECT count(*) FILTER (WHERE run_id LIKE 'kept%') AS kept, "
                      "count(*) FILTER (WHERE run_id LIKE 'after-%') AS after FROM snapshots")
    assert counts.row(0) == (10, 100_000)


HOLD_DUCKDB = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)  # what `duckdb -readonly FILE` holds
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""

HOLD_FLOCK = """
import fcntl, sys, time
fh = open(sys.argv[1], "a")
fcntl.flock(fh, fcntl.LOCK_EX)
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(script: str, path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_read_only_shell_makes_writers_wait_with_a_message_then_they_write(tmp_path, caplog):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    holder = _holder(HOLD_DUCKDB, wh.path, 2.0)
    try:
        with caplog.at_level(logging.WARNING, logger="warehouse.db"), Warehouse(wh.path).writer() as con:
            upsert(con, "snapshots", _snapshot_rows(3))
    finally:
        holder.wait(timeout=30)
    waits = [r.getMessage() for r in caplog.records if "is open in another process" in r.getMessage()]
    assert len(waits) == 1 and f"PID {holder.pid}" in waits[0] and LOCK_TIMEOUT_ENV in waits[0]
    assert wh.query("SELECT count(*) AS n FROM snapshots")["n"][0] == 3


def test_lock_wait_gives_up_after_the_configured_timeout_naming_the_holder(tmp_path, monkeypatch):
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.02")  # 1.2 s
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    holder = _holder(HOLD_FLOCK, wh.lock_path, 30)
    try:
        with pytest.raises(WarehouseError, match=rf"lock is held by PID {holder.pid} \(.*{sys.executable}.*gave up after"):
            wh.query("SELECT 1")
    finally:
        holder.kill()
        holder.wait()
    holder = _holder(HOLD_DUCKDB, wh.path, 30)
    try:
        with pytest.raises(WarehouseError, match=rf"open in another process: .*PID {holder.pid}.*gave up after"):
            with wh.writer():
                pass
    finally:
        holder.kill()
        holder.wait()

