"""The in-process orchestration (`stages.local`): the stages run on it as under Prefect, a command's
fan-outs share one pool per kind of worker, and a unit that raises fails alone."""
from __future__ import annotations

import os

import pytest

from pipeline_lib.placement import WorkerPlan
from pipeline_lib.spec import ExecutionSpec
from stages import graph_metrics, train_sweep
from stages.context import Failed, Work
from stages.local import LocalOrchestration, local_context
from stages.units import UNITS
from tests.conftest import write_spec
from warehouse.db import Warehouse


def _worker_pid(**_) -> int:
    return os.getpid()


def _raise_on(value: int) -> int:
    if value == 2:
        raise ValueError("two")
    return value * 10


def test_fan_outs_of_one_command_share_a_pool_and_a_failed_unit_fails_alone(monkeypatch):
    monkeypatch.setitem(UNITS, Work.FEATURES, (_worker_pid, None, "prediction"))
    monkeypatch.setitem(UNITS, Work.TRANSFER, (_raise_on, None, "prediction"))
    orchestration, local = LocalOrchestration(), ExecutionSpec(device="cpu")
    plan = WorkerPlan(workers=2, threads=1)
    try:
        first = orchestration.fan_out(Work.FEATURES, [{}] * 6, local, plan, label="first")
        second = orchestration.fan_out(Work.FEATURES, [{}] * 6, local, plan, label="second")
        assert os.getpid() not in first + second
        assert len(set(first) | set(second)) <= 2  # the same two workers served both fan-outs
        values = orchestration.fan_out(Work.TRANSFER, [{"value": v} for v in (1, 2, 3)], local, plan, label="mixed")
        assert values[0] == 10 and values[2] == 30 and values[1] == Failed("ValueError: two")
        in_process = orchestration.fan_out(Work.FEATURES, [{}], local, WorkerPlan(1, 1, in_process=True), label="here")
        assert in_process == [os.getpid()]
    finally:
        orchestration.close()
    with pytest.raises(Exception, match="runs under Prefect"):
        LocalOrchestration().fan_out(Work.FEATURES, [{}], ExecutionSpec(runner="ray", ray_address="x:1"), plan, label="x")


def test_a_triaged_sweep_runs_on_the_local_orchestration(tmp_path):
    """The training stage with two rungs, without Prefect: every phase trains in the one training pool,
    the decisions are recorded and the graph stage then runs on the same context."""
    spec = write_spec(tmp_path, name="local-rungs", samples=4, seeds=[0, 1], widths=[1.0], epochs=3,
                      width_transfer={}, triage={"rungs": [1, 2], "keep": 0.5})
    with local_context(spec, tmp_path / "w.duckdb") as ctx:
        assert train_sweep.run(ctx) == {"completed": 2, "stopped": 6}
        training_pools = [key for key in ctx.orchestration._pools if key[0] is UNITS[Work.TRAIN_GROUP][1]]
        assert len(training_pools) <= 1
        graphs = graph_metrics.run(ctx)
    wh = Warehouse(tmp_path / "w.duckdb")
    decisions = wh.query("SELECT rung, count(*) AS n, sum((decision = 'keep')::INT) AS kept FROM triage_decisions "
                         "GROUP BY rung ORDER BY rung")
    assert decisions.rows() == [(1, 8, 4), (2, 4, 2)]
    detail = wh.query("SELECT detail FROM costs WHERE strategy = 'triage'")["detail"][0]
    assert "wall time of this command's triaged sweep" in detail
    with local_context(spec, tmp_path / "w.duckdb") as ctx:  # a re-run decides nothing: no wall time to report
        assert train_sweep.run(ctx) == {"completed": 2, "stopped": 6}
    assert "wall time" not in wh.query("SELECT detail FROM costs WHERE strategy = 'triage'")["detail"][0]
    assert graphs["computed"] == wh.query("SELECT count(*) AS n FROM snapshots")["n"][0] > 0
