"""Prefect task wrapping one training run."""
from __future__ import annotations

import torch
from prefect import task

from pipeline_lib.datasets import load_dataset
from pipeline_lib.spec import RunConfig
from pipeline_lib.training import RunResult, train_run


def set_torch_threads(threads: int) -> None:
    """Process-pool initializer: give each worker its share of the cores."""
    torch.set_num_threads(threads)


@task(name="train-run", retries=1, retry_delay_seconds=1, persist_result=False, tags=["training"],
      task_run_name="train-{config.architecture}-w{config.width}-{config.config_id}-s{config.seed}")
def train_run_task(config: RunConfig, data_dir: str, device: str) -> RunResult:
    """Train (or resume, or skip if finished) one run. A retry resumes from the last finished epoch."""
    data = load_dataset(config.dataset.name, config.dataset.root, config.dataset.subset)
    return train_run(config, data, data_dir, device=device)
