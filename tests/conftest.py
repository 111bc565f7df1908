"""Shared fixtures: a real Prefect test server for the session and tiny study specs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


TINY_STUDY = {
    "name": "tiny",
    "dataset": {"name": "digits", "subset": 400},
    "architectures": ["lenet"],
    "widths": [0.5, 1.0],
    "epochs": 3,
    "seeds": [0, 1],
    "samples": 2,
    "sweep": {"lr": {"log_uniform": [0.01, 0.1]}, "batch_size": [64]},
    "execution": {"device": "cpu"},
    "predict": {"k_epochs": [1, 2], "n_folds": 2},
    "width_transfer": {"train_widths": [0.5], "test_widths": [1.0]},
}


def write_spec(directory: Path, **overrides) -> Path:
    spec = {**TINY_STUDY, **overrides}
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def train_in_process(spec: Path, wh):
    """Every run of the spec trained by the library one after the other and recorded as the training
    stage records them: for tests of later stages, without the training flow's Prefect and pool."""
    from pipeline_lib.datasets import load_dataset
    from pipeline_lib.spec import expand_runs, load_study
    from pipeline_lib.training import train_run
    from warehouse.runs import record_runs, record_study

    import torch

    study = load_study(spec)
    record_study(wh, study)
    configs = expand_runs(study)
    data = load_dataset(study.dataset.name, subset=study.dataset.subset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a pool worker: on a busy machine 2 threads ran these tiny nets 4x slower
    try:
        results = {c.run_id: train_run(c, data, wh.data_dir) for c in configs}
    finally:
        torch.set_num_threads(threads)
    record_runs(wh, study.name, configs, results)
    return study


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    return write_spec(tmp_path)
