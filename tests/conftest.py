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


@pytest.fixture
def tiny_spec(tmp_path) -> Path:
    return write_spec(tmp_path)
