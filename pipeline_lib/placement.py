"""Where runs execute: device slots for concurrent training, torch threads per slot, stacked groups."""
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
    """Concurrent training slots, one device string each, and torch threads per slot."""

    slots: tuple[str, ...]
    threads_per_slot: int

    @property
    def concurrency(self) -> int:
        return len(self.slots)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def plan_placement(device: str = "auto", runs_per_device: int = 0) -> Placement:
    """Spread runs over every visible GPU (`runs_per_device` each, default 2) or over the CPU cores.

    On CPU the cores are divided among the concurrent runs so they are not oversubscribed.
    """
    cores = available_cores()
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
        return Placement(slots, max(1, cores // len(slots)))
    per = runs_per_device or cores
    return Placement(tuple(["cpu"] * per), max(1, cores // per))


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
