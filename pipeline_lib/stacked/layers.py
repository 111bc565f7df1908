"""n models of one architecture as one wide model: run r's channels are block r along dim 1.

`widen(models)` copies the first model's structure and swaps every layer that holds weights for a
stacked version: a convolution becomes one grouped convolution (groups x n), a linear layer one
batched matmul, a BatchNorm one BatchNorm over n x C channels (so statistics stay per run).
Parameter-free layers (ReLU, pooling, flatten, dropout, additions in forward) act per channel and
need no change, so the families' own forward code runs unchanged on the wide activations.

Every stacked layer keeps the original names (weight, bias, running_mean, ...) with a leading run
dimension, so `wide.state_dict()[key][r]` is run r's `state_dict()[key]`.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


class StackedConv2d(nn.Module):
    """n convolutions as one grouped convolution over (B, n*C, H, W)."""

    def __init__(self, convs: Sequence[nn.Conv2d]):
        super().__init__()
        first = convs[0]
        if first.padding_mode != "zeros":
            raise TypeError(f"stacked convolutions need zero padding, got {first.padding_mode!r}")
        self.weight = nn.Parameter(_stack([c.weight for c in convs]))
        self.bias = nn.Parameter(_stack([c.bias for c in convs])) if first.bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = first.stride, first.padding, first.dilation, first.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.weight.shape[0]
        bias = self.bias.flatten() if self.bias is not None else None
        return F.conv2d(x, self.weight.flatten(0, 1), bias, self.stride, self.padding, self.dilation, self.groups * n)


class StackedLinear(nn.Module):
    """n linear layers as one batched matmul over (B, n*F)."""

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(_stack([m.weight for m in linears]))
        self.bias = nn.Parameter(_stack([m.bias for m in linears])) if linears[0].bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, out_features, in_features = self.weight.shape
        runs_first = x.reshape(x.shape[0], n, in_features).transpose(0, 1)  # (n, B, F)
        if self.bias is None:
            out = torch.bmm(runs_first, self.weight.transpose(1, 2))
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), runs_first, self.weight.transpose(1, 2))
        return out.transpose(0, 1).reshape(x.shape[0], n * out_features)


class StackedBatchNorm2d(nn.Module):
    """n BatchNorm2d layers as one over n*C channels: batch statistics and running stats per run."""

    def __init__(self, norms: Sequence[nn.BatchNorm2d]):
        super().__init__()
        first = norms[0]
        if not (first.affine and first.track_running_stats and first.momentum is not None):
            raise TypeError("stacked BatchNorm supports affine layers with running stats and a fixed momentum")
        self.eps, self.momentum = first.eps, first.momentum
        self.weight = nn.Parameter(_stack([m.weight for m in norms]))
        self.bias = nn.Parameter(_stack([m.bias for m in norms]))
        self.register_buffer("running_mean", _stack([m.running_mean for m in norms]))
        self.register_buffer("running_var", _stack([m.running_var for m in norms]))
        self.register_buffer("num_batches_tracked", _stack([m.num_batches_tracked for m in norms]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        # flatten() of the contiguous (n, C) buffers is a view: F.batch_norm updates them in place.
        return F.batch_norm(x, self.running_mean.flatten(), self.running_var.flatten(), self.weight.flatten(),
                            self.bias.flatten(), self.training, self.momentum, self.eps)


STACKED = {nn.Conv2d: StackedConv2d, nn.Linear: StackedLinear, nn.BatchNorm2d: StackedBatchNorm2d}


def widen(models: Sequence[nn.Module]) -> nn.Module:
    """One wide module computing all `models` side by side; the models themselves are left untouched."""
    wide = copy.deepcopy(models[0])
    for path, module in list(wide.named_modules()):
        kind = type(module)
        if kind in STACKED:
            peers = [m.get_submodule(path) for m in models]
            parent_path, _, name = path.rpartition(".")
            setattr(wide.get_submodule(parent_path), name, STACKED[kind](peers))
        elif kind not in STACKED.values() and any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"no stacked version of {kind.__name__} (layer {path!r})")
    return wide


def run_state(wide_state: dict[str, torch.Tensor], r: int) -> dict[str, torch.Tensor]:
    """Run r's state_dict from a wide model's state_dict."""
    return {k: v[r] for k, v in wide_state.items()}


def keep_runs(wide: nn.Module, index: torch.Tensor) -> None:
    """Keep only the runs at `index` (in that order), in place: parameters become new tensors."""
    for module in wide.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = nn.Parameter(p.detach()[index].contiguous())
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = b[index].contiguous()
