from pathlib import Path

import pytest

from flows.train_sweep import train_sweep
from pipeline_lib.spec import expand_runs, load_study
from warehouse.db import Warehouse
from tests.conftest import write_spec

pytestmark = pytest.mark.slow


def test_sweep_through_prefect_into_duckdb(tmp_path, prefect_harness):
    spec = write_spec(tmp_path, sweep={"lr": {"log_uniform": [0.01, 0.1]}, "batch_size": [64]},
                      samples=2)
    wh_path = tmp_path / "w.duckdb"
    counts = train_sweep(str(spec), str(wh_path))
    study = load_study(spec)
    runs = expand_runs(study)
    assert counts == {"completed": len(runs)}
    wh = Warehouse(wh_path)
    got = wh.query("SELECT run_id, status, epochs_done, final_test_acc, config_id FROM runs WHERE study = 'tiny'")
    assert sorted(got["run_id"]) == sorted(r.run_id for r in runs)
    assert set(got["status"]) == {"completed"} and set(got["epochs_done"]) == {study.epochs}
    assert got["final_test_acc"].is_between(0, 1).all()
    n_metrics = wh.query("SELECT count(*) AS n FROM epoch_metrics")["n"][0]
    assert n_metrics == len(runs) * (study.epochs + 1)
    snaps = wh.query("SELECT path, bytes FROM snapshots")
    assert snaps.height == len(runs) * (study.epochs + 1) and (snaps["bytes"] > 0).all()
    # final accuracy in runs equals the last epoch's test accuracy
    mismatch = wh.query("""SELECT count(*) AS n FROM runs r JOIN epoch_metrics m
                           ON m.run_id = r.run_id AND m.epoch = r.epochs WHERE m.test_acc <> r.final_test_acc""")
    assert mismatch["n"][0] == 0

    # a re-run trains nothing and duplicates nothing
    before = {p: Path(p).stat().st_mtime_ns for p in snaps["path"]}  # a rewrite (temp file + rename) changes it
    assert train_sweep(str(spec), str(wh_path)) == counts
    assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == len(runs)
    assert wh.query("SELECT count(*) AS n FROM epoch_metrics")["n"][0] == n_metrics
    assert {p: Path(p).stat().st_mtime_ns for p in snaps["path"]} == before


def test_diverging_runs_do_not_stop_the_sweep(tmp_path, prefect_harness):
    spec = write_spec(tmp_path, name="mixed", sweep={"lr": [1e6, 0.05], "batch_size": [64]}, samples=6,
                      widths=[1.0], seeds=[0], width_transfer={})
    counts = train_sweep(str(spec), str(tmp_path / "w.duckdb"))
    rows = Warehouse(tmp_path / "w.duckdb").query(
        "SELECT lr, status, diverged_epoch, final_test_acc FROM runs ORDER BY lr")
    assert counts.get("diverged", 0) >= 1 and counts.get("completed", 0) >= 1
    diverged = rows.filter(rows["status"] == "diverged")
    assert (diverged["lr"] == 1e6).all() and (diverged["diverged_epoch"] == 1).all()
    assert diverged["final_test_acc"].is_null().all()


def test_stacked_and_single_run_sweeps_agree(tmp_path, prefect_harness):
    """One study trained as stacked groups and as single runs: same results, timings, progress to 100%."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    common = dict(name="agree", sweep={"lr": [0.05, 0.02], "dropout": [0.0, 0.5], "batch_size": [64]},
                  samples=2, widths=[1.0], seeds=[0, 1], epochs=2, width_transfer={},
                  predict={"k_epochs": [1], "n_folds": 2})
    one_slot = {"device": "cpu", "runs_per_device": 1}
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    states = [train_sweep(str(write_spec(tmp_path / "a", **common, execution={**one_slot, "stacked": True, "stack_size": 3})),
                          str(tmp_path / "a.duckdb"), return_state=True),
              train_sweep(str(write_spec(tmp_path / "b", **common, execution={**one_slot, "stacked": False})), str(tmp_path / "b.duckdb"),
                          return_state=True)]
    assert [s.result() for s in states] == [{"completed": 4}] * 2
    sql = "SELECT run_id, epoch, test_loss, test_acc FROM epoch_metrics ORDER BY run_id, epoch"
    a, b = Warehouse(tmp_path / "a.duckdb").query(sql), Warehouse(tmp_path / "b.duckdb").query(sql)
    assert a["run_id"].to_list() == b["run_id"].to_list() and a.height == 4 * 3
    assert (a["test_loss"] - b["test_loss"]).abs().max() < 1e-4
    assert (a["test_acc"] - b["test_acc"]).abs().max() <= 1 / 400
    groups = Warehouse(tmp_path / "a.duckdb").query("SELECT * FROM training_groups")
    # 4 runs, stack_size 3: two groups of two (near-equal)
    assert sorted(len(ids) for ids in groups["run_ids"]) == [2, 2]
    assert sorted(i for ids in groups["run_ids"] for i in ids) == sorted(a["run_id"].unique())
    assert set(groups["device"]) == {"cpu"} and (groups["model_epochs"] == 2 * 2).all()
    assert (groups["wall_seconds"] >= groups["train_seconds"]).all() and (groups["train_seconds"] > 0).all()
    with get_client(sync_client=True) as client:
        progress = client.read_artifacts(artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=["progress"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[s.state_details.flow_run_id for s in states])))
    assert len(progress) == 2 + 4 and all(float(p.data) == 100.0 for p in progress)  # 2 groups, 4 single runs


def test_a_triaged_sweep_s_task_runs_belong_to_their_own_phase_s_subflow(tmp_path, prefect_harness):
    """The rungs of one sweep share the command's process pool (`flows._fanout.RunnerPools`), and each
    phase's task runs still belong to that phase's train-sweep subflow in the UI (Prefect caches the
    submitting flow run at a runner's first submit: the shared pool must not keep the first one)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter
    from prefect.client.schemas.filters import TaskRunFilterFlowRunId

    spec = write_spec(tmp_path, name="rungs", samples=4, seeds=[0, 1], widths=[1.0], epochs=3, width_transfer={},
                      execution={"device": "cpu", "stacked": False},
                      triage={"rungs": [1, 2], "keep": 0.5, "predictor": "auto"})
    state = train_sweep(str(spec), str(tmp_path / "w.duckdb"), return_state=True)
    assert state.result() == {"completed": 2, "stopped": 6}

    async def phases():
        async with get_client() as client:
            parent = (await client.read_flow_run(state.state_details.flow_run_id)).id
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
            training = [c for c in children if c.name and c.flow_id and (await client.read_flow(c.flow_id)).name == "train-sweep"]
            out = []
            for run in sorted(training, key=lambda r: r.start_time):
                tasks = await client.read_task_runs(task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])))
                out.append(sorted(t.name.split("-")[0] for t in tasks))
            return out

    # three phases: 8 runs to epoch 1, 4 kept to epoch 2, 2 kept to the end; each phase's task runs on its subflow
    assert [len(tasks) for tasks in asyncio.run(phases())] == [8, 4, 2]
