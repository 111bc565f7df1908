"""The unrolled graph (one node per channel x spatial position), for comparison on small models only.

Nodes: every input pixel of every channel, every output position of every convolution and pooling
layer, every linear unit. Edges: a convolution joins each input position in an output position's
receptive field to it with |W[o, i, kh, kw]| (zero padding adds no edges); max pooling joins each
window position with weight 1, average pooling with 1/(window size); a linear layer after a flatten
reads every position (|W[o, c*H*W + p]|). BatchNorm folding and residual additions follow the
rolled graph's rules, position by position. The size explodes with the image and the width
(LeNet on 32x32 has 658k edges, VGG about 134M), so building refuses above `max_edges`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layered import LayeredGraph
from .template import Chunk, GraphTemplate, weight_chunk
from .tracing import TracedOp, UnsupportedOperation

DEFAULT_MAX_EDGES = 5_000_000


class UnrolledGraphTooLarge(ValueError):
    """The unrolled graph would exceed the edge limit."""


@dataclass(frozen=True)
class UnrolledGraph(LayeredGraph):
    position: np.ndarray | None = None  # int32 per node: row-major spatial index within its channel


class UnrolledGraphTemplate(GraphTemplate):
    """Unrolled-graph structure: a value's nodes are laid out (channels, height, width), or (units,)."""

    graph_class = UnrolledGraph

    def __init__(self, ops: list[TracedOp], max_edges: int = DEFAULT_MAX_EDGES):
        self.max_edges = max_edges
        self._edges_so_far = 0
        super().__init__(ops)

    def _reserve(self, edges: int, where: str) -> None:
        self._edges_so_far += edges
        if self._edges_so_far > self.max_edges:
            raise UnrolledGraphTooLarge(
                f"the unrolled graph would have more than {self._edges_so_far:,} edges by {where} "
                f"(max_edges={self.max_edges:,}); use the rolled graph, or raise max_edges for a small model")

    def _add_chunk(self, chunk: Chunk) -> None:
        self._reserve(len(chunk.src), "a residual addition")
        super()._add_chunk(chunk)

    def _input(self, op: TracedOp) -> np.ndarray:
        return self._new_group("input", "", op.shape[1:])

    def _passthrough(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        return source.reshape(op.shape[1:])  # flatten/view keep the row-major order of the positions

    def _windows(self, source: np.ndarray, kernel, stride, padding, dilation) -> np.ndarray:
        """Node ids under each window: (channels, kernel positions, output positions), -1 for padding."""
        ids = torch.from_numpy(source[None].astype(np.float64) + 1)  # 0 marks padding after unfold
        cols = F.unfold(ids, kernel, dilation=dilation, padding=padding, stride=stride)[0]
        return cols.numpy().astype(np.int64).reshape(source.shape[0], -1, cols.shape[-1]) - 1

    def _conv(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        conv: nn.Conv2d = op.module
        if source.ndim != 3 or source.shape[0] != conv.in_channels:
            raise ValueError(f"{op.target}: input nodes laid out as {source.shape}, expected {conv.in_channels} maps")
        out_c, out_h, out_w = op.shape[1:]
        in_g, out_g = conv.in_channels // conv.groups, conv.out_channels // conv.groups
        kernel = int(np.prod(conv.kernel_size))
        self._reserve(out_c * out_h * out_w * in_g * kernel, op.target)
        windows = self._windows(source, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
        out = self._new_group("conv", op.target, (out_c, out_h, out_w))
        src, dst, index = [], [], []
        for o in range(out_c):
            g = o // out_g
            group_windows = windows[g * in_g:(g + 1) * in_g].reshape(in_g * kernel, -1)  # (i, k) x position
            src.append(group_windows.ravel())
            dst.append(np.broadcast_to(out[o].ravel(), group_windows.shape).ravel())
            weight_index = o * in_g * kernel + np.arange(in_g * kernel)
            index.append(np.broadcast_to(weight_index[:, None], group_windows.shape).ravel())
        src, dst, index = np.concatenate(src), np.concatenate(dst), np.concatenate(index)
        real = src >= 0
        self._add_chunk_unchecked(weight_chunk("abs", src[real], dst[real], op, index=index[real]))
        return out

    def _pool(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        pool = op.module
        if source.ndim != 3:
            raise ValueError(f"{op.name}: pooling needs channel maps, got nodes laid out as {source.shape}")
        if isinstance(pool, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            windows = self._adaptive_windows(source, op.shape[2:])
        else:
            if getattr(pool, "ceil_mode", False):
                raise UnsupportedOperation(f"{op.target}: ceil_mode pooling is not supported in the unrolled graph")
            dilation = getattr(pool, "dilation", 1)
            windows = self._windows(source, pool.kernel_size, pool.stride, pool.padding, dilation)
        channels, window, positions = windows.shape
        self._reserve(channels * window * positions, op.target)
        out = self._new_group("pool", op.target, op.shape[1:])
        dst = np.broadcast_to(out.reshape(channels, 1, positions), windows.shape)
        average = isinstance(pool, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))
        real = windows >= 0
        value = np.ones(1) / (window if average else 1)
        self._add_chunk_unchecked(Chunk("constant", windows[real], dst[real], value=value))
        return out

    @staticmethod
    def _adaptive_windows(source: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
        """Windows of adaptive pooling (torch's start = floor(i H / out), end = ceil((i+1) H / out)), padded with -1."""
        channels, height, width = source.shape
        rows = [(i * height // out_size[0], -(-(i + 1) * height // out_size[0])) for i in range(out_size[0])]
        cols = [(j * width // out_size[1], -(-(j + 1) * width // out_size[1])) for j in range(out_size[1])]
        largest = max(r1 - r0 for r0, r1 in rows) * max(c1 - c0 for c0, c1 in cols)
        windows = np.full((channels, largest, len(rows) * len(cols)), -1, dtype=np.int64)
        for p, ((r0, r1), (c0, c1)) in enumerate((r, c) for r in rows for c in cols):
            block = source[:, r0:r1, c0:c1].reshape(channels, -1)
            windows[:, :block.shape[1], p] = block
        return windows

    def _linear(self, op: TracedOp, source: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
        linear: nn.Linear = op.module
        flat = source.ravel()
        if len(in_shape) != 2 or len(flat) != linear.in_features:
            raise ValueError(f"{op.target}: {len(flat)} input nodes for {linear.in_features} inputs")
        self._reserve(linear.in_features * linear.out_features, op.target)
        out = self._new_group("linear", op.target, (linear.out_features,))
        o = np.repeat(np.arange(linear.out_features), len(flat))
        i = np.tile(np.arange(len(flat)), linear.out_features)
        self._add_chunk_unchecked(weight_chunk("abs", flat[i], out[o], op, index=o * linear.in_features + i))
        return out

    def _add_chunk_unchecked(self, chunk: Chunk) -> None:
        """Add a chunk whose size was reserved before it was allocated."""
        GraphTemplate._add_chunk(self, chunk)

    def _node_attributes(self) -> dict:
        return {**super()._node_attributes(), "position": self.position}


def unrolled_graph(model: nn.Module, input_shape: tuple[int, int, int], state: dict[str, torch.Tensor] | None = None,
                   fold_batchnorm: bool = True, max_edges: int = DEFAULT_MAX_EDGES) -> UnrolledGraph:
    """The unrolled graph of a small model (its weights, or `state`) for inputs of shape (C, H, W)."""
    template = UnrolledGraphTemplate.from_model(model, input_shape, max_edges=max_edges)
    return template.build(model.state_dict() if state is None else state, fold_batchnorm)
