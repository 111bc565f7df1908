"""networkx views of a graph, the independent reference for tests and the graph benchmark."""
import networkx as nx


def networkx_views(graph) -> tuple[nx.DiGraph, nx.Graph]:
    """Directed weighted view, and undirected view with distance = 1 / weight on every edge."""
    directed = nx.DiGraph()
    directed.add_nodes_from(range(graph.n_nodes))
    directed.add_weighted_edges_from(zip(graph.src.tolist(), graph.dst.tolist(), graph.weight.tolist()))
    undirected = directed.to_undirected()
    for _, _, d in undirected.edges(data=True):
        d["distance"] = 1.0 / d["weight"]
    return directed, undirected
