"""Weight snapshots as graphs: the rolled (channel) graph, the unrolled one, node properties, summaries.

- `tracing`: the model's dataflow from torch.fx, classified for the builders;
- `template`, `rolled`, `unrolled`: the graph builders (one template per architecture, many snapshots);
- `properties`: strengths and centralities (graph-tool, scipy's sparse eigensolvers);
- `summaries`: per-scope distribution statistics (polars);
- `snapshot_metrics`: snapshot file -> node metrics Parquet + summaries, the graph stage's unit of work.
"""
from .layered import LayeredGraph
from .properties import PROPERTIES, NodeProperties, node_properties
from .rolled import RolledGraph, RolledGraphTemplate, rolled_graph, rolled_graph_of_snapshot
from .summaries import STATISTICS, summarise
from .unrolled import UnrolledGraph, UnrolledGraphTooLarge, unrolled_graph

__all__ = ["LayeredGraph", "PROPERTIES", "NodeProperties", "node_properties", "RolledGraph", "RolledGraphTemplate",
           "rolled_graph", "rolled_graph_of_snapshot", "STATISTICS", "summarise", "UnrolledGraph",
           "UnrolledGraphTooLarge", "unrolled_graph"]
