"""The units of work the stages fan out (`context.Work`), as plain functions of their parameters, each
with the worker initializer that gives a worker its share of the cores. Both orchestrations run
these: Prefect's wraps each in its task (`tasks/`), the in-process one (`stages.local`) calls them."""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from pipeline_lib.run_state import EpochMetrics, RunResult
from pipeline_lib.spec import GraphOptions, RunConfig

from .context import Work

OnEpoch = Callable[[str, EpochMetrics], None]


def set_torch_threads(threads: int) -> None:
    """Worker initializer of training: each worker its share of the cores."""
    import torch

    torch.set_num_threads(threads)


def set_graph_threads(threads: int) -> None:
    """Worker initializer of the graph stage: graph-tool's OpenMP threads, BLAS's (scipy's eigensolvers)
    and torch's, so that workers x threads = cores (oversubscribed BLAS threads made ARPACK 3x slower)."""
    import graph_tool
    import torch
    from threadpoolctl import threadpool_limits

    graph_tool.openmp_set_num_threads(threads)
    threadpool_limits(threads)
    torch.set_num_threads(threads)


def set_numeric_threads(threads: int) -> None:
    """Worker initializer of the prediction stages: OpenMP/BLAS threads per worker (one,
    `placement.plan_designs`: tiny fits drown in thread start-up, and the workers fill the cores)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)


class _Progress:
    """Per-epoch progress to the file the stage polls, and to the caller's own hook (Prefect's artifact)."""

    def __init__(self, progress_file: str | None, on_epoch: OnEpoch | None):
        from pipeline_lib.progress import ProgressFile

        self.file = ProgressFile(progress_file) if progress_file else None
        self.on_epoch = on_epoch

    def record(self, run_id: str, metrics: EpochMetrics) -> None:
        if self.file:
            self.file.record(run_id, metrics.epoch)
        if self.on_epoch:
            self.on_epoch(run_id, metrics)


def train_run(config: RunConfig, data_dir: str, device: str, progress_file: str | None = None,
              until_epoch: int | None = None, on_epoch: OnEpoch | None = None) -> RunResult:
    """Train (or resume, or skip if finished) one run, to `until_epoch` at most."""
    from pipeline_lib.datasets import load_dataset
    from pipeline_lib.training import train_run as train

    data = load_dataset(config.dataset.name, config.dataset.root, config.dataset.subset, config.dataset.test_subset)
    progress = _Progress(progress_file, on_epoch)
    return train(config, data, data_dir, device=device, on_epoch=lambda m: progress.record(config.run_id, m),
                 until_epoch=until_epoch)


def train_group(configs: list[RunConfig], data_dir: str, device: str, options: dict, progress_file: str | None = None,
                until_epoch: int | None = None, on_epoch: OnEpoch | None = None):
    """Train (or resume, or read back) one stacked group, to `until_epoch` at most."""
    from pipeline_lib.datasets import load_dataset
    from pipeline_lib.stacked import StackOptions
    from pipeline_lib.stacked import train_group as train

    first = configs[0].dataset
    data = load_dataset(first.name, first.root, first.subset, first.test_subset)
    progress = _Progress(progress_file, on_epoch)
    return train(configs, data, data_dir, device=device, options=StackOptions(**options), on_epoch=progress.record,
                 until_epoch=until_epoch)


def graph_batch(jobs: list, data_dir: str, options: GraphOptions):
    """Rolled graphs, node properties (written to Parquet) and summaries of a batch of snapshots."""
    from pipeline_lib.graphs.snapshot_metrics import process_snapshots

    return process_snapshots(jobs, data_dir, options)


def features(feature_set: str, k: int, runs: pl.DataFrame, epoch_metrics: pl.DataFrame, graph_summaries: pl.DataFrame,
             snapshot_paths: pl.DataFrame, data_dir: str) -> tuple[pl.DataFrame, dict[str, str]]:
    """One base set's feature rows at k, and the error of each run left out: a run whose snapshot
    cannot be read gets no rows (its unit alone stays pending), and a damaged snapshot is
    quarantined, so the next train-sweep trains its run again (`RunStore.finished_result`)."""
    from pipeline_lib.features import base_set_features
    from pipeline_lib.files import DamagedFile, quarantine

    errors: dict[str, str] = {}

    def unreadable(run_id: str, e: DamagedFile | FileNotFoundError) -> None:
        if isinstance(e, DamagedFile):
            quarantine(e.path, data_dir, str(e))
        errors[run_id] = f"{type(e).__name__}: {e}" if isinstance(e, FileNotFoundError) else str(e)

    rows = base_set_features(feature_set, k, runs, epoch_metrics, graph_summaries, snapshot_paths, unreadable)
    return rows, errors


def cross_validate(feature_set: str, k: int, X: np.ndarray, targets: pl.DataFrame) -> pl.DataFrame:
    """Every task and predictor on one design matrix (feature_set and k name the unit)."""
    from pipeline_lib.prediction.evaluation import cross_validate_design

    return cross_validate_design(X, targets)


def transfer(feature_set: str, k: int, X: np.ndarray, targets: pl.DataFrame,
             directions: dict[str, tuple[np.ndarray, np.ndarray]]) -> pl.DataFrame:
    from pipeline_lib.prediction.evaluation import transfer_design

    return transfer_design(X, targets, directions)


# each unit of work: its function, the worker initializer that sets its threads, its kind of resources
UNITS: dict[Work, tuple[Callable, Callable[[int], None] | None, str]] = {
    Work.TRAIN_RUN: (train_run, set_torch_threads, "training"),
    Work.TRAIN_GROUP: (train_group, set_torch_threads, "training"),
    Work.GRAPH_BATCH: (graph_batch, set_graph_threads, "graphs"),
    Work.FEATURES: (features, None, "prediction"),
    Work.CROSS_VALIDATE: (cross_validate, set_numeric_threads, "prediction"),
    Work.TRANSFER: (transfer, set_numeric_threads, "prediction"),
}
