"""The operations path for real: scripts/server.sh starts a Prefect server, work pool and worker,
prefect.yaml's deployments are deployed, one runs on a tiny spec, and the result is read back."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

from pipeline_lib.spec import expand_runs, load_study
from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "scripts" / "server.sh"
RUN_TIMEOUT_S = 300


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _declared_deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _present(deployment: dict) -> bool:
    """Whether the deployment's flow file is in this checkout (flows land on main one by one)."""
    module = deployment["entrypoint"].split(":")[0]
    return (ROOT / (module.replace(".", "/") + ".py")).is_file()


@pytest.fixture
def server(tmp_path):
    """A Prefect server on a free loopback port, its home in tmp_path; stopped even on failure."""
    port = _free_loopback_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_PORT": str(port),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           # no scheduled runs of the nightly deployment while the test's worker listens
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}

    def script(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(SERVER), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"server.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    run_dir = tmp_path / "prefect" / "run"
    try:
        script("serve")
        yield script, env["PREFECT_API_URL"], run_dir
    finally:
        pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
        subprocess.run([str(SERVER), "stop"], env=env, cwd=ROOT, timeout=60)
        for pid in pids:  # nothing this test started is left running
            state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
            assert not state.strip() or state.startswith("Z"), f"process {pid} still running after stop"


def _wait_final(client: SyncPrefectClient, flow_run_id, run_dir: Path):
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(1)
    log = (run_dir / "worker.log").read_text()[-3000:]
    pytest.fail(f"flow run still {run.state.name if run.state else None} after {RUN_TIMEOUT_S} s; worker log:\n{log}")


def _wait_task_runs(client: SyncPrefectClient, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while True:
        task_runs = client.read_task_runs()
        if (task_runs and all(t.state and t.state.is_final() for t in task_runs)) or time.monotonic() > deadline:
            return task_runs
        time.sleep(0.5)


def test_deployment_runs_on_worker_and_lands_in_warehouse(tmp_path, server):
    script, api_url, run_dir = server
    declared = _declared_deployments()
    present = [d["name"] for d in declared if _present(d)]
    target = "study" if "study" in present else "train-sweep"
    assert target in present

    script("pool")
    script("worker")
    script("deploy", target)

    if target == "study":  # the smallest study that has folds, seeds to compare and a width transfer
        size = {"samples": 2, "seeds": [0, 1], "graphs": {"exact_limit": 200, "pivots": 8}}
    else:  # one run
        size = {"samples": 1, "seeds": [0], "widths": [0.5], "width_transfer": {}}
    spec = write_spec(tmp_path, name="ops-e2e", epochs=2, predict={"k_epochs": [1], "n_folds": 2}, **size)
    wh_path = tmp_path / "ops.duckdb"
    parameters = {"spec": str(spec), "warehouse": str(wh_path)}
    if target == "study":
        parameters["reports_dir"] = str(tmp_path / "reports")
    with SyncPrefectClient(api_url) as client:
        (deployment,) = client.read_deployments()
        run = client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

        # while the worker runs it: the rest of prefect.yaml (all of it, once every flow has landed)
        script("deploy", *[name for name in present if name != target])
        deployments = {d.name: d for d in client.read_deployments()}
        assert sorted(deployments) == sorted(present)
        assert client.read_work_pool("local-process").type == "process"
        for d in declared:
            if d["name"] in deployments:
                got = deployments[d["name"]]
                assert got.parameters == d["parameters"] and got.work_pool_name == "local-process"
                # the worker starts flow runs in this checkout
                assert got.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
                assert [s.schedule.cron for s in got.schedules] == [s["cron"] for s in d.get("schedules", [])]

        final = _wait_final(client, run.id, run_dir)
        assert final.state.is_completed(), f"{target} ended {final.state.name}: {final.state.message}"

        study = load_study(spec)
        runs = expand_runs(study)
        wh = Warehouse(wh_path)
        got = wh.query("SELECT run_id, status, epochs_done, error FROM runs WHERE study = 'ops-e2e'")
        assert sorted(got["run_id"]) == sorted(r.run_id for r in runs)
        assert set(got["status"]) == {"completed"}, got["error"].to_list()
        assert set(got["epochs_done"]) == {study.epochs}
        assert wh.query("SELECT count(*) AS n FROM epoch_metrics")["n"][0] == len(runs) * (study.epochs + 1)

        # every task of the run (and of its subflows) reported to this server and completed; task
        # runs arrive as events, recorded by the server shortly after the flow run ends
        task_runs = _wait_task_runs(client)
        assert task_runs and all(t.state.is_completed() for t in task_runs), \
            {t.name: t.state.name for t in task_runs if not t.state.is_completed()}
        # what the UI shows beside the runs: training progress (100% once done), the study's tables
        artifacts = client.read_artifacts()
        assert artifacts and all(a.flow_run_id for a in artifacts)
        assert all(float(a.data) == 100 for a in artifacts if a.type == "progress"), \
            [(a.type, a.data) for a in artifacts]
        if target == "study":
            assert any(a.type in ("table", "markdown") for a in artifacts), [a.type for a in artifacts]
