"""Scale-out for real: a Ray head on loopback, a tiny training sweep and one prediction stage
(evaluate) through prefect-ray's RayTaskRunner, the results in the warehouse (the evaluation's
equal to the one computed in this process), and the head stopped with everything it started."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
ROOT = Path(__file__).resolve().parents[1]


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(directory: str) -> list[int]:
    """Processes whose command line names `directory` (Ray's processes name their session dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and directory in (proc / "cmdline").read_bytes().decode(errors="replace") \
                    and not (proc / "stat").read_text().split(") ")[1].startswith("Z"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.fixture
def ray_head(monkeypatch):
    """`ray start --head --block` on 127.0.0.1 in its own session; its whole process group ends after."""
    # Single-machine mode: Ray would otherwise swap 127.0.0.1 for the machine's network address,
    # in the head and in this test's driver alike. No 30 s drain on SIGTERM.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    port = _free_loopback_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's unix sockets live under it
    log = open(Path(temp_dir) / "head.log", "w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
         "--object-store-memory=100000000"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert head.poll() is None, (Path(temp_dir) / "head.log").read_text()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.25)
        yield f"127.0.0.1:{port}", temp_dir
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        left = _processes_under(temp_dir)
        for pid in left:  # what left the head's process group (Ray daemonises a few helpers)
            os.kill(pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes outlived `ray start --block`: {left}"


def test_sweep_on_a_ray_cluster(tmp_path, ray_head, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    address, temp_dir = ray_head
    spec = write_spec(tmp_path, name="on-ray", widths=[0.5], seeds=[0, 1], samples=2, epochs=2,
                      dataset={"name": "digits", "subset": 200}, predict={"k_epochs": [1], "n_folds": 2},
                      width_transfer={})
    data_dir = tmp_path / "shared-data"
    # the command line a user types; its own process, so Ray's settings above apply to its driver
    flow = subprocess.run(
        [sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse", str(tmp_path / "w.duckdb"),
         "--ray-address", address, "--data-dir", str(data_dir)],
        cwd=ROOT, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        capture_output=True, text=True, timeout=300)
    assert flow.returncode == 0, flow.stdout[-2000:] + flow.stderr[-3000:]

    runs = expand_runs(load_study(spec))
    wh = Warehouse(tmp_path / "w.duckdb")
    got = wh.query("SELECT run_id, status, device FROM runs")
    assert sorted(got["run_id"]) == sorted(r.run_id for r in runs)
    assert set(got["status"]) == {"completed"} and set(got["device"]) == {"cpu"}
    paths = wh.query("SELECT path FROM snapshots")["path"]
    assert paths.len() == len(runs) * 3 and all(p.startswith(str(data_dir)) for p in paths)
    assert wh.query("SELECT data_dir FROM studies")["data_dir"][0] == str(data_dir)
    # the training ran in Ray's workers: their logs hold the task runs' own log lines
    worker_logs = "".join(p.read_text(errors="replace") for p in Path(temp_dir).glob("session_*/logs/worker-*"))
    assert re.search(r"Task run 'train-[^']*' - Finished in state Completed", worker_logs), worker_logs[-2000:]
    _evaluate_on_ray(tmp_path, address, temp_dir, spec)


def _evaluate_on_ray(tmp_path, address, temp_dir, spec):
    """evaluate --ray-address: a study of 4 runs would be evaluated in the flow's process, but a stage
    asked to run on Ray runs there; its predictions equal those of evaluate in this process."""
    from prefect.settings import PREFECT_API_URL

    from flows.evaluate import evaluate
    from flows.features import features

    features(str(spec), str(tmp_path / "w.duckdb"))
    shutil.copy(tmp_path / "w.duckdb", tmp_path / "local.duckdb")
    flow = subprocess.run(
        [sys.executable, "-m", "flows.evaluate", "--spec", str(spec), "--warehouse", str(tmp_path / "w.duckdb"),
         "--ray-address", address],
        cwd=ROOT, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
        capture_output=True, text=True, timeout=300)
    assert flow.returncode == 0, flow.stdout[-2000:] + flow.stderr[-3000:]
    local = evaluate(str(spec), str(tmp_path / "local.duckdb"))
    assert local["designs"] > 0 and "failed" not in local

    sql = "SELECT task, predictor, feature_set, k, split, run_id, fold, y_pred FROM predictions ORDER BY ALL"
    on_ray, here = Warehouse(tmp_path / "w.duckdb").query(sql), Warehouse(tmp_path / "local.duckdb").query(sql)
    assert on_ray.height == here.height > 0
    assert on_ray.drop("y_pred").equals(here.drop("y_pred"))
    assert (on_ray["y_pred"] - here["y_pred"]).abs().max() < 1e-9  # each design's result in its place
    worker_logs = "".join(p.read_text(errors="replace") for p in Path(temp_dir).glob("session_*/logs/worker-*"))
    ran = set(re.findall(r"Task run 'cv-([^']*)' - Finished in state Completed", worker_logs))
    assert len(ran) == local["designs"], worker_logs[-2000:]
