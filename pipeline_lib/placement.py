"""How a stage's work is cut and where it runs: device slots for concurrent training, stacked groups,
graph batches, and for every stage the workers, threads per worker and whether a pool is worth it."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import torch

from .vocabulary import DATASETS

if TYPE_CHECKING:
    from .spec import RunConfig


class DeviceUnavailable(RuntimeError):
    """The spec asks for a device this machine does not have."""


@dataclass(frozen=True)
class Placement:
    """Concurrent training slots, one device string each."""

    slots: tuple[str, ...]

    @property
    def concurrency(self) -> int:
        return len(self.slots)


@dataclass(frozen=True)
class WorkerPlan:
    """How a stage's units run: on `workers` workers of `threads` threads each (workers x threads =
    cores), or with `in_process` in the flow's own process when a pool's start-up (seconds) costs
    more than the work."""

    workers: int
    threads: int
    in_process: bool = False


def plan_workers(units: int, max_workers: int, in_process: bool = False) -> WorkerPlan:
    """At most `max_workers` workers, never more than there are units, the cores divided among them."""
    workers = max(1, min(max_workers, units))
    return WorkerPlan(workers, max(1, available_cores() // workers), in_process)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def plan_placement(device: str = "auto", runs_per_device: int = 0) -> Placement:
    """Spread runs over every visible GPU (`runs_per_device` each, default 2) or over the CPU cores.

    On CPU the cores are divided among the concurrent runs (`plan_workers`) so they are not oversubscribed.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {device!r} requested but no CUDA GPU is visible; use device: auto or cpu")
        if ":" in device and int(device.split(":")[1]) >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA GPU(s) "
                                    f"are visible (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        gpus = [device] if ":" in device else [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        per = runs_per_device or 2
        slots = tuple(g for _ in range(per) for g in gpus)
        return Placement(slots)
    return Placement(tuple(["cpu"] * (runs_per_device or available_cores())))


UNITS_PER_SLOT = 4  # groups per worker: enough that the last ones are small, few enough to stay stacked
MIN_GROUP_RUNS = 4  # a group is not cut below this: stacking gains most of its speed by 4 to 8 runs


@lru_cache(maxsize=64)
def _model_size(architecture: str, width: float, depth: int, dataset: str) -> tuple[int, int]:
    """(activations of one image's forward pass, parameters) of a run's model."""
    from .models import build_model

    facts = DATASETS[dataset]
    channels, size = facts.channels, facts.image_size
    model = build_model(architecture, in_channels=channels, image_size=size, num_classes=facts.classes, width=width,
                        dropout=0.0, depth=depth)
    activations = 0

    def count(_module, _inputs, output):
        nonlocal activations
        activations += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(torch.zeros(1, channels, size, size))
    for h in hooks:
        h.remove()
    return activations, sum(p.numel() for p in model.parameters())


def run_cost(config: RunConfig) -> float:
    """Estimated work of a run, in activations: per image passed forward, 3x for a trained one, plus
    an optimizer step over the parameters per training batch.

    Activations, not multiply-adds: small nets on a CPU are bound by memory traffic (LeNet at width
    1 took 1.5x the time of width 0.5, with 3.4x the multiply-adds and 2x the activations). Every
    epoch trains on the training images and evaluates the test images; training images are
    evaluated at epoch 0, and after every epoch with `train_metrics: exact`.
    """
    from .training import TRAIN_EVAL_LIMIT

    activations, parameters = _model_size(config.architecture, config.width, config.depth, config.dataset.name)
    facts = DATASETS[config.dataset.name]
    full_train, full_test = facts.train_images, facts.test_images
    train = min(config.dataset.subset or full_train, full_train)
    test = min(config.dataset.test_subset or full_test, full_test)
    train_evals = config.epochs + 1 if config.train_metrics == "exact" else 1
    evaluated = test * (config.epochs + 1) + min(train, TRAIN_EVAL_LIMIT) * train_evals
    steps = math.ceil(train / config.batch_size) * config.epochs
    return float(activations * (3 * train * config.epochs + evaluated) + parameters * steps)


def plan_groups(configs: Sequence[RunConfig], stack_size: int, slots: int) -> list[list[RunConfig]]:
    """Cut runs into stacked groups, in the order to start them: largest estimated cost first.

    Only runs of equal (group_key, dataset) share a group, at most `stack_size` each. With several
    slots, every kind is cut into near-equal groups of about 1/(UNITS_PER_SLOT x slots) of the
    study's estimated cost (`run_cost`), none below MIN_GROUP_RUNS runs unless the study is too
    small to give every slot that many; so there are more groups than workers, and a pool that
    takes them in this order (longest-processing-time scheduling) ends on small groups and its
    workers finish together, instead of one core idling while another trains the largest kind
    alone. Order inside a kind is kept.
    """
    kinds: dict[tuple, list[RunConfig]] = {}
    for config in configs:
        kinds.setdefault((config.group_key, config.dataset), []).append(config)
    cost = {key: run_cost(runs[0]) for key, runs in kinds.items()}
    unit = sum(cost[key] * len(runs) for key, runs in kinds.items()) / (UNITS_PER_SLOT * slots)
    smallest = max(1, min(MIN_GROUP_RUNS, len(configs) // slots))
    groups = []
    for key, runs in kinds.items():
        pieces = math.ceil(len(runs) / stack_size)
        if slots > 1:
            pieces = max(pieces, min(len(runs) // smallest, round(cost[key] * len(runs) / unit)))
        groups += [runs[i * len(runs) // pieces:(i + 1) * len(runs) // pieces] for i in range(pieces)]
    return sorted(groups, key=lambda g: cost[(g[0].group_key, g[0].dataset)] * len(g), reverse=True)


BATCHES_PER_WORKER = 4  # enough to balance widths of different cost, few enough to keep task overhead small


def plan_batches(jobs: Sequence, cores: int | None = None) -> tuple[list[list], WorkerPlan]:
    """Graph stage: split the jobs (ordered by run) into near-equal batches, BATCHES_PER_WORKER per
    core; one worker per core at most, OpenMP threads so that workers x threads = cores. A single
    batch runs in the flow's process (not worth starting a pool)."""
    cores = cores or available_cores()
    n_batches = min(len(jobs), cores * BATCHES_PER_WORKER)
    batches = [list(jobs[i * len(jobs) // n_batches:(i + 1) * len(jobs) // n_batches]) for i in range(n_batches)]
    workers = max(1, min(cores, len(batches)))
    return batches, WorkerPlan(workers, max(1, cores // workers), in_process=len(batches) == 1)


POOL_MIN_RUNS = 40  # below this, fits take milliseconds and a process pool's start-up costs more than it saves


def plan_designs(designs: int, runs: int) -> WorkerPlan:
    """Prediction stages (one unit per design matrix): single-threaded workers, one per core (tiny
    fits drown in thread start-up, and the workers already fill the cores); in the flow's process for
    a small study."""
    return WorkerPlan(max(1, min(available_cores(), designs)), 1, in_process=runs < POOL_MIN_RUNS or designs < 2)


def plan_table_units(units: int) -> WorkerPlan:
    """Stages of table arithmetic on small frames (features): in the flow's process, as each unit
    takes less than a worker's start-up; on Ray (which `flows._fanout` never bypasses) a task each."""
    return plan_workers(units, available_cores(), in_process=True)
