"""Node properties of a layered weight graph: exact where exactness is cheap, sampled where documented.

Let A be the directed weighted adjacency (A[u, v] = w for an edge u -> v, earlier -> later layer)
and S = A + A^T its undirected version. n is the number of nodes.

| property | definition | as stored (comparable across widths) |
| --- | --- | --- |
| in_strength, out_strength, strength | column sums, row sums of A, their sum | raw, in weight units |
| eigenvector | Perron vector of S (ARPACK `eigsh(k=1, which='LA')`, exact) | unit L2 norm x sqrt(n): mean square 1 |
| pagerank | PageRank on A, damping 0.85, dangling mass spread uniformly; exact (linear system) | x n: mean 1 |
| katz | x = alpha A^T x + 1, solved exactly (finite series on a DAG), alpha = 0.9 / lambda_1(S) | / mean: mean 1 |
| hub, authority | HITS: top left / right singular vectors of A (ARPACK `svds`), hub = A authority | unit L2 norm x sqrt(n) |
| closeness | harmonic closeness on the undirected graph, distance 1/w: sum_u 1/d(u, v) / (n - 1) | as defined |
| betweenness | graph-tool betweenness on the undirected graph, distance 1/w, normalised by (n-1)(n-2)/2 | as defined |

Why these choices:
- The rolled graph is a layered DAG, so S is (nearly) bipartite with eigenvalues +lambda and -lambda:
  plain power iteration oscillates (graph-tool's `eigenvector` stops at max_iter).
  Lanczos on the algebraically largest end finds the Perron vector exactly.
- A DAG's directed adjacency is nilpotent (spectral radius 0), so Katz converges for any alpha;
  tying alpha to lambda_1(S) (which bounds the spectral radius of any non-negative A) keeps the
  path sums bounded and makes Katz invariant to a global rescaling of the weights.
- On a DAG the Katz series is finite (A^T is nilpotent), so summing it to the longest path is exact.
  PageRank is the same kind of system (see `pagerank`), solved the same way instead of iterated.
- Closeness and betweenness cost one Dijkstra per source (O(n m log n) in all); up to
  `exact_limit` nodes every node is a source (exact), above it `pivots` sources drawn without
  replacement give unbiased estimates: harmonic closeness (n / k) sum_{s in sample} 1/d(s, v) / (n-1),
  and graph-tool's pivot betweenness estimator. Closeness uses scipy's multi-source Dijkstra,
  measured 4x faster than per-source graph-tool calls on the ResNet-18 graph.
- Scale-free centralities (eigenvector, hub, authority, pagerank, katz) are rescaled so that an
  average node scores about 1 whatever the node count, so wider networks give comparable values.
- Stability. On a chain of layers AᵀA is block diagonal, so the HITS vectors are exactly zero
  outside one layer pair; round-off leaves ~1e-17 there, and scale-free statistics of those
  scopes (entropy) turned float noise into differences near 1. Entries below `ROUNDOFF` x the
  largest are therefore set to 0. And when the top two singular values of A (eigenvalues of S)
  are closer than `MIN_GAP` (relative), the vector is an arbitrary mix of near-equal solutions:
  it is stored as NaN (NULL), with the gap recorded per snapshot (`hits_gap`, `perron_gap`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph
from scipy.sparse.linalg import eigsh, spsolve, svds

from ..spec import GraphOptions, GraphProperty
from .layered import LayeredGraph

PROPERTIES: tuple[str, ...] = get_args(GraphProperty)
DENSE_LIMIT = 64  # below this many nodes ARPACK is not applicable or not worth it: dense LAPACK
ROUNDOFF = 1e-9  # relative to the largest entry: below it a Perron/HITS entry is round-off, set to 0
MIN_GAP = 1e-3  # relative gap between the top two singular/eigen values below which a vector is not determined


@dataclass(frozen=True)
class NodeProperties:
    values: dict[str, np.ndarray]   # property name -> value per node, as stored
    perron_value: float             # lambda_1(S)
    katz_alpha: float
    pivots: int                     # 0 when closeness and betweenness are exact
    perron_gap: float               # (lambda_1 - lambda_2) / lambda_1 of S; eigenvector NaN below MIN_GAP
    hits_gap: float                 # (sigma_1 - sigma_2) / sigma_1 of A; hub and authority NaN below MIN_GAP


# -- spectral ---------------------------------------------------------------------------------------
def _relative_gap(top_two: np.ndarray) -> float:
    first, second = sorted(np.abs(top_two), reverse=True)[:2]
    return float((first - second) / first) if first > 0 else 0.0


def perron(symmetric: sp.spmatrix) -> tuple[float, np.ndarray, float]:
    """Largest eigenvalue, its non-negative unit eigenvector (NaN when not determined) and the relative
    gap to the second largest eigenvalue, of a symmetric non-negative matrix."""
    n = symmetric.shape[0]
    if n <= DENSE_LIMIT:
        values, vectors = np.linalg.eigh(symmetric.toarray())
        values, vectors = values[::-1], vectors[:, ::-1]
    else:
        values, vectors = eigsh(symmetric.astype(np.float64), k=2, which="LA", v0=np.ones(n), tol=0)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
    gap = _relative_gap(values[:2]) if n > 1 else 1.0
    return float(values[0]), _determined(_positive_unit(vectors[:, 0]), gap), gap


def hits(adjacency: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, float]:
    """HITS (hub, authority), both unit L2 norm: top singular vectors of A (hub = A authority); NaN
    when not determined; and the relative gap between the top two singular values."""
    n = adjacency.shape[0]
    if n <= DENSE_LIMIT:
        _, singular, vt = np.linalg.svd(adjacency.toarray())
        authority = vt[0]
    else:
        _, singular, vt = svds(adjacency.astype(np.float64), k=2, v0=np.ones(n), tol=0)
        authority = vt[np.argmax(singular)]
    gap = _relative_gap(singular[:2]) if n > 1 else 1.0
    authority = _positive_unit(authority)
    return _determined(_positive_unit(adjacency @ authority), gap), _determined(authority, gap), gap


def _determined(vector: np.ndarray, gap: float) -> np.ndarray:
    """The vector, or NaN when a gap below MIN_GAP leaves it undetermined (an arbitrary mix)."""
    return vector if gap >= MIN_GAP else np.full_like(vector, np.nan)


def solve_propagation(adjacency: sp.csr_matrix, scaled: sp.csr_matrix) -> np.ndarray:
    """Solve x = scaled^T x + 1 exactly, where `scaled` has the sparsity of `adjacency`.

    When every edge goes from a lower to a higher node id (a DAG numbered topologically, as the
    builders number it) the matrix is nilpotent and x = sum_k (scaled^T)^k 1 is a finite sum: its
    terms are exactly zero beyond the longest path. Otherwise a sparse LU solve.
    """
    n = adjacency.shape[0]
    coo = adjacency.tocoo()
    if not (coo.row < coo.col).all():
        return spsolve((sp.identity(n, format="csc") - scaled.T.tocsc()), np.ones(n))
    step = scaled.T.tocsr()
    x = term = np.ones(n)
    for _ in range(n):
        term = step @ term
        if not term.any():
            break
        x = x + term
    return x


def katz(adjacency: sp.csr_matrix, alpha: float) -> np.ndarray:
    """Katz centrality with beta = 1: x = alpha A^T x + 1, exact."""
    return solve_propagation(adjacency, (alpha * adjacency).tocsr())


def pagerank(adjacency: sp.csr_matrix, damping: float = 0.85) -> np.ndarray:
    """PageRank (sums to 1) with dangling nodes' mass spread uniformly, exact.

    With P = D_out^-1 A (dangling rows zero), PageRank satisfies x = d P^T x + c 1 where the scalar
    c = ((1 - d) + d * dangling mass) / n is the same for every node; so x is proportional to the
    solution y of y = d P^T y + 1, and normalising y to sum 1 gives x without iterating.
    """
    out = np.asarray(adjacency.sum(axis=1)).ravel()
    inverse = np.divide(damping, out, out=np.zeros_like(out), where=out > 0)
    y = solve_propagation(adjacency, sp.diags(inverse) @ adjacency)
    return y / y.sum()


def _positive_unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    vector = vector if vector.sum() >= 0 else -vector
    vector = np.clip(vector, 0, None)  # Perron vectors are non-negative; clip round-off
    if vector.size and vector.max() > 0:
        vector[vector < ROUNDOFF * vector.max()] = 0.0  # structural zeros stay zero (docs/graphs.md, "Stability")
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


# -- distances --------------------------------------------------------------------------------------
def distance_matrix(graph: LayeredGraph) -> sp.csr_matrix:
    """Undirected distances 1/w as a symmetric matrix (1/(w_uv + w_vu) where both directions exist,
    matching S = A + A^T). Symmetrised once here: csgraph's `directed=False` redoes it per call."""
    weights = graph.adjacency()
    weights = (weights + weights.T).tocsr()
    weights.data = 1.0 / weights.data
    return weights


def pivot_sources(n: int, options: GraphOptions) -> np.ndarray | None:
    """The sampled sources, or None for exact (all nodes)."""
    if n <= options.exact_limit or options.pivots >= n:
        return None
    return np.sort(np.random.default_rng(options.seed).choice(n, size=options.pivots, replace=False))


def harmonic_closeness(distances: sp.csr_matrix, sources: np.ndarray | None = None) -> np.ndarray:
    """sum_{u != v} 1/d(u, v) / (n - 1) for symmetric `distances`; estimated from `sources` if given."""
    n = distances.shape[0]
    if n < 2:
        return np.zeros(n)
    sources = np.arange(n) if sources is None else sources
    with np.errstate(divide="ignore"):
        inverse = 1.0 / csgraph.dijkstra(distances, directed=True, indices=sources)
    inverse[np.arange(len(sources)), sources] = 0.0  # d(s, s) = 0 is not a pair
    inverse[~np.isfinite(inverse)] = 0.0
    return inverse.sum(axis=0) * (n / len(sources)) / (n - 1)


def betweenness(graph_tool_graph, distance, sources: np.ndarray | None = None) -> np.ndarray:
    """graph-tool betweenness of the undirected graph, normalised by (n-1)(n-2)/2; pivot estimate if sources."""
    import graph_tool as gt
    import graph_tool.centrality as gtc

    undirected = gt.GraphView(graph_tool_graph, directed=False)
    pivots = None if sources is None else [int(s) for s in sources]
    vertex, _ = gtc.betweenness(undirected, pivots=pivots, weight=distance, norm=True)
    return vertex.a.copy()


# -- everything -------------------------------------------------------------------------------------
def selected(options: GraphOptions) -> set[str]:
    """The properties `options` asks for: `properties` (all when None), betweenness only if enabled."""
    chosen = set(PROPERTIES if options.properties is None else options.properties)
    return chosen if options.betweenness else chosen - {"betweenness"}


def node_properties(graph: LayeredGraph, options: GraphOptions | None = None) -> NodeProperties:
    """The properties of PROPERTIES that `options` selects for every node (NaN for the others),
    normalised for comparison across widths. The Perron value is always computed (Katz's alpha and
    the graphs row need it)."""
    options = options or GraphOptions()
    wanted = selected(options)
    n = graph.n_nodes
    nothing = np.full(n, np.nan)
    adjacency = graph.adjacency()
    in_strength = np.asarray(adjacency.sum(axis=0)).ravel()
    out_strength = np.asarray(adjacency.sum(axis=1)).ravel()
    perron_value, eigenvector, perron_gap = perron((adjacency + adjacency.T).tocsr())
    alpha = options.katz_factor / perron_value if perron_value > 0 else 0.0
    katz_values = katz(adjacency, alpha) if "katz" in wanted else nothing
    hub, authority, hits_gap = hits(adjacency) if wanted & {"hub", "authority"} else (nothing, nothing, np.nan)

    pagerank_values = pagerank(adjacency, options.pagerank_damping) if "pagerank" in wanted else nothing
    sources = pivot_sources(n, options)
    closeness = harmonic_closeness(distance_matrix(graph), sources) if "closeness" in wanted else nothing
    if "betweenness" in wanted:
        g = graph.to_graph_tool(attributes=False)
        between = betweenness(g, g.new_edge_property("double", vals=1.0 / graph.weight), sources)
    else:
        between = nothing

    root_n = np.sqrt(n)
    values = {
        "in_strength": in_strength, "out_strength": out_strength, "strength": in_strength + out_strength,
        "eigenvector": eigenvector * root_n, "pagerank": pagerank_values * n, "katz": katz_values / katz_values.mean(),
        "hub": hub * root_n, "authority": authority * root_n, "closeness": closeness, "betweenness": between,
    }
    values = {name: v if name in wanted else nothing for name, v in values.items()}
    return NodeProperties(values, perron_value, alpha, 0 if sources is None else len(sources), perron_gap, hits_gap)
