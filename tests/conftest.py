"""Shared fixtures: a real Prefect test server for the session and tiny study specs."""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
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


@contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[bool]:
    """A real tmpfs mounted on `folder` with `options` (e.g. "size=1m", "ro,size=1m") while inside;
    False when it cannot be mounted (mounting needs root), so the test can skip."""
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", str(folder)], check=True)


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


# --- a registered predictor on hand-built digits/lenet runs (scoring and triage tests) ---------

def add_runs(wh, study: str, configs: list[float], seeds: int, last_epoch: int = 3, status: str = "completed",
             architecture: str = "lenet", dataset: str = "digits", width: float = 1.0, rng=None) -> None:
    """Runs whose quality q (per configuration) sets both their early and final test accuracy;
    epoch metrics 0..last_epoch (a run short of its 3 epochs is still training)."""
    from warehouse.db import upsert

    rng = rng or np.random.default_rng(len(study))
    runs, metrics = [], []
    for q in configs:
        for seed in range(seeds):
            run_id = f"{study}-{architecture}-{dataset}-{q:.3f}-{width}-s{seed}"
            noise = rng.normal(0, 0.02)
            accs = [0.1, 0.2 + 0.4 * q + noise, 0.3 + 0.5 * q + noise, 0.3 + 0.55 * q + noise]
            done = last_epoch == 3 and status == "completed"
            runs.append({"study": study, "run_id": run_id, "config_id": f"q{q:.3f}", "architecture": architecture,
                         "width": width, "depth": 1, "dataset": dataset, "lr": 0.01 + 0.05 * rng.random(),
                         "dropout": 0.0, "weight_decay": 0.0, "optimizer": "sgd", "batch_size": 64, "seed": seed,
                         "epochs": 3, "status": status, "epochs_done": last_epoch,
                         "final_test_acc": accs[3] + rng.normal(0, 0.01) if done else None,
                         "updated_at": datetime(2026, 1, 1)})
            metrics += [{"run_id": run_id, "epoch": e, "train_loss": 2.0 - a, "train_acc": a, "test_loss": 2.0 - a,
                         "test_acc": a, "seconds": 1.0} for e, a in enumerate(accs[:last_epoch + 1])]
    with wh.writer() as con:
        upsert(con, "runs", pl.DataFrame(runs, schema_overrides={"final_test_acc": pl.Float64}))
        upsert(con, "epoch_metrics", pl.DataFrame(metrics))


@pytest.fixture(scope="session")
def registered_tiny(tmp_path_factory):
    """`registered_warehouse` at k = 1, shared by the scoring and triage tests (each adds its own studies)."""
    return registered_warehouse(tmp_path_factory.mktemp("registered") / "w.duckdb", 1)


def registered_warehouse(path: Path, K: int):
    """A warehouse where study "tiny" (12 configurations x 2 seeds of hand-built runs, see `add_runs`)
    has early_acc and hparams features at k = K, evaluated under grouped cross-validation, and its
    predictors registered (digits, lenet). Imports here: conftest loads before Prefect's settings."""
    from pipeline_lib.prediction.evaluation import with_unit
    from pipeline_lib.features import base_set_features
    from pipeline_lib.prediction.evaluation import cross_validate_design, feature_matrix, grouped_folds
    from pipeline_lib.prediction.metrics import evaluation_table
    from pipeline_lib.prediction.targets import run_targets
    from pipeline_lib.spec import Study
    from warehouse.db import Warehouse
    from warehouse.predict import epoch_metrics, study_runs, write_features, write_results
    from stages.register import register_study

    study = Study.model_validate({**TINY_STUDY, "predict": {"k_epochs": [K], "n_folds": 3}})
    wh = Warehouse(path)
    add_runs(wh, study.name, list(np.linspace(0, 1, 12)), 2, rng=np.random.default_rng(0))
    runs = study_runs(wh, study.name)
    features = pl.concat([base_set_features(s, K, runs, epoch_metrics(wh, study.name)) for s in ("early_acc", "hparams")])
    write_features(wh, study.name, features)
    targets = grouped_folds(run_targets(runs), 3)
    predictions = []
    for feature_set in ("early_acc", "hparams"):
        X, _ = feature_matrix(features.filter(pl.col("feature_set") == feature_set), targets["run_id"].to_list())
        predictions.append(with_unit(cross_validate_design(X, targets), feature_set=feature_set, k=K, split="cv"))
    predictions = pl.concat(predictions)
    write_results(wh, study.name, ["cv"], evaluation_table(predictions, targets), predictions)
    register_study(wh, study)
    return wh


