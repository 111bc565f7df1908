"""Where runs execute: device slots for concurrent training, torch threads per slot, stacked groups."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

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


def plan_groups(configs: Sequence[RunConfig], stack_size: int, slots: int) -> list[list[RunConfig]]:
    """Cut runs into stacked groups: equal (group_key, dataset) only, at most `stack_size` each.

    Each kind of run is cut into near-equal chunks; then, while there are fewer groups than device
    slots, the largest group is halved, so every slot gets work. Order inside a kind is kept.
    """
    kinds: dict[tuple, list[RunConfig]] = {}
    for config in configs:
        kinds.setdefault((config.group_key, config.dataset), []).append(config)
    groups = []
    for runs in kinds.values():
        pieces = math.ceil(len(runs) / stack_size)
        groups += [runs[i * len(runs) // pieces:(i + 1) * len(runs) // pieces] for i in range(pieces)]
    while len(groups) < slots and max((len(g) for g in groups), default=1) > 1:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        runs = groups.pop(largest)
        groups[largest:largest] = [runs[:len(runs) // 2], runs[len(runs) // 2:]]
    return groups
