"""What the rolled and unrolled builders share: walking the traced model once into a template.

A template records node groups (one per layer output), edge chunks (which weight entries give
each edge's weight), BatchNorm folds and residual merges. It depends only on the architecture and
input shape, so it is built once and then turns any number of snapshots into graphs with a few
vectorised operations (`build`). Subclasses say how a value's nodes are laid out ("maps": an
array of node ids, one per channel for the rolled graph, per channel x position for the unrolled
one) and how convolutions, linear layers and pooling create nodes and edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .layered import LayeredGraph, group_depths
from .tracing import ADD, BATCHNORM, CAT, CONV, INPUT, LINEAR, OUTPUT, PASSTHROUGH, POOL, TracedOp, trace_model


@dataclass
class Chunk:
    """Edges contributed by one operation; their weights are computed from the state_dict at build time.

    kind 'norm': weight = L2 norm of consecutive blocks of `block` entries of the weight `key`
    (flattened row-major, one block per edge, in edge order); kind 'abs': |W.flat[index]|;
    kind 'constant': `value` (identity shortcuts, pooling). `shape` is the weight's expected shape.
    """

    kind: str
    src: np.ndarray
    dst: np.ndarray
    key: str = ""
    shape: tuple[int, ...] = ()
    block: int = 1
    index: np.ndarray | None = None
    value: np.ndarray | None = None

    def weights(self, state: dict[str, torch.Tensor]) -> np.ndarray:
        if self.kind == "constant":
            return np.broadcast_to(self.value, self.src.shape).astype(np.float64)
        w = state_tensor(state, self.key)
        if tuple(w.shape) != self.shape:
            raise ValueError(f"snapshot tensor {self.key!r} has shape {tuple(w.shape)}, the model expects "
                             f"{self.shape}: does it belong to another architecture or width?")
        w = w.double().reshape(-1)
        if self.kind == "abs":
            return w.abs().numpy()[self.index]
        return torch.linalg.vector_norm(w.reshape(-1, self.block), dim=1).numpy()


def weight_chunk(kind: str, src: np.ndarray, dst: np.ndarray, op: TracedOp, **kwargs) -> Chunk:
    """A chunk whose weights come from the weight of the module called by `op`."""
    return Chunk(kind, src, dst, key=f"{op.target}.weight", shape=tuple(op.module.weight.shape), **kwargs)


@dataclass
class BatchNormFold:
    """Scale the edges already pointing into a BatchNorm's channels by |gamma| / sqrt(var + eps)."""

    prefix: str
    eps: float
    affine: bool
    targets: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)  # (chunk, edges, channel)

    def scale(self, state: dict[str, torch.Tensor]) -> np.ndarray:
        var = state_tensor(state, f"{self.prefix}.running_var").double()
        gamma = state_tensor(state, f"{self.prefix}.weight").double().abs() if self.affine else torch.ones_like(var)
        return (gamma / torch.sqrt(var + self.eps)).numpy()


@dataclass
class _Group:
    kind: str
    module: str
    shape: tuple[int, ...]  # (channels,) or (channels, height, width)
    first: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class GraphTemplate:
    """Structure of a layered weight graph of one model; `build(state)` gives the graph of a snapshot."""

    graph_class: type[LayeredGraph] = LayeredGraph

    def __init__(self, ops: list[TracedOp]):
        self._groups: list[_Group] = []
        self._chunks: list[Chunk] = []
        self._folds: list[BatchNormFold] = []
        self._merged: set[int] = set()
        self._walk(ops)
        self._finish()

    @classmethod
    def from_model(cls, model: nn.Module, input_shape: tuple[int, int, int], **kwargs):
        return cls(trace_model(model, input_shape), **kwargs)

    # -- per-architecture hooks -------------------------------------------------------------------
    def _input(self, op: TracedOp) -> np.ndarray:
        raise NotImplementedError

    def _conv(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _linear(self, op: TracedOp, source: np.ndarray, in_shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def _pool(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _passthrough(self, op: TracedOp, source: np.ndarray) -> np.ndarray:
        return source

    def _add_chunk(self, chunk: Chunk) -> None:
        self._chunks.append(chunk)

    # -- the walk ---------------------------------------------------------------------------------
    def _new_group(self, kind: str, module: str, shape: tuple[int, ...]) -> np.ndarray:
        first = sum(g.size for g in self._groups)
        group = _Group(kind, module, tuple(int(s) for s in shape), first)
        self._groups.append(group)
        return np.arange(first, first + group.size, dtype=np.int64).reshape(group.shape)

    def _walk(self, ops: list[TracedOp]) -> None:
        by_name = {op.name: op for op in ops}
        maps: dict[str, np.ndarray] = {}  # value name -> node ids, channel first
        for op in ops:
            source = maps[op.inputs[0]] if op.inputs else None
            if op.kind == INPUT:
                maps[op.name] = self._input(op)
            elif op.kind == PASSTHROUGH:
                maps[op.name] = self._passthrough(op, source)
            elif op.kind == POOL:
                maps[op.name] = self._pool(op, source)
            elif op.kind == CONV:
                maps[op.name] = self._conv(op, source)
            elif op.kind == LINEAR:
                maps[op.name] = self._linear(op, source, by_name[op.inputs[0]].shape)
            elif op.kind == BATCHNORM:
                maps[op.name] = source
                self._batchnorm(op, source)
            elif op.kind == CAT:
                maps[op.name] = np.concatenate([maps[i] for i in op.inputs])
            elif op.kind == ADD:
                maps[op.name] = self._add(op, [maps[i] for i in op.inputs],
                                          [_is_private(by_name, i) for i in op.inputs])
            elif op.kind != OUTPUT:
                raise AssertionError(op.kind)

    def _batchnorm(self, op: TracedOp, nodes: np.ndarray) -> None:
        bn: nn.modules.batchnorm._BatchNorm = op.module
        channel_of = np.broadcast_to(np.arange(nodes.shape[0]).reshape(-1, *[1] * (nodes.ndim - 1)), nodes.shape)
        channel = self._lookup(nodes.ravel(), channel_of.ravel())
        fold = BatchNormFold(op.target, bn.eps, bn.affine)
        for index, chunk in enumerate(self._chunks):
            edges = np.nonzero(channel[chunk.dst] >= 0)[0]
            if len(edges):
                fold.targets.append((index, edges, channel[chunk.dst[edges]]))
        self._folds.append(fold)

    def _add(self, op: TracedOp, operands: list[np.ndarray], private: list[bool]) -> np.ndarray:
        """Private operands (fresh layer outputs used only here) are merged; the others join by identity edges."""
        if len({m.shape for m in operands}) != 1:
            raise ValueError(f"{op.name}: added tensors map to different node layouts")
        merged = [m for m, p in zip(operands, private) if p]
        target = merged[0] if merged else self._new_group("add", op.name, operands[0].shape)
        for other in merged[1:]:
            self._merge(other, target)
        for m, p in zip(operands, private):
            if not p:
                self._add_chunk(Chunk("constant", m.ravel().copy(), target.ravel().copy(), value=np.ones(1)))
        return target

    def _merge(self, nodes: np.ndarray, into: np.ndarray) -> None:
        """Redirect every edge into `nodes` to the matching node of `into`; `nodes` disappear."""
        remap = self._lookup(nodes.ravel(), into.ravel())
        for chunk in self._chunks:
            hit = remap[chunk.dst] >= 0
            chunk.dst[hit] = remap[chunk.dst[hit]]
        starts = np.array([g.first for g in self._groups])
        self._merged.add(int(np.searchsorted(starts, nodes.ravel()[0], side="right") - 1))

    def _lookup(self, nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
        """An array over all nodes so far: `values` at `nodes`, -1 elsewhere."""
        table = np.full(sum(g.size for g in self._groups), -1, dtype=np.int64)
        table[nodes] = values
        return table

    def _finish(self) -> None:
        """Drop merged groups, number the nodes compactly, give each its layer (longest path)."""
        keep = [i for i in range(len(self._groups)) if i not in self._merged]
        new_id = np.full(sum(g.size for g in self._groups), -1, dtype=np.int64)
        kind, module, channel, position, group_of_node = [], [], [], [], []
        next_id = 0
        for rank, i in enumerate(keep):
            g = self._groups[i]
            new_id[g.first:g.first + g.size] = np.arange(next_id, next_id + g.size)
            next_id += g.size
            kind += [g.kind] * g.size
            module += [g.module] * g.size
            per_channel = g.size // g.shape[0]
            channel.append(np.repeat(np.arange(g.shape[0]), per_channel))
            position.append(np.tile(np.arange(per_channel), g.shape[0]))
            group_of_node.append(np.full(g.size, rank))
        for chunk in self._chunks:
            chunk.src, chunk.dst = new_id[chunk.src], new_id[chunk.dst]
            if (chunk.src < 0).any() or (chunk.dst < 0).any():
                raise AssertionError("an edge touches a merged node")
        group_of_node = np.concatenate(group_of_node)
        group_edges = set()
        for c in self._chunks:
            pairs = np.unique(group_of_node[c.src] * len(keep) + group_of_node[c.dst])
            group_edges.update(zip((pairs // len(keep)).tolist(), (pairs % len(keep)).tolist()))
        inputs = [r for r, i in enumerate(keep) if self._groups[i].kind == "input"]
        depth = group_depths(len(keep), inputs, sorted(group_edges))
        self.layer = depth[group_of_node].astype(np.int32)
        self.relative_depth = self.layer / max(1, int(self.layer.max()))
        self.kind, self.module = np.array(kind), np.array(module)
        self.channel = np.concatenate(channel).astype(np.int32)
        self.position = np.concatenate(position).astype(np.int32)
        src = np.concatenate([c.src for c in self._chunks])
        dst = np.concatenate([c.dst for c in self._chunks])
        # Two operations feeding the same pair of nodes (x + x, say) give one edge with summed weight.
        unique, self._inverse = np.unique(src * self.n_nodes + dst, return_inverse=True)
        self._coalesce = len(unique) < len(src)
        self.src, self.dst = (unique // self.n_nodes, unique % self.n_nodes) if self._coalesce else (src, dst)

    @property
    def n_nodes(self) -> int:
        return len(self.kind)

    @property
    def n_edges(self) -> int:
        return len(self.src)

    # -- weights ----------------------------------------------------------------------------------
    def edge_weights(self, state: dict[str, torch.Tensor], fold_batchnorm: bool = True) -> np.ndarray:
        """Weight of every template edge (zeros included) for one snapshot."""
        weights = [c.weights(state) for c in self._chunks]
        if fold_batchnorm:
            for fold in self._folds:
                scale = fold.scale(state)
                for index, edges, channels in fold.targets:
                    weights[index][edges] *= scale[channels]
        weight = np.concatenate(weights)
        if self._coalesce:
            weight = np.bincount(self._inverse, weights=weight, minlength=len(self.src))
        if not np.isfinite(weight).all():
            raise ValueError("snapshot has non-finite weights; no graph can be built from it")
        return weight

    def _node_attributes(self) -> dict:
        return {"layer": self.layer, "relative_depth": self.relative_depth, "kind": self.kind,
                "channel": self.channel, "module": self.module}

    def build(self, state: dict[str, torch.Tensor], fold_batchnorm: bool = True) -> LayeredGraph:
        """The graph of one snapshot (a state_dict of this template's model); zero-weight edges are dropped."""
        weight = self.edge_weights(state, fold_batchnorm)
        keep = weight > 0
        return self.graph_class(self.src[keep], self.dst[keep], weight[keep], **self._node_attributes())


def state_tensor(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return state[key]
    except KeyError:
        raise KeyError(f"snapshot has no tensor {key!r}: does it belong to another architecture or width?") from None


def _is_private(by_name: dict[str, TracedOp], name: str) -> bool:
    """Is this value a layer's fresh output that feeds nothing but the one operation reading it?

    Walks back through BatchNorm and pass-through operations to the producing convolution or linear
    layer; every step must have exactly one consumer. Such an operand of an addition is merged into
    the addition (a projection shortcut, or the main branch); any other operand is a shortcut joined
    by identity edges.
    """
    op = by_name[name]
    while op.kind in (BATCHNORM, PASSTHROUGH):
        if op.users != 1:
            return False
        op = by_name[op.inputs[0]]
    return op.kind in (CONV, LINEAR) and op.users == 1
