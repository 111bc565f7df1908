"""A stage's failed units and files that cannot be read or written, as the command line meets them
(issue 28): a damaged snapshot costs the features of its run only and is quarantined; a stage with
failed units writes the others and exits 1 with their count; a read-only warehouse folder and a full
disk end in one `error:` line naming the file. No traceback reaches the terminal."""
from __future__ import annotations

import logging
import os
import resource
import signal
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import pytest

from flows import features as features_flow
from flows import graph_metrics as graph_flow
from flows._cli import run_cli, run_warehouse_stage
from flows.train_sweep import main as train_main
from flows.train_sweep import train_sweep
from pipeline_lib.layout import DataLayout
from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import mounted_tmpfs, train_in_process, write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ONE_K = {"epochs": 2, "widths": [0.5], "seeds": [0], "samples": 2, "dataset": {"name": "digits", "subset": 200},
         "predict": {"k_epochs": [1], "n_folds": 2}, "width_transfer": {}, "graphs": {"exact_limit": 200},
         "execution": {"device": "cpu", "stacked": False}}


@pytest.fixture
def command(monkeypatch, capfd, caplog):
    """Runs a flow's command line in this process: (exit status, what the terminal shows: printed lines and
    log lines, a log record's traceback as text)."""
    def run(main, argv: list[str]) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", argv)
        capfd.readouterr()
        caplog.clear()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capfd.readouterr()
        logged = [logging.Formatter().format(record) for record in caplog.records]
        return code, "\n".join([out, err, *logged])
    return run


def _stage(module) -> Callable[[], None]:
    command = module.__spec__.name.rpartition(".")[2]
    return lambda: run_warehouse_stage(getattr(module, command), module.__spec__.name, module.__doc__)


def _ends_in_one_error_line(terminal: str) -> str:
    assert "Traceback" not in terminal, terminal
    errors = [line for line in terminal.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, terminal
    return errors[0]


def _truncate(path) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


def test_a_damaged_snapshot_costs_the_features_of_its_run_only(tmp_path, prefect_harness, command):
    spec, wh_path = write_spec(tmp_path, **ONE_K), tmp_path / "w.duckdb"
    wh = Warehouse(wh_path)
    train_in_process(spec, wh)
    damaged_run, other_run = wh.query("SELECT run_id FROM runs ORDER BY run_id")["run_id"].to_list()
    snapshot = DataLayout(wh.data_dir).snapshot(damaged_run, 1)
    _truncate(snapshot)
    argv = ["features", "--spec", str(spec), "--warehouse", str(wh_path)]

    code, terminal = command(_stage(features_flow), argv)
    error = _ends_in_one_error_line(terminal)
    assert code == 1 and error.startswith("error: 1 of 12 feature units (run x k x set) failed") and "flows.train_sweep" in error
    assert f"flows.train_sweep --spec SPEC --warehouse {wh_path}" in terminal and str(snapshot) in terminal
    weights = wh.query("SELECT DISTINCT run_id FROM features WHERE feature_set = 'weight_stats'")["run_id"].to_list()
    assert weights == [other_run]  # the other run's unit of the same (set, k) is written
    assert wh.query("SELECT count(DISTINCT (run_id, feature_set)) AS n FROM features")["n"][0] == 11
    assert wh.query("SELECT path FROM quarantined_files")["path"].to_list() == [str(snapshot)]
    assert not snapshot.exists()

    assert train_sweep(str(spec), str(wh_path)) == {"completed": 2}  # the run trains again
    code, terminal = command(_stage(features_flow), argv)
    assert code == 0 and "error" not in terminal.lower() and snapshot.exists()
    assert wh.query("SELECT count(DISTINCT (run_id, feature_set)) AS n FROM features")["n"][0] == 12


def test_failed_units_end_the_command_with_their_count_after_the_others_are_written(
        tmp_path, prefect_harness, command):
    spec, wh_path = write_spec(tmp_path, **ONE_K), tmp_path / "w.duckdb"
    blocked, trained = sorted(c.run_id for c in expand_runs(load_study(spec)))
    layout = DataLayout(tmp_path / "data" / "w")
    layout.snapshot(blocked, 0).parent.parent.parent.mkdir(parents=True)
    layout.snapshot(blocked, 0).parent.parent.write_text("a file where the run's snapshots go")

    argv = ["train_sweep", "--spec", str(spec), "--warehouse", str(wh_path)]
    code, terminal = command(lambda: run_cli(train_main), argv)
    error = _ends_in_one_error_line(terminal)
    assert code == 1 and error.startswith("error: 1 of 2 runs failed (table runs, status failed")
    assert str(layout.snapshot(blocked, 0).parent.parent) in terminal  # the failure's log line names the file
    wh = Warehouse(wh_path)
    assert dict(wh.query("SELECT run_id, status FROM runs").rows()) == {blocked: "failed", trained: "completed"}

    _truncate(layout.snapshot(trained, 2))
    argv = ["graph_metrics", "--spec", str(spec), "--warehouse", str(wh_path)]
    code, terminal = command(lambda: run_cli(graph_flow.main), argv)
    assert code == 1 and _ends_in_one_error_line(terminal).startswith("error: 1 of 3 snapshots' graphs failed")
    assert wh.query("SELECT count(*) AS n FROM graphs WHERE error IS NULL")["n"][0] == 2


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write: chmod a-w, or for root (whom chmod does not stop) a read-only tmpfs."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "ro,size=1m") as mounted:
        if not mounted:
            pytest.skip("running as root, where chmod does not deny writes, and a read-only tmpfs cannot be mounted")
        yield folder


def test_a_read_only_warehouse_folder_is_one_error_line(tmp_path, read_only_dir, prefect_harness, command):
    spec, wh_path = write_spec(tmp_path, **ONE_K), read_only_dir / "w.duckdb"
    argv = ["train_sweep", "--spec", str(spec), "--warehouse", str(wh_path)]
    code, terminal = command(lambda: run_cli(train_main), argv)
    error = _ends_in_one_error_line(terminal)
    assert code == 1 and str(read_only_dir) in error and ("Permission denied" in error or "Read-only" in error)


def _disk_full_after(limit: int):
    def preexec() -> None:  # writes past `limit` bytes fail with EFBIG, as on a full disk with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.parametrize("full", ["tmpfs", "file size limit"])
def test_a_full_disk_is_one_error_line(tmp_path, prefect_harness, full):
    """On a real 1 MiB tmpfs (needs root), and with RLIMIT_FSIZE as a stand-in anywhere."""
    from prefect.settings import PREFECT_API_URL

    spec, folder = write_spec(tmp_path, **ONE_K), tmp_path / "disk"
    folder.mkdir()
    with mounted_tmpfs(folder, "size=1m") if full == "tmpfs" else nullcontext(True) as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root")
        preexec = None if full == "tmpfs" else _disk_full_after(40_000)  # a snapshot fits, the warehouse log does not
        done = subprocess.run([sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse",
                               str(folder / "w.duckdb")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}, preexec_fn=preexec)
    error = _ends_in_one_error_line(done.stdout + done.stderr)
    assert done.returncode == 1 and str(folder) in error + done.stderr
    assert ("No space left on device" if full == "tmpfs" else "File too large") in done.stderr


def test_the_study_goes_on_past_failed_units_and_ends_with_their_count(tmp_path, prefect_harness, command):
    from flows.study import TRIAGE_ERRORS
    from flows.study import main as study_main

    spec, wh_path = write_spec(tmp_path, **{**ONE_K, "samples": 3}), tmp_path / "w.duckdb"
    blocked = sorted(c.run_id for c in expand_runs(load_study(spec)))[0]
    layout = DataLayout(tmp_path / "data" / "w")
    layout.snapshot(blocked, 0).parent.parent.parent.mkdir(parents=True)
    layout.snapshot(blocked, 0).parent.parent.write_text("a file where the run's snapshots go")

    argv = ["study", "--spec", str(spec), "--warehouse", str(wh_path)]
    code, terminal = command(lambda: run_cli(study_main, user_errors=TRIAGE_ERRORS), argv)
    assert code == 1 and _ends_in_one_error_line(terminal).startswith("error: 1 of 3 runs failed")
    assert "report: " in terminal  # every later stage ran on the runs that trained
    assert Warehouse(wh_path).query("SELECT count(DISTINCT run_id) AS n FROM predictions")["n"][0] == 2
