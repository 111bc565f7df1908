"""Claims (pipeline_lib/claims.py): another process's claim makes a claimer wait; a sweep of any size
holds one file handle; two graph stages on one study at once compute each graph once."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline_lib.claims import claimed
from tests.conftest import train_in_process, write_spec
from warehouse.db import Warehouse

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for(stream, text: str, timeout: float = 120) -> str:
    """Lines of `stream` read until one holds `text` (the test fails past `timeout`)."""
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        line = stream.readline()
        seen.append(line)
        if text in line:
            return "".join(seen)
        if not line:
            break
    raise AssertionError(f"{text!r} never came; read:\n{''.join(seen)}")


def test_a_key_another_process_holds_is_waited_for_and_told_once(tmp_path):
    lock = tmp_path / "claims" / "runs.lock"
    holder = _python(f"""
        import sys, time
        from pipeline_lib.claims import claimed
        with claimed({str(lock)!r}, ["b", "c"], print):
            print("holding", flush=True)
            sys.stdin.readline()
        """, stdin=subprocess.PIPE)
    _wait_for(holder.stdout, "holding")
    told = []
    with claimed(lock, ["a"], told.append):  # a key nobody holds: taken at once
        pass
    start = time.monotonic()
    waiter = _python(f"""
        from pipeline_lib.claims import claimed
        told = []
        with claimed({str(lock)!r}, ["a", "b", "c"], told.append):
            print("got", told, flush=True)
        """)
    time.sleep(1.0)
    assert waiter.poll() is None  # still waiting for b and c
    holder.stdin.write("\n")
    holder.stdin.flush()
    out = waiter.communicate(timeout=60)[0]
    assert holder.wait(timeout=60) == 0 and told == []
    assert out.strip() == "got ['b']"  # told of the first held key only, then it got every claim
    assert time.monotonic() - start >= 1.0


def test_a_sweep_of_5000_runs_is_claimed_with_a_few_file_handles(tmp_path):
    """A lock file per run held open for the sweep's life died of `Too many open files` past the
    process's handle limit; here the limit is 64 handles."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from pipeline_lib.claims import claimed
        with claimed({str(tmp_path / 'claims' / 'runs.lock')!r}, [f"run-{{i:05d}}" for i in range(5000)], print):
            print("claimed 5000")
        """)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "claimed 5000"


@pytest.mark.slow
def test_the_graphs_of_one_study_computed_by_two_commands_at_once_are_computed_once(tmp_path):
    """The second command waits while the first holds the snapshots' claims, then finds their graphs
    done (before, both computed every graph)."""
    from stages import graph_metrics
    from stages.local import local_context

    spec = write_spec(tmp_path, widths=[0.5], seeds=[0], samples=2, epochs=2, width_transfer={},
                      predict={"k_epochs": [1], "n_folds": 2})
    warehouse = tmp_path / "w.duckdb"
    train_in_process(spec, Warehouse(warehouse))
    n_snapshots = Warehouse(warehouse).query("SELECT count(*) AS n FROM snapshots")["n"][0]
    with local_context(spec, warehouse) as ctx:
        keys = [f"{r}/{e}" for r, e in ctx.warehouse.query("SELECT run_id, epoch FROM snapshots").rows()]
        with claimed(ctx.layout.graph_claims, keys, print):  # this process is the first command, mid-stage
            second = _python(f"""
                from stages import graph_metrics
                from stages.local import local_context
                from flows._in_process import log_to_terminal
                log_to_terminal()
                with local_context({str(spec)!r}, {str(warehouse)!r}) as ctx:
                    print("counts", graph_metrics.run(ctx), flush=True)
                """)
            waited = _wait_for(second.stderr, "is claimed by another process computing this study's graphs")
            first = graph_metrics.run(ctx)  # ends holding nothing: its claims were this process's
        out, err = second.communicate(timeout=300)
    assert second.returncode == 0, waited + err
    assert first["computed"] == n_snapshots
    assert f"counts {{'computed': 0, 'failed': 0, 'skipped': {n_snapshots}}}" in out
    graphs = Warehouse(warehouse).query("SELECT count(*) AS n, count(DISTINCT fingerprint) AS f FROM graphs "
                                        "WHERE error IS NULL")
    assert graphs.rows() == [(n_snapshots, 1)]
