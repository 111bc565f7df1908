"""Prefect tasks wrapping training (`stages.units`): one run, or one stacked group of runs, each with
a Prefect progress artifact for the UI beside the progress file the stage polls."""
from __future__ import annotations

import time

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from pipeline_lib.run_state import EpochMetrics, RunResult
from pipeline_lib.spec import RunConfig
from pipeline_lib.stacked import GroupResult
from stages import units


class ArtifactProgress:
    """Per-epoch progress of a task as a Prefect progress artifact (UI)."""

    UPDATE_EVERY_S = 2.0  # artifact updates are API calls: at most one per interval, and the last

    def __init__(self, configs: list[RunConfig]):
        self.total = sum(c.epochs + 1 for c in configs)
        self.epochs: dict[str, int] = {}
        self.last_update = 0.0
        self.artifact = create_progress_artifact(0.0, description=f"epochs of {len(configs)} run(s), "
                                                                  "initialisation included")

    def record(self, run_id: str, metrics: EpochMetrics) -> None:
        self.epochs[run_id] = metrics.epoch
        now = time.monotonic()
        if now - self.last_update >= self.UPDATE_EVERY_S:
            self.last_update = now
            done = sum(e + 1 for e in self.epochs.values())
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
    progress = ArtifactProgress([config])
    result = units.train_run(config, data_dir, device, progress_file, until_epoch, on_epoch=progress.record)
    progress.finish()
    return result


@task(name="train-group", retries=1, retry_delay_seconds=1, persist_result=False, tags=["training"],
      task_run_name="train-group-{configs[0].architecture}-w{configs[0].width}-{device}")
def train_group_task(configs: list[RunConfig], data_dir: str, device: str, options: dict,
                     progress_file: str | None = None, until_epoch: int | None = None) -> GroupResult:
    """Train (or resume, or read back) one stacked group, to `until_epoch` at most. A retry resumes
    every run from its last epoch."""
    progress = ArtifactProgress(configs)
    result = units.train_group(configs, data_dir, device, options, progress_file, until_epoch, on_epoch=progress.record)
    progress.finish()
    return result
