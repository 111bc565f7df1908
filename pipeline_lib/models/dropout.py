"""Dropout whose masks come from an explicit per-run stream instead of torch's global RNG.

A stack of runs trained as one model cannot share torch's global RNG with a run trained alone,
so every run draws its masks from its own generator, seeded by (run seed, epoch) and consumed in
forward order. A run therefore sees the same masks whether it trains alone or inside a stack,
and a resumed run sees the masks it would have seen (the stream restarts at every epoch).

Inside `DropoutMasks.active()` every `Dropout` of a model multiplies its input by the stream's
mask; outside it, `Dropout` is torch's ordinary dropout.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

import torch
from torch import nn

_ACTIVE: ContextVar["DropoutMasks | None"] = ContextVar("active_dropout_masks", default=None)
_STREAM_SALT = 0x5DEECE66D  # keeps the mask stream apart from the data-order stream of the same seed


def dropout_seed(seed: int, epoch: int) -> int:
    """The seed of one run's dropout stream in one epoch."""
    return (seed * 1_000_003 + epoch) ^ _STREAM_SALT


class DropoutMasks:
    """Mask streams of n runs (each at its own epoch) whose activations lie side by side along dim 1.

    A single run is the case n = 1. Each run owns a generator on `device`; a run with p = 0 draws
    nothing and keeps every unit, so mixing rates in one stack changes no run's stream.
    """

    def __init__(self, seeds: Sequence[int], epochs: Sequence[int], rates: Sequence[float],
                 device: str | torch.device):
        self.rates = [float(p) for p in rates]
        self.device = torch.device(device)
        self.generators = [
            torch.Generator(device=self.device).manual_seed(dropout_seed(s, e)) if p > 0 else None
            for s, e, p in zip(seeds, epochs, self.rates)
        ]

    @property
    def needed(self) -> bool:
        return any(p > 0 for p in self.rates)

    @contextmanager
    def active(self) -> Iterator[None]:
        token = _ACTIVE.set(self if self.needed else None)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled keep-mask for x: each run's block drawn from its own generator."""
        n = len(self.rates)
        shape = (x.shape[0], x.shape[1] // n, *x.shape[2:])
        blocks = []
        for p, gen in zip(self.rates, self.generators):
            if gen is None:
                blocks.append(torch.ones(shape, device=x.device))
            else:
                keep = torch.rand(shape, generator=gen, device=self.device) >= p
                blocks.append(keep * (1.0 / (1.0 - p) if p < 1 else 0.0))
        mask = blocks[0] if n == 1 else torch.cat(blocks, dim=1)
        return mask.to(dtype=x.dtype)


class Dropout(nn.Dropout):
    """nn.Dropout that takes its mask from the active `DropoutMasks` when one is active."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = _ACTIVE.get()
        if masks is None or not self.training:
            return super().forward(x)
        return x * masks.mask(x)
