"""Node properties against networkx / numpy references: random layered graphs and a trained LeNet snapshot."""
import networkx as nx
import numpy as np
import pytest

from pipeline_lib.datasets import load_dataset
from pipeline_lib.graphs.layered import LayeredGraph
from pipeline_lib.graphs.properties import (betweenness, distance_matrix, harmonic_closeness, node_properties,
                                            pivot_sources)
from pipeline_lib.graphs.rolled import rolled_graph_of_snapshot
from pipeline_lib.layout import DataLayout
from pipeline_lib.snapshots import read_snapshot
from pipeline_lib.spec import GraphOptions, RunConfig
from pipeline_lib.training import train_run
from tests.networkx_reference import networkx_views


def random_layered_graph(sizes: list[int], seed: int, density: float = 0.6, skips: int = 5) -> LayeredGraph:
    """Consecutive layers joined at random, plus a few skip edges two layers ahead; nodes numbered by layer."""
    rng = np.random.default_rng(seed)
    starts = np.cumsum([0, *sizes])
    pairs = set()
    for k in range(len(sizes) - 1):
        for i in range(starts[k], starts[k + 1]):
            for j in range(starts[k + 1], starts[k + 2]):
                if rng.random() < density:
                    pairs.add((i, j))
    for _ in range(skips):
        k = rng.integers(0, len(sizes) - 2)
        pairs.add((int(rng.integers(starts[k], starts[k + 1])), int(rng.integers(starts[k + 2], starts[k + 3]))))
    src, dst = np.array(sorted(pairs)).T
    layer = np.repeat(np.arange(len(sizes)), sizes).astype(np.int32)
    n = int(starts[-1])
    return LayeredGraph(src, dst, rng.uniform(0.05, 2.0, len(src)), layer, layer / layer.max(),
                        np.array(["x"] * n), np.zeros(n, np.int32), np.array([""] * n))


@pytest.fixture(scope="module")
def lenet_snapshot_graph(tmp_path_factory):
    """The rolled graph of a LeNet after one epoch of real training on digits."""
    data_dir = tmp_path_factory.mktemp("lenet")
    config = RunConfig(study="t", dataset={"name": "digits", "subset": 300}, architecture="lenet", width=1.0,
                       depth=1, epochs=1, seed=0, config_id="c", lr=0.05, dropout=0.0, weight_decay=0.0,
                       optimizer="sgd", batch_size=64)
    train_run(config, load_dataset("digits", subset=300), data_dir)
    state = read_snapshot(DataLayout(data_dir).snapshot(config.run_id, 1))
    return rolled_graph_of_snapshot(state, "lenet", 1.0, 1, "digits")


GRAPHS = {
    "small": lambda: random_layered_graph([3, 5, 4, 2], seed=0),
    "wide": lambda: random_layered_graph([8, 30, 40, 20, 5], seed=1, density=0.3, skips=20),  # > DENSE_LIMIT: ARPACK
}


def as_array(values: dict, n: int) -> np.ndarray:
    return np.array([values[i] for i in range(n)])


def check_against_networkx(graph: LayeredGraph) -> None:
    n = graph.n_nodes
    props = node_properties(graph, GraphOptions(exact_limit=10_000))
    values = props.values
    directed, undirected = networkx_views(graph)
    close = dict(rtol=1e-8, atol=1e-12)

    np.testing.assert_allclose(values["in_strength"], as_array(dict(directed.in_degree(weight="weight")), n), **close)
    np.testing.assert_allclose(values["out_strength"], as_array(dict(directed.out_degree(weight="weight")), n), **close)
    np.testing.assert_allclose(values["strength"], as_array(dict(undirected.degree(weight="weight")), n), **close)

    # networkx's power iteration (shifted by I, so it converges on bipartite graphs), unit L2 norm
    eigenvector = nx.eigenvector_centrality(undirected, weight="weight", max_iter=100_000, tol=1e-13)
    np.testing.assert_allclose(values["eigenvector"] / np.sqrt(n), as_array(eigenvector, n), rtol=1e-6, atol=1e-9)
    dense = np.linalg.eigvalsh(nx.to_numpy_array(undirected, nodelist=range(n), weight="weight"))
    assert props.perron_value == pytest.approx(dense[-1], rel=1e-10)

    pagerank = nx.pagerank(directed, alpha=0.85, weight="weight", tol=1e-14, max_iter=10_000)
    np.testing.assert_allclose(values["pagerank"] / n, as_array(pagerank, n), rtol=1e-7)

    assert props.katz_alpha == pytest.approx(0.9 / dense[-1])
    katz = as_array(nx.katz_centrality_numpy(directed, alpha=props.katz_alpha, beta=1.0, weight="weight",
                                             normalized=False), n)
    np.testing.assert_allclose(values["katz"], katz / katz.mean(), rtol=1e-9)

    hubs, authorities = nx.hits(directed, normalized=True)
    np.testing.assert_allclose(values["hub"] / values["hub"].sum(), as_array(hubs, n), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(values["authority"] / values["authority"].sum(), as_array(authorities, n),
                               rtol=1e-6, atol=1e-12)
    u, _, vt = np.linalg.svd(nx.to_numpy_array(directed, nodelist=range(n), weight="weight"))  # independent of ARPACK
    np.testing.assert_allclose(values["authority"] / np.sqrt(n), np.abs(vt[0]), atol=1e-9)
    np.testing.assert_allclose(values["hub"] / np.sqrt(n), np.abs(u[:, 0]), atol=1e-9)

    harmonic = nx.harmonic_centrality(undirected, distance="distance")
    np.testing.assert_allclose(values["closeness"], as_array(harmonic, n) / (n - 1), **close)
    between = nx.betweenness_centrality(undirected, weight="distance", normalized=True)
    np.testing.assert_allclose(values["betweenness"], as_array(between, n), **close)
    assert props.pivots == 0


@pytest.mark.parametrize("name", GRAPHS)
def test_properties_match_networkx_on_random_layered_graphs(name):
    check_against_networkx(GRAPHS[name]())


def test_properties_match_networkx_on_a_trained_lenet_snapshot(lenet_snapshot_graph):
    assert lenet_snapshot_graph.n_nodes == 237
    check_against_networkx(lenet_snapshot_graph)


def test_normalisations_make_centralities_size_free(lenet_snapshot_graph):
    values = node_properties(lenet_snapshot_graph, GraphOptions(betweenness=False)).values
    for name in ("eigenvector", "hub", "authority"):
        assert np.mean(values[name] ** 2) == pytest.approx(1.0)
    for name in ("pagerank", "katz"):
        assert np.mean(values[name]) == pytest.approx(1.0)
    assert np.isnan(values["betweenness"]).all()


def test_sampled_closeness_and_betweenness_use_the_pivots(lenet_snapshot_graph):
    graph = lenet_snapshot_graph
    n = graph.n_nodes
    options = GraphOptions(exact_limit=100, pivots=40, seed=3)
    props = node_properties(graph, options)
    sources = pivot_sources(n, options)
    assert props.pivots == 40 and len(sources) == 40 and len(set(sources.tolist())) == 40

    # closeness estimate: (n / k) sum over the sampled sources of 1/d(s, v), over n - 1; networkx distances
    _, undirected = networkx_views(graph)
    estimate = np.zeros(n)
    for s in sources.tolist():
        for v, d in nx.single_source_dijkstra_path_length(undirected, s, weight="distance").items():
            if v != s:
                estimate[v] += 1.0 / d
    np.testing.assert_allclose(props.values["closeness"], estimate * (n / 40) / (n - 1), rtol=1e-9)

    exact = node_properties(graph, GraphOptions(betweenness=True)).values
    assert np.corrcoef(props.values["closeness"], exact["closeness"])[0, 1] > 0.95
    assert np.corrcoef(props.values["betweenness"], exact["betweenness"])[0, 1] > 0.8
    # graph-tool's pivot estimator is unbiased: averaged over pivot sets it approaches the exact values
    g = graph.to_graph_tool(attributes=False)
    distance = g.new_edge_property("double", vals=1.0 / graph.weight)
    rng = np.random.default_rng(0)
    mean = np.mean([betweenness(g, distance, np.sort(rng.choice(n, 40, replace=False))) for _ in range(50)], axis=0)
    assert mean.sum() == pytest.approx(exact["betweenness"].sum(), rel=0.05)


def test_katz_and_pagerank_solve_graphs_with_cycles_too():
    graph = random_layered_graph([4, 6, 5], seed=7)
    back = LayeredGraph(np.append(graph.src, [10, 7]), np.append(graph.dst, [2, 1]), np.append(graph.weight, [0.7, 1.3]),
                        graph.layer, graph.relative_depth, graph.kind, graph.channel, graph.module)
    n = back.n_nodes
    directed, _ = networkx_views(back)
    values = node_properties(back, GraphOptions(betweenness=False))
    pr = as_array(nx.pagerank(directed, weight="weight", tol=1e-14, max_iter=10_000), n)
    np.testing.assert_allclose(values.values["pagerank"] / n, pr, rtol=1e-7)
    kz = as_array(nx.katz_centrality_numpy(directed, alpha=values.katz_alpha, beta=1.0, weight="weight",
                                           normalized=False), n)
    np.testing.assert_allclose(values.values["katz"], kz / kz.mean(), rtol=1e-9)


def test_unreachable_pairs_contribute_nothing_to_closeness():
    # nodes 0, 1 (layer 0) and 2, 3 (layer 1); one edge 0 -> 2 of weight 0.5, so distance 2
    layer = np.array([0, 0, 1, 1], np.int32)
    graph = LayeredGraph(np.array([0]), np.array([2]), np.array([0.5]), layer, layer / 1.0, np.array(["x"] * 4),
                         np.zeros(4, np.int32), np.array([""] * 4))
    np.testing.assert_allclose(harmonic_closeness(distance_matrix(graph)), [1 / 6, 0, 1 / 6, 0])
