"""The rolled (channel-level) graph of a snapshot, as the paper (Vahedian et al., CIKM 2022) defines it.

Nodes: one per input channel, per convolution output channel, per linear output unit.
Edges (earlier -> later layer), weights from the snapshot:
- convolution: input channel i -> output channel o, Frobenius norm of W[o, i, :, :]; a grouped
  convolution only joins channels of the same group;
- linear: |W[o, i]|; the first linear layer after a flatten of C x H x W joins channel c to unit o
  with the L2 norm of the H*W weights that read channel c's map (a 1x1 map gives |W[o, c]|);
- residual addition: the addition's output channels are the main branch's nodes; an identity
  shortcut adds edges of weight 1 channel to channel from the shortcut's source, a projection
  shortcut (1x1 convolution) adds its kernel-norm edges from the source into the same nodes;
- BatchNorm: each output channel's |gamma| / sqrt(running_var + eps) multiplies the weights of
  the edges into that channel's node (folding it into the preceding layer); `fold_batchnorm=False`
  ignores BatchNorm;
- pooling, activations, dropout, flatten add nothing. Biases are not edges. Edges whose weight is
  exactly zero are dropped (they carry no signal and have no finite distance).

One builder serves every architecture: the model is traced with torch.fx (`tracing.py`), and a
`RolledGraphTemplate` (`template.py`) records, once per architecture/width/input shape, which
weight slices feed which edges. Building the graph of a snapshot is then a few vectorised norms.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..vocabulary import DATASETS
from .layered import LayeredGraph
from .template import GraphTemplate, weight_chunk
from .tracing import TracedOp


class RolledGraph(LayeredGraph):
    """The channel-level graph of one snapshot (see the module docstring for the definition)."""


class RolledGraphTemplate(GraphTemplate):
    """Rolled-graph structure of one model: a value's nodes are its channels (pooling adds none)."""

    graph_class = RolledGraph

    def _input(self, op: TracedOp) -> np.ndarray:
        return self._new_group("input", "", (op.shape[1],))

    def _pool(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        return source

    def _conv(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        conv: nn.Conv2d = op.module
        if len(source) != conv.in_channels:
            raise ValueError(f"{op.target}: {len(source)} input channels mapped, {conv.in_channels} expected")
        out = self._new_group("conv", op.target, (conv.out_channels,))
        in_per_group, out_per_group = conv.in_channels // conv.groups, conv.out_channels // conv.groups
        o = np.repeat(np.arange(conv.out_channels), in_per_group)
        i_local = np.tile(np.arange(in_per_group), conv.out_channels)
        src = source[(o // out_per_group) * in_per_group + i_local]
        kernel = int(np.prod(conv.kernel_size))
        self._add_chunk(weight_chunk("norm", src, out[o], op, block=kernel))
        return out

    def _linear(self, op: TracedOp, source: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
        linear: nn.Linear = op.module
        if len(in_shape) != 2 or linear.in_features % len(source):
            raise ValueError(f"{op.target}: cannot map {linear.in_features} inputs of shape {in_shape} "
                             f"onto {len(source)} channels")
        out = self._new_group("linear", op.target, (linear.out_features,))
        o = np.repeat(np.arange(linear.out_features), len(source))
        c = np.tile(np.arange(len(source)), linear.out_features)
        self._add_chunk(weight_chunk("norm", source[c], out[o], op, block=linear.in_features // len(source)))
        return out


def model_input_shape(dataset: str) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) of a dataset's images and its number of classes, without loading it."""
    facts = DATASETS[dataset]
    return (facts.channels, facts.image_size, facts.image_size), facts.classes


@lru_cache(maxsize=32)
def template_for(architecture: str, width: float, depth: int, dataset: str) -> RolledGraphTemplate:
    """The (cached) template of a run's model, built from its architecture, width, depth and dataset."""
    from ..models import build_model

    (channels, size, _), classes = model_input_shape(dataset)
    model = build_model(architecture, in_channels=channels, image_size=size, num_classes=classes,
                        width=width, depth=depth)
    return RolledGraphTemplate.from_model(model, (channels, size, size))


def rolled_graph(model: nn.Module, input_shape: tuple[int, int, int], state: dict[str, torch.Tensor] | None = None,
                 fold_batchnorm: bool = True) -> RolledGraph:
    """The rolled graph of a model (its current weights, or `state`) for inputs of shape (C, H, W)."""
    template = RolledGraphTemplate.from_model(model, input_shape)
    return template.build(model.state_dict() if state is None else state, fold_batchnorm)


def rolled_graph_of_snapshot(state: dict[str, torch.Tensor], architecture: str, width: float, depth: int,
                             dataset: str, fold_batchnorm: bool = True) -> RolledGraph:
    """The rolled graph of a snapshot (`pipeline_lib.snapshots.read_snapshot`) of one run."""
    return template_for(architecture, width, depth, dataset).build(state, fold_batchnorm)
