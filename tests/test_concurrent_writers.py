"""Two processes writing one warehouse at once (a scheduled flow and a manual one) both succeed
and lose nothing; a reader meanwhile sees only whole transactions."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import write_spec
from warehouse.db import Warehouse

ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import sys
import polars as pl
from warehouse.db import Warehouse, upsert
path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
wh = Warehouse(path)
for i in range(n):
    with wh.writer() as con:  # two rows per transaction: a reader must never see one without the other
        upsert(con, "epoch_metrics", pl.DataFrame({"run_id": [f"{who}-{i}"] * 2, "epoch": [0, 1],
                                                   "test_acc": [0.1, 0.2]}))
"""


def _read_while(processes: list[subprocess.Popen], read) -> list:
    """Call `read` repeatedly until every process has exited; returns what each call returned."""
    seen = []
    while any(p.poll() is None for p in processes):
        seen.append(read())
        time.sleep(0.05)
    return seen


def test_interleaved_writer_transactions_all_land(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    n = 25
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(wh.path), who, str(n)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    counts = _read_while(writers, lambda: wh.query("SELECT count(*) AS n FROM epoch_metrics")["n"][0])
    for w in writers:
        assert w.wait() == 0, w.stderr.read()
    assert counts, "the reader never ran while the writers did"
    assert all(c % 2 == 0 for c in counts) and counts == sorted(counts)  # whole transactions, never lost
    got = wh.query("SELECT split_part(run_id, '-', 1) AS who, count(DISTINCT run_id) AS runs, count(*) AS n "
                   "FROM epoch_metrics GROUP BY who ORDER BY who")
    assert got.rows() == [("a", n, 2 * n), ("b", n, 2 * n)]


@pytest.mark.slow
def test_two_sweeps_into_one_warehouse_at_once(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    specs = [write_spec(tmp_path, name=name, widths=[0.5], seeds=[0], samples=1, epochs=2,
                        dataset={"name": "digits", "subset": 200}, predict={"k_epochs": [1], "n_folds": 2},
                        width_transfer={}) for name in ("scheduled", "manual")]
    wh = Warehouse(tmp_path / "shared.duckdb")
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}  # both report to the session's server
    flows = [subprocess.Popen([sys.executable, "-m", "flows.train_sweep", "--spec", str(s), "--warehouse", str(wh.path)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for s in specs]

    def consistent_reads() -> int:
        # a completed run is written with its metrics in one transaction: never one without the other
        broken = wh.query("""SELECT count(*) AS n FROM runs r WHERE r.status = 'completed'
                             AND (SELECT count(*) FROM epoch_metrics m WHERE m.run_id = r.run_id) <> r.epochs + 1""")
        return broken["n"][0]

    reads = _read_while(flows, consistent_reads)
    for f in flows:
        out = f.stdout.read()
        assert f.wait() == 0, out[-3000:]
    assert reads and not any(reads)

    for spec in specs:
        study = load_study(spec)
        runs = expand_runs(study)
        got = wh.query("SELECT run_id, status FROM runs WHERE study = ?", [study.name])
        assert sorted(got["run_id"]) == sorted(r.run_id for r in runs) and set(got["status"]) == {"completed"}
        ids = [r.run_id for r in runs]
        n = wh.query("SELECT (SELECT count(*) FROM epoch_metrics WHERE run_id IN (SELECT unnest(?))) AS metrics, "
                     "(SELECT count(*) FROM snapshots WHERE run_id IN (SELECT unnest(?))) AS snaps", [ids, ids])
        assert n.row(0) == (len(runs) * (study.epochs + 1),) * 2
    assert wh.query("SELECT count(*) AS n FROM studies")["n"][0] == 2
