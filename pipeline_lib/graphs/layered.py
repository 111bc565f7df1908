"""A layered weight graph: nodes with layer attributes and directed, non-negative weighted edges.

Shared by the rolled (channel) and unrolled (channel x position) graphs. Nodes are numbered in
topological order, layer by layer; edges point from earlier to later layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class LayeredGraph:
    src: np.ndarray             # int64, source node of each edge
    dst: np.ndarray             # int64, target node of each edge
    weight: np.ndarray          # float64, > 0
    layer: np.ndarray           # int32 per node: longest-path distance (in layers) from the input
    relative_depth: np.ndarray  # float64 per node: layer / deepest layer, 0 = input, 1 = output
    kind: np.ndarray            # str per node: input | conv | linear | add (| pool for unrolled)
    channel: np.ndarray         # int32 per node: channel (or unit) index within its layer
    module: np.ndarray          # str per node: the module that produced it ('' for the input)

    @property
    def n_nodes(self) -> int:
        return len(self.layer)

    @property
    def n_edges(self) -> int:
        return len(self.src)

    def adjacency(self) -> sp.csr_matrix:
        """Directed weighted adjacency, A[src, dst] = weight."""
        n = self.n_nodes
        return sp.csr_matrix((self.weight, (self.src, self.dst)), shape=(n, n))

    def to_graph_tool(self, attributes: bool = True):
        """A directed graph-tool Graph with edge property `weight` and (if `attributes`) the node
        attributes as vertex properties (strings cost a Python loop; computations skip them)."""
        import graph_tool as gt

        g = gt.Graph(directed=True)
        g.add_vertex(self.n_nodes)
        g.add_edge_list(np.column_stack([self.src, self.dst]))
        g.ep["weight"] = g.new_edge_property("double", vals=self.weight)
        if not attributes:
            return g
        g.vp["layer"] = g.new_vertex_property("int", vals=self.layer)
        g.vp["relative_depth"] = g.new_vertex_property("double", vals=self.relative_depth)
        g.vp["channel"] = g.new_vertex_property("int", vals=self.channel)
        kind, module = g.new_vertex_property("string"), g.new_vertex_property("string")
        for v, (k, m) in enumerate(zip(self.kind, self.module)):
            kind[v], module[v] = k, m
        g.vp["kind"], g.vp["module"] = kind, module
        return g


def group_depths(n_groups: int, input_groups: list[int], edges: list[tuple[int, int]]) -> np.ndarray:
    """Longest-path depth of every node group, given group-level edges (src_group, dst_group).

    Groups are numbered in creation order, which is topological, so one pass suffices.
    """
    depth = np.full(n_groups, -1, dtype=np.int64)
    depth[input_groups] = 0
    incoming: dict[int, list[int]] = {}
    for s, d in edges:
        incoming.setdefault(d, []).append(s)
    for g in range(n_groups):
        if g in incoming:
            sources = incoming[g]
            if max(sources) >= g:
                raise AssertionError("node groups are not in topological order")
            depth[g] = max(depth[s] for s in sources) + 1
    return depth
