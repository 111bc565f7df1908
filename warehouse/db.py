"""Opening, migrating and writing the DuckDB warehouse.

One process writes at a time: `Warehouse.writer()` holds an exclusive file lock (fcntl) beside
the database for the duration of a short write transaction, so two flows that write the same
warehouse at once queue instead of failing on DuckDB's own file lock. Readers open read-only
connections that also wait for the lock (DuckDB refuses to open a file another process writes).
"""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import polars as pl

SCHEMA_DIR = Path(__file__).parent / "schema"
VIEWS_FILE = Path(__file__).parent / "views.sql"
DEFAULT_PATH = Path(__file__).parent / "warehouse.duckdb"
# Write the file in a format DuckDB 1.4+ reads, so the DuckDB shell from PyPI (duckdb-cli 1.5.6,
# the newest there) and other 1.x tools can open the warehouse that this DuckDB 2.0 writes.
STORAGE_COMPATIBILITY = "v1.4.0"


class Warehouse:
    """A DuckDB file plus the data directory (snapshots, node metrics) that sits next to it."""

    def __init__(self, path: str | Path = DEFAULT_PATH, data_dir: str | Path | None = None):
        self.path = Path(path).resolve()
        self.data_dir = Path(data_dir).resolve() if data_dir else self.path.parent / "data" / self.path.stem
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._migrated = False

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive read-write connection inside one transaction (rolled back on error)."""
        with self._locked(exclusive=True):
            con = _connect_with_retry(self.path, read_only=False)
            try:
                if not self._migrated:
                    _migrate(con)
                    self._migrated = True
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; the schema is created first if the file is new."""
        if not self.path.exists():
            with self.writer():
                pass
        with self._locked(exclusive=False):
            con = _connect_with_retry(self.path, read_only=True)
            try:
                yield con
            finally:
                con.close()

    def migrate(self) -> None:
        with self.writer():
            pass

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read-only query and return a Polars frame."""
        with self.reader() as con:
            return con.sql(sql, params=params or None).pl()


def _connect_with_retry(path: Path, read_only: bool, attempts: int = 50) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting while a process outside our lock (the DuckDB CLI, say) holds it."""
    for attempt in range(attempts):
        try:
            config = {} if read_only else {"storage_compatibility_version": STORAGE_COMPATIBILITY}
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as e:
            if "lock" not in str(e).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply every schema file in name order, then (re)create the views."""
    for sql_file in sorted(SCHEMA_DIR.glob("*.sql")):
        con.execute(sql_file.read_text())
    if VIEWS_FILE.exists():
        con.execute(VIEWS_FILE.read_text())


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, verb: str) -> int:
    if frame.is_empty():
        return 0
    con.register("_insert_frame", frame.to_arrow())
    try:
        con.execute(f"{verb} INTO {table} BY NAME SELECT * FROM _insert_frame")
    finally:
        con.unregister("_insert_frame")
    return frame.height


def upsert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Insert rows by column name, replacing rows with the same primary key."""
    return _insert(con, table, frame, "INSERT OR REPLACE")


def replace_where(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, where: str,
                  params: list) -> int:
    """Delete the rows matching `where`, then insert `frame`: recomputing a unit replaces its rows."""
    con.execute(f"DELETE FROM {table} WHERE {where}", params)
    return _insert(con, table, frame, "INSERT")
