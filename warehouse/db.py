"""Opening, migrating and writing the DuckDB warehouse.

One process writes at a time: `Warehouse.writer()` holds an exclusive file lock (fcntl) beside
the database for the duration of a short write transaction, so two flows that write the same
warehouse at once queue instead of failing on DuckDB's own file lock. Readers open read-only
connections that also wait for the lock (DuckDB refuses to open a file another process writes).

A process outside our lock (a DuckDB shell, even a read-only one) holds DuckDB's own file lock:
writers then wait too. Every wait says once who holds the lock and gives up after
`WAREHOUSE_LOCK_TIMEOUT_MINUTES` (default 10). Disk and permission errors are raised as
`WarehouseError` naming the file and the original error.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import polars as pl

from pipeline_lib.layout import NODE_METRICS_GLOB

from . import DEFAULT_PATH

SCHEMA_DIR = Path(__file__).parent / "schema"
VIEWS_FILE = Path(__file__).parent / "views.sql"
# Write the file in a format DuckDB 1.4+ reads, so the DuckDB shell from PyPI (duckdb-cli 1.5.6,
# the newest there) and other 1.x tools can open the warehouse that this DuckDB 2.0 writes.
STORAGE_COMPATIBILITY = "v1.4.0"
LOCK_TIMEOUT_ENV = "WAREHOUSE_LOCK_TIMEOUT_MINUTES"
LOCK_POLL_SECONDS = 0.2

log = logging.getLogger(__name__)


class WarehouseError(RuntimeError):
    """The warehouse file could not be opened or written (disk full, permission, a lock held too long)."""


def lock_timeout_seconds() -> float:
    """How long a writer or reader waits for a busy warehouse before giving up."""
    return float(os.environ.get(LOCK_TIMEOUT_ENV, "10")) * 60


def _flock_holders(fh) -> str:
    """Who holds the flock on an open file, from /proc/locks: 'PID 123 (python -m flows.study ...)'."""
    stat = os.fstat(fh.fileno())
    file_id = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"  # as /proc/locks writes it
    holders = []
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "another process"
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK" or fields[5] != file_id:
            continue
        pid = fields[4]
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
            command = " ".join(command.split())
        except OSError:
            command = "?"
        holders.append(f"PID {pid} ({command[:120]})")
    return ", ".join(holders) or "another process"


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
            mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
            _wait_for(lambda: fcntl.flock(fh, mode), BlockingIOError,
                      lambda _: f"warehouse {self.path} is busy: its lock is held by {_flock_holders(fh)}")
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive read-write connection inside one transaction (rolled back on error).

        A failed COMMIT is reported as itself (DuckDB has already dropped the transaction, so a
        rollback would only hide it behind "no transaction is active").
        """
        with _named_io_errors(self.path), self._locked(exclusive=True):
            con = _connect(self.path, read_only=False)
            try:
                if not self._migrated:
                    try:
                        _migrate(con)
                        create_node_metrics_view(con, self.data_dir)
                    except duckdb.Error as e:  # its statements commit themselves: a full disk fails one
                        raise WarehouseError(f"warehouse {self.path}: the schema could not be written: "
                                             f"{type(e).__name__}: {e}") from e
                    self._migrated = True
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException as e:
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error as rollback_error:
                        e.add_note(f"(rolling back failed too: {rollback_error})")
                    raise
                try:
                    con.execute("COMMIT")
                except duckdb.Error as e:
                    raise WarehouseError(f"warehouse {self.path}: the commit failed: {e}") from e
            finally:
                con.close()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; the schema is created first if the file is new."""
        if not self.path.exists():
            with self.writer():
                pass
        with _named_io_errors(self.path), self._locked(exclusive=False):
            con = _connect(self.path, read_only=True)
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


def _wait_for(attempt, busy: type[Exception], describe) -> object:
    """Call `attempt` until it stops raising `busy`; say once who we wait for, give up after the timeout."""
    deadline = None
    while True:
        try:
            return attempt()
        except busy as e:
            now = time.monotonic()
            if deadline is None:
                deadline = now + lock_timeout_seconds()
                log.warning("%s; waiting up to %g min (%s)", describe(e), lock_timeout_seconds() / 60,
                            LOCK_TIMEOUT_ENV)
            elif now > deadline:
                raise WarehouseError(f"{describe(e)}; gave up after {lock_timeout_seconds() / 60:g} min "
                                     f"({LOCK_TIMEOUT_ENV})") from None
            time.sleep(LOCK_POLL_SECONDS)


class _DuckDBLockHeld(Exception):
    pass


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting while a process outside our lock (a DuckDB shell, say) holds it."""
    def attempt():
        config = {} if read_only else {"storage_compatibility_version": STORAGE_COMPATIBILITY}
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise _DuckDBLockHeld(str(e)) from None
            raise

    # DuckDB's message names the holder: "Conflicting lock is held in /usr/bin/duckdb (PID 42)"
    return _wait_for(attempt, _DuckDBLockHeld, lambda e: f"warehouse {path} is open in another process: "
                                                          f"{str(e).splitlines()[0]}")


@contextmanager
def _named_io_errors(path: Path) -> Iterator[None]:
    """Disk and permission errors leave as WarehouseError naming the file (the original kept as cause)."""
    try:
        yield
    except (duckdb.IOException, duckdb.PermissionException, PermissionError) as e:
        raise WarehouseError(f"warehouse {path}: {type(e).__name__}: {e}") from e


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply the schema files not applied yet, in name order, each in its own transaction with its
    row in `schema_migrations`; then (re)create the views.

    Applied once, a file may rebuild a table (012 does, to add CHECK constraints). A warehouse from
    before this table re-applies its files once: they are idempotent up to 011.
    """
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    applied = {name for (name,) in con.execute("SELECT name FROM schema_migrations").fetchall()}
    for sql_file in sorted(SCHEMA_DIR.glob("*.sql")):
        if sql_file.name in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql_file.read_text())
            con.execute("INSERT INTO schema_migrations VALUES (?, now()::TIMESTAMP)", [sql_file.name])
        except BaseException as e:
            con.execute("ROLLBACK")
            raise WarehouseError(f"schema file {sql_file.name} could not be applied: {e}") from e
        con.execute("COMMIT")
    if VIEWS_FILE.exists():
        con.execute(VIEWS_FILE.read_text())


def create_node_metrics_view(con: duckdb.DuckDBPyConnection, data_dir: Path) -> bool:
    """(Re)create the view `node_metrics` over the node Parquet files under data_dir, if there are any.

    DuckDB keeps the view's path as written, so it is made again on every open (a moved warehouse or
    data directory is followed) and after each graph load. It reads the files at query time;
    run_id and epoch come from the hive partition names (typed explicitly: a run_id of digits must
    stay a string).
    """
    if not any(data_dir.glob(NODE_METRICS_GLOB)):
        return False
    glob = str(data_dir / NODE_METRICS_GLOB).replace("'", "''")
    con.execute(f"""CREATE OR REPLACE VIEW node_metrics AS SELECT * FROM read_parquet('{glob}',
                    hive_partitioning = true, hive_types = {{'run_id': 'VARCHAR', 'epoch': 'INTEGER'}})""")
    return True


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, verb: str) -> int:
    if frame.is_empty():
        return 0
    con.register("_insert_frame", frame.to_arrow())
    try:
        con.execute(f"{verb} INTO {table} BY NAME SELECT * FROM _insert_frame")
    except BaseException:
        try:  # an aborted transaction refuses this too; the insert's own error is the one to report
            con.unregister("_insert_frame")
        except duckdb.Error:
            pass
        raise
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
