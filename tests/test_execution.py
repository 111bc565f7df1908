"""Choosing where tasks run: the spec's execution section, the command-line overrides, the task
runner and Ray resource requests they produce, and where a study's data lies."""
from __future__ import annotations

import shutil

import polars as pl
import pytest
from prefect.task_runners import ProcessPoolTaskRunner
from prefect_ray import RayTaskRunner
from prefect_ray.context import RemoteOptionsContext

from flows._cli import execution_from_args, study_arguments
from flows._runtime import PROJECT_ROOT, make_task_runner, requesting
from stages.context import DataDirConflict, open_warehouse
from stages.train_sweep import training_device
from pipeline_lib.layout import DataLayout
from pipeline_lib.spec import ExecutionSpec, SpecError, load_study
from tests.conftest import write_spec
from warehouse.db import Warehouse
from warehouse.runs import record_study


def test_spec_execution_section(tmp_path):
    study = load_study(write_spec(tmp_path, execution={"runner": "ray", "ray_address": "10.1.2.3:6379",
                                                       "gpus_per_training_task": 0.25, "data_dir": "/shared/d"}))
    assert study.execution == ExecutionSpec(runner="ray", ray_address="10.1.2.3:6379", gpus_per_training_task=0.25,
                                            data_dir="/shared/d")
    assert load_study(write_spec(tmp_path)).execution.runner == "local"
    with pytest.raises(SpecError, match="execution.runner"):
        load_study(write_spec(tmp_path, execution={"runner": "dask"}))
    with pytest.raises(SpecError, match="execution.gpus_per_training_task"):
        load_study(write_spec(tmp_path, execution={"gpus_per_training_task": -1}))


def test_command_line_overrides_the_spec(tmp_path):
    spec = write_spec(tmp_path, execution={"runner": "ray", "ray_address": "10.1.2.3:6379", "cpus_per_graph_task": 4})
    study = load_study(spec)
    parse = study_arguments("t").parse_args
    assert execution_from_args(parse(["--spec", str(spec)]), study) == study.execution
    local = execution_from_args(parse(["--spec", str(spec), "--runner", "local", "--data-dir", "/d"]), study)
    assert (local.runner, local.data_dir, local.cpus_per_graph_task) == ("local", "/d", 4)
    plain = load_study(write_spec(tmp_path, name="plain"))
    ray = execution_from_args(parse(["--spec", str(spec), "--ray-address", "127.0.0.1:7000"]), plain)
    assert (ray.runner, ray.ray_address) == ("ray", "127.0.0.1:7000")  # an address implies Ray


def test_runner_factory_and_resource_requests(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    local = ExecutionSpec()
    pool = make_task_runner(local, 3)
    assert isinstance(pool, ProcessPoolTaskRunner) and pool._max_workers == 3
    with requesting(local, "training"):
        assert not RemoteOptionsContext.get().current_remote_options
    assert training_device(local, "cuda:1") == "cuda:1"

    on_ray = ExecutionSpec(runner="ray", ray_address="127.0.0.1:7000", gpus_per_training_task=0.25,
                           cpus_per_graph_task=2)
    runner = make_task_runner(on_ray, 3)
    assert isinstance(runner, RayTaskRunner) and runner.address == "127.0.0.1:7000"
    env = runner.init_kwargs["runtime_env"]["env_vars"]
    assert env["PYTHONPATH"] == str(PROJECT_ROOT) and env["PREFECT_API_URL"] == "http://127.0.0.1:1/api"
    with requesting(on_ray, "training"):
        assert RemoteOptionsContext.get().current_remote_options == {"num_cpus": 1.0, "num_gpus": 0.25}
    with requesting(on_ray, "graphs"):
        assert RemoteOptionsContext.get().current_remote_options == {"num_cpus": 2.0}
    assert training_device(on_ray, "cpu") == "cuda"  # Ray assigns the GPU and sets CUDA_VISIBLE_DEVICES
    assert training_device(ExecutionSpec(runner="ray"), "cuda:0") == "cpu"


def test_the_study_owns_its_data_dir(tmp_path):
    path, shared = str(tmp_path / "w.duckdb"), tmp_path / "shared"
    study = load_study(write_spec(tmp_path))
    assert open_warehouse(path, ExecutionSpec(), study.name).data_dir == tmp_path / "data" / "w"
    assert not (tmp_path / "w.duckdb").exists()  # resolving reads only
    record_study(open_warehouse(path, ExecutionSpec(data_dir=str(shared)), study.name), study)
    assert open_warehouse(path, ExecutionSpec(), study.name).data_dir == shared  # later stages need no data_dir
    assert open_warehouse(path, ExecutionSpec(data_dir=str(shared)), study.name).data_dir == shared
    with pytest.raises(DataDirConflict, match=f"keeps its snapshots and node metrics in {shared}"):
        open_warehouse(path, ExecutionSpec(data_dir=str(tmp_path / "other")), study.name)
    assert open_warehouse(path, ExecutionSpec(), "another").data_dir == tmp_path / "data" / "w"


def test_node_metrics_view_follows_a_moved_warehouse(tmp_path):
    """DuckDB stores the view's glob as an absolute path; opening the moved files makes it again."""
    before, after = tmp_path / "before", tmp_path / "after"
    node_file = DataLayout(before / "data").node_metrics("r1", 0)
    node_file.parent.mkdir(parents=True)
    pl.DataFrame({"node": [0, 1], "eigenvector": [0.5, 1.5]}).write_parquet(node_file)
    Warehouse(before / "w.duckdb", data_dir=before / "data").migrate()
    shutil.move(before, after)
    moved = Warehouse(after / "w.duckdb", data_dir=after / "data")
    moved.migrate()
    assert moved.query("SELECT run_id, sum(eigenvector) AS s FROM node_metrics GROUP BY ALL").rows() == [("r1", 2.0)]


def _square(x: int) -> tuple[int, int]:
    """x squared and the torch threads it ran with; x == 2 fails."""
    import torch

    if x == 2:
        raise ValueError("two is refused")
    return x * x, torch.get_num_threads()


def _set_torch_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def test_fan_out_in_process_keeps_order_and_records_failures():
    """Small local work runs in this process, with the plan's threads only while it runs; the pool
    and Ray paths are checked against it in tests/test_ray_runner.py."""
    import torch

    from flows._fanout import Failed, fan_out
    from pipeline_lib.placement import WorkerPlan

    before, seen = torch.get_num_threads(), []
    results = fan_out(_square, [{"x": x} for x in range(4)], ExecutionSpec(), WorkerPlan(1, 1, in_process=True),
                      stage="prediction", label="squares", initializer=_set_torch_threads,
                      on_result=lambda i, r: seen.append(i))
    assert results == [(0, 1), (1, 1), Failed("ValueError: two is refused"), (9, 1)]
    assert seen == [0, 1, 2, 3] and torch.get_num_threads() == before  # the flow's own threads come back
