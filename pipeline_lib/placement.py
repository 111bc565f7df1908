"""Where runs execute: device slots for concurrent training and how many torch threads each gets."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


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
        gpus = [device] if ":" in device else [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        per = runs_per_device or 2
        slots = tuple(g for _ in range(per) for g in gpus)
        return Placement(slots, max(1, cores // len(slots)))
    per = runs_per_device or cores
    return Placement(tuple(["cpu"] * per), max(1, cores // per))
