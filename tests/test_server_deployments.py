"""The operations path for real, on one Prefect server for the module (scheduler on, as `make
server` runs it): scripts/server.sh starts the server and work pool, prefect.yaml's deployments are
deployed, the scheduler fills in the nightly study's upcoming runs, and a tiny study scheduled 30 s
ahead is run by the worker to Completed, its results on its own flow run."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, DeploymentFilter, DeploymentFilterId,
                                            FlowRunFilter, FlowRunFilterParentFlowRunId, LogFilter, LogFilterFlowRunId)
from prefect.client.schemas.schedules import IntervalSchedule

from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "scripts" / "server.sh"
RUN_TIMEOUT_S = 420


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _declared_deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server on a free loopback port with its home in a temporary folder, the work pool and every
    deployment of prefect.yaml; stopped even on failure. The scheduler loops every 2 s, not 60."""
    home = tmp_path_factory.mktemp("prefect")
    port = _free_loopback_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_PORT": str(port),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "1"}

    def script(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(SERVER), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"server.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    run_dir = home / "run"
    try:
        script("serve")
        script("pool")
        script("deploy")
        yield script, env["PREFECT_API_URL"], run_dir
    finally:
        pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
        subprocess.run([str(SERVER), "stop"], env=env, cwd=ROOT, timeout=60)
        for pid in pids:  # nothing this module started is left running
            state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
            assert not state.strip() or state.startswith("Z"), f"process {pid} still running after stop"


def _server_log_errors(run_dir: Path, tolerate: str | None = None) -> list[str]:
    """The server log's ERROR records and tracebacks (one string each), less those containing `tolerate`."""
    records = re.split(r"\n(?=\d\d:\d\d:\d\d\.\d+ \| )", (run_dir / "server.log").read_text())
    return [r for r in records if ("| ERROR" in r or "Traceback" in r) and not (tolerate and tolerate in r)]


def _wait(predicate, timeout_s: float, what: str, log: Path):
    """predicate's first truthy value, polled every second; on time-out fail with the log's tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(1)
    pytest.fail(f"no {what} within {timeout_s:.0f} s; {log.name}:\n{log.read_text()[-3000:]}")


def test_deployments_and_the_nightly_schedule(server):
    """Every deployment as declared; the scheduler service creates the study's upcoming nightly runs
    (with SQLAlchemy 2.1 it raised `Can't evaluate bulk DML statement` every loop and created none)."""
    _, api_url, run_dir = server
    declared = _declared_deployments()
    with SyncPrefectClient(api_url) as client:
        deployments = {d.name: d for d in client.read_deployments()}
        assert sorted(deployments) == sorted(d["name"] for d in declared)
        assert client.read_work_pool("local-process").type == "process"
        for d in declared:
            got = deployments[d["name"]]
            assert got.parameters == d["parameters"] and got.work_pool_name == "local-process"
            # the worker starts flow runs in this checkout
            assert got.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
            assert [s.schedule.cron for s in got.schedules] == [s["cron"] for s in d.get("schedules", [])]

        nightly = deployments["study"]
        upcoming = _wait(lambda: client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id]))), 90, "scheduled study run",
            run_dir / "server.log")
        assert all(r.state.is_scheduled() for r in upcoming)
        starts = sorted(r.expected_start_time for r in upcoming)
        assert all((t.hour, t.minute) == (2, 0) and t > datetime.now(timezone.utc) for t in starts), starts
    assert not _server_log_errors(run_dir)


def test_scheduled_study_runs_on_worker_with_results_on_its_run(tmp_path, server):
    """A tiny study scheduled 30 s ahead: the scheduler creates the run, the worker runs it to
    Completed, and the study's own flow run carries the summary, the report and its progress."""
    script, api_url, run_dir = server
    script("worker")
    # the smallest study that has folds, seeds to compare and a width transfer
    spec = write_spec(tmp_path, name="ops-e2e", epochs=2, predict={"k_epochs": [1], "n_folds": 2},
                      samples=2, seeds=[0, 1], graphs={"exact_limit": 200, "pivots": 8})
    wh_path = tmp_path / "ops.duckdb"
    parameters = {"spec": str(spec), "warehouse": str(wh_path), "reports_dir": str(tmp_path / "reports")}
    with SyncPrefectClient(api_url) as client:
        deployment = client.read_deployment_by_name("study/study")
        start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=30)  # the scheduler loops every 2 s
        client.create_deployment_schedules(
            deployment.id, [(IntervalSchedule(interval=timedelta(days=1), anchor_date=start), True)],
            parameters=parameters)
        run = _wait(lambda: next((r for r in client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
            if r.parameters["spec"] == str(spec) and r.expected_start_time == start), None),
            30, "flow run of the schedule", run_dir / "server.log")

        final = _wait(lambda: (r := client.read_flow_run(run.id)).state.is_final() and r, RUN_TIMEOUT_S,
                      "final state of the scheduled study run", run_dir / "worker.log")
        assert final.state.is_completed(), f"study ended {final.state.name}: {final.state.message}"
        # made by the scheduler, started by the worker at its time (less the worker's 10 s prefetch)
        assert run.auto_scheduled and final.start_time >= start - timedelta(seconds=15)

        study = load_study(spec)
        runs = expand_runs(study)
        wh = Warehouse(wh_path)
        got = wh.query("SELECT run_id, status, epochs_done, error FROM runs WHERE study = 'ops-e2e'")
        assert sorted(got["run_id"]) == sorted(r.run_id for r in runs)
        assert set(got["status"]) == {"completed"}, got["error"].to_list()
        assert set(got["epochs_done"]) == {study.epochs}

        # task runs arrive as events, recorded by the server shortly after the flow run ends
        task_runs = _wait(lambda: (t := client.read_task_runs()) and all(x.state.is_final() for x in t) and t,
                          30, "final task runs", run_dir / "server.log")
        assert all(t.state.is_completed() for t in task_runs), \
            {t.name: t.state.name for t in task_runs if not t.state.is_completed()}
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])))
        assert children  # the stages are subflows of the study run

        # the study's own Artifacts tab: summary table, report with embedded figures, progress at 100%
        own = {a.key: a for a in client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}
        assert own["ops-e2e-summary"].type == "table"
        report_md = own["ops-e2e-report"].data
        assert "![" in report_md and not re.search(r"!\[[^\]]*\]\((?!data:image/png;base64,)", report_md)
        assert own["ops-e2e-progress"].type == "progress" and float(own["ops-e2e-progress"].data) == 100
        # the study's log prints the summary table (logs reach the server in batches, after the state)
        _wait(lambda: any("| features" in entry.message for entry in client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))), 30,
            "summary table in the study's log", run_dir / "worker.log")
    # Under load, Prefect's SQLite backend sometimes fails a write with `database is locked` (a read
    # transaction that cannot upgrade, which the busy timeout does not cover); the client retries.
    # Anything else (the scheduler's errors above all) fails the test.
    assert not _server_log_errors(run_dir, tolerate="database is locked")
