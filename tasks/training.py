"""Prefect tasks wrapping training: one run, or one stacked group of runs."""
from __future__ import annotations

import time

import torch
from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from pipeline_lib.datasets import load_dataset
from pipeline_lib.progress import ProgressFile
from pipeline_lib.run_state import EpochMetrics, RunResult
from pipeline_lib.spec import RunConfig
from pipeline_lib.stacked import GroupResult, StackOptions, train_group
from pipeline_lib.training import train_run


def set_torch_threads(threads: int) -> None:
    """Process-pool initializer: give each worker its share of the cores."""
    torch.set_num_threads(threads)


class TaskProgress:
    """Per-epoch progress of a task: a file the flow polls (terminal) and a Prefect progress artifact (UI)."""

    UPDATE_EVERY_S = 2.0  # artifact updates are API calls: at most one per interval, and the last

    def __init__(self, configs: list[RunConfig], progress_file: str | None):
        self.file = ProgressFile(progress_file) if progress_file else None
        self.total = sum(c.epochs + 1 for c in configs)
        self.last_update = 0.0
        self.artifact = create_progress_artifact(0.0, description=f"epochs of {len(configs)} run(s), "
                                                                  "initialisation included")

    def record(self, run_id: str, metrics: EpochMetrics) -> None:
        if self.file:
            self.file.record(run_id, metrics.epoch)
        now = time.monotonic()
        if now - self.last_update >= self.UPDATE_EVERY_S:
            self.last_update = now
            self.update()

    def update(self) -> None:
        done = sum(e + 1 for e in self.file.epochs.values()) if self.file else 0
        update_progress_artifact(self.artifact, min(100.0, 100.0 * done / self.total))

    def finish(self) -> None:
        """Every run is completed or diverged (a diverged run's remaining epochs count as done)."""
        update_progress_artifact(self.artifact, 100.0)


@task(name="train-run", retries=1, retry_delay_seconds=1, persist_result=False, tags=["training"],
      task_run_name="train-{config.architecture}-w{config.width}-{config.config_id}-s{config.seed}")
def train_run_task(config: RunConfig, data_dir: str, device: str, progress_file: str | None = None,
                   until_epoch: int | None = None) -> RunResult:
    """Train (or resume, or skip if finished) one run, to `until_epoch` at most. A retry resumes from the
    last finished epoch."""
    data = load_dataset(config.dataset.name, config.dataset.root, config.dataset.subset,
                        config.dataset.test_subset)
    progress = TaskProgress([config], progress_file)
    result = train_run(config, data, data_dir, device=device,
                       on_epoch=lambda m: progress.record(config.run_id, m), until_epoch=until_epoch)
    progress.finish()
    return result


@task(name="train-group", retries=1, retry_delay_seconds=1, persist_result=False, tags=["training"],
      task_run_name="train-group-{configs[0].architecture}-w{configs[0].width}-{device}")
def train_group_task(configs: list[RunConfig], data_dir: str, device: str, options: dict,
                     progress_file: str | None = None, until_epoch: int | None = None) -> GroupResult:
    """Train (or resume, or read back) one stacked group, to `until_epoch` at most. A retry resumes
    every run from its last epoch."""
    first = configs[0].dataset
    data = load_dataset(first.name, first.root, first.subset, first.test_subset)
    progress = TaskProgress(configs, progress_file)
    result = train_group(configs, data, data_dir, device=device, options=StackOptions(**options),
                         on_epoch=progress.record, until_epoch=until_epoch)
    progress.finish()
    return result
