"""Choosing where tasks run: the spec's execution section, the command-line overrides, and the
task runner and Ray resource requests they produce."""
from __future__ import annotations

import pytest
from prefect.task_runners import ProcessPoolTaskRunner
from prefect_ray import RayTaskRunner
from prefect_ray.context import RemoteOptionsContext

from flows._cli import execution_from_args, study_arguments
from flows._runtime import PROJECT_ROOT, make_task_runner, open_warehouse, requesting, training_device
from pipeline_lib.spec import ExecutionSpec, SpecError, load_study
from tests.conftest import write_spec


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

    wh = open_warehouse(str(tmp_path / "w.duckdb"), ExecutionSpec(data_dir=str(tmp_path / "shared")))
    assert wh.data_dir == tmp_path / "shared"
    assert open_warehouse(str(tmp_path / "w.duckdb"), local).data_dir == tmp_path / "data" / "w"
