"""Node properties of rolled graphs: this project's path against networkx, measured in the same run.

    .venv/bin/python benchmarks/graph_metrics.py [--quick] [--nx-eigenvector-max-iter N] [--graphs lenet,resnet18]

Graphs (random init, seed 0): LeNet (1x28x28), the VGG family at widths 1 and 2 (3x32x32) and
torchvision's ResNet-18 (3x224x224). For every property, seconds for our path
(`pipeline_lib.graphs.properties`) and for networkx, their ratio, and how well the values agree
(Pearson correlation after matching normalisations). Closeness and betweenness follow the default
`GraphOptions` (exact up to `exact_limit` nodes, `pivots` sampled sources above it); networkx gets
the same sources for closeness and the same number of random pivots for betweenness.
`--quick` caps networkx's distance-based references on graphs above 1,000 nodes to 4 sources and
scales their time to the full count (marked "extrapolated"); networkx's eigenvector centrality is
always run to convergence unless --nx-eigenvector-max-iter caps it.
Prints its tables; with --write, also writes benchmarks/results/graph_metrics.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import sys

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import graph_tool as gt
import graph_tool.centrality as gtc
import networkx as nx
import numpy as np
import torch
import torchvision

from benchmarks._output import add_write_argument, save
from pipeline_lib.graphs.properties import (betweenness, distance_matrix, harmonic_closeness, hits, katz, pagerank,
                                            perron, pivot_sources)
from pipeline_lib.graphs.rolled import RolledGraph, RolledGraphTemplate
from pipeline_lib.models import build_model
from pipeline_lib.placement import available_cores
from pipeline_lib.spec import GraphOptions
from tests.networkx_reference import networkx_views

QUICK_SOURCES = 4


def models() -> dict[str, tuple[torch.nn.Module, tuple[int, int, int]]]:
    torch.manual_seed(0)
    return {
        "lenet": (build_model("lenet", in_channels=1, image_size=28, num_classes=10), (1, 28, 28)),
        "vgg-w1": (build_model("vgg", in_channels=3, image_size=32, num_classes=10), (3, 32, 32)),
        "vgg-w2": (build_model("vgg", in_channels=3, image_size=32, num_classes=10, width=2.0), (3, 32, 32)),
        "resnet18": (torchvision.models.resnet18(), (3, 224, 224)),
    }


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def correlation(a, b) -> float:
    """Pearson correlation (printed to 6 decimals; 1.000000 means > 0.9999995)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.allclose(a, a[0]) and np.allclose(b, b[0]):
        return 1.0
    return float(np.corrcoef(a, b)[0, 1])


def ours(graph: RolledGraph, options: GraphOptions) -> dict[str, tuple[np.ndarray, float]]:
    """Each property on its own, timed (the same calls node_properties makes)."""
    out = {}
    adjacency, t_adj = timed(graph.adjacency)
    strengths, t = timed(lambda: (np.asarray(adjacency.sum(axis=0)).ravel(), np.asarray(adjacency.sum(axis=1)).ravel()))
    out["strength (in, out)"] = (strengths[0], t + t_adj)
    (value, vector, _), t = timed(lambda: perron((adjacency + adjacency.T).tocsr()))
    out["eigenvector"] = (vector, t + t_adj)
    out["katz"] = (*timed(lambda: katz(adjacency, options.katz_factor / value)),)
    (hub, authority, _), t = timed(lambda: hits(adjacency))
    out["hits (hub, authority)"] = (authority, t)
    out["pagerank"] = (*timed(lambda: pagerank(adjacency, options.pagerank_damping)),)
    sources = pivot_sources(graph.n_nodes, options)
    out["closeness"] = (*timed(lambda: harmonic_closeness(distance_matrix(graph), sources)),)
    g, t_gt = timed(lambda: graph.to_graph_tool(attributes=False))
    distance = g.new_edge_property("double", vals=1.0 / graph.weight)
    between, t = timed(lambda: betweenness(g, distance, sources))
    out["betweenness"] = (between, t + t_gt)
    out["_katz_alpha"] = (options.katz_factor / value, 0.0)
    out["_sources"] = (sources, 0.0)
    return out


def reference(graph: RolledGraph, mine: dict, args) -> dict[str, dict]:
    """networkx on the same graph; graph-tool's own power iteration for the eigenvector as a second reference."""
    n = graph.n_nodes
    (directed, undirected), t_build = timed(lambda: networkx_views(graph))
    print(f"    networkx graphs built in {t_build:.1f} s (not counted)", flush=True)
    rows = {}

    def as_array(d):
        return np.array([d[i] for i in range(n)])

    strengths, t = timed(lambda: (as_array(dict(directed.in_degree(weight="weight"))),
                                  as_array(dict(directed.out_degree(weight="weight")))))
    rows["strength (in, out)"] = {"nx_s": t, "agreement": correlation(strengths[0], mine["strength (in, out)"][0])}

    max_iter = args.nx_eigenvector_max_iter or 100_000
    try:
        eig, t = timed(lambda: nx.eigenvector_centrality(undirected, weight="weight", max_iter=max_iter))
        rows["eigenvector"] = {"nx_s": t, "agreement": correlation(as_array(eig), mine["eigenvector"][0])}
    except nx.PowerIterationFailedConvergence:
        rows["eigenvector"] = {"nx_s": None, "note": f"networkx did not converge in {max_iter} iterations"}
    g = graph.to_graph_tool(attributes=False)
    (_, gt_vector), t = timed(lambda: gtc.eigenvector(gt.GraphView(g, directed=False), weight=g.ep["weight"],
                                                      max_iter=2000))
    rows["eigenvector"]["graph_tool_s"] = t
    rows["eigenvector"]["graph_tool_agreement"] = correlation(gt_vector.a, mine["eigenvector"][0])

    alpha = mine["_katz_alpha"][0]
    kz, t = timed(lambda: nx.katz_centrality(directed, alpha=alpha, beta=1.0, weight="weight", max_iter=10_000,
                                             normalized=False))
    rows["katz"] = {"nx_s": t, "agreement": correlation(as_array(kz), mine["katz"][0])}
    (_, auth), t = timed(lambda: nx.hits(directed))
    rows["hits (hub, authority)"] = {"nx_s": t, "agreement": correlation(as_array(auth), mine["hits (hub, authority)"][0])}
    pr, t = timed(lambda: nx.pagerank(directed, weight="weight", tol=1e-10, max_iter=10_000))
    rows["pagerank"] = {"nx_s": t, "agreement": correlation(as_array(pr), mine["pagerank"][0])}
    gt_pr, t = timed(lambda: gtc.pagerank(g, weight=g.ep["weight"], epsilon=1e-12).a)
    rows["pagerank"]["graph_tool_s"] = t
    rows["pagerank"]["graph_tool_agreement"] = correlation(gt_pr, mine["pagerank"][0])

    sources = mine["_sources"][0]
    full = list(range(n)) if sources is None else sources.tolist()
    used = full[:QUICK_SOURCES] if args.quick and n > 1000 else full
    scale = len(full) / len(used)
    hc, t = timed(lambda: nx.harmonic_centrality(undirected, distance="distance", sources=used))
    rows["closeness"] = {"nx_s": t * scale, "extrapolated": scale > 1}
    if scale == 1:
        rows["closeness"]["agreement"] = correlation(as_array(hc), mine["closeness"][0])
    k = None if sources is None else len(used)
    bc, t = timed(lambda: nx.betweenness_centrality(undirected, k=k, weight="distance", seed=0))
    rows["betweenness"] = {"nx_s": t * scale, "extrapolated": scale > 1}
    if sources is None:
        rows["betweenness"]["agreement"] = correlation(as_array(bc), mine["betweenness"][0])
    else:
        rows["betweenness"]["note"] = " (both sampled, different pivots: values not compared)"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cap networkx closeness/betweenness sources on big graphs")
    parser.add_argument("--nx-eigenvector-max-iter", type=int, default=None,
                        help="cap networkx eigenvector_centrality (minutes on ResNet-18 otherwise)")
    parser.add_argument("--graphs", default="lenet,vgg-w1,vgg-w2,resnet18")
    add_write_argument(parser)
    args = parser.parse_args()
    threads = available_cores()
    gt.openmp_set_num_threads(threads)
    options = GraphOptions()
    results = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
               "cores": threads, "load_average_at_start": os.getloadavg()[0], "options": options.model_dump(),
               "args": {k: v for k, v in vars(args).items() if k != "write"}, "graphs": {}}
    for name in args.graphs.split(","):
        model, shape = models()[name]
        template, t_trace = timed(lambda: RolledGraphTemplate.from_model(model, shape))
        graph, t_build = timed(lambda: template.build(model.state_dict()))
        print(f"{name}: {graph.n_nodes:,} nodes, {graph.n_edges:,} edges (trace {t_trace:.2f} s, "
              f"weights {t_build:.2f} s)", flush=True)
        ours(graph, options)  # warm-up (imports, caches)
        mine = ours(graph, options)
        refs = reference(graph, mine, args)
        rows = {}
        for prop, ref in refs.items():
            rows[prop] = {"ours_s": mine[prop][1], **ref}
            if ref.get("nx_s"):
                rows[prop]["ratio"] = ref["nx_s"] / mine[prop][1]
        total = sum(r["ours_s"] for p, r in rows.items() if p != "betweenness")
        results["graphs"][name] = {"nodes": graph.n_nodes, "edges": graph.n_edges, "trace_s": t_trace,
                                   "build_s": t_build, "pivots": 0 if mine["_sources"][0] is None else options.pivots,
                                   "all_but_betweenness_s": total, "properties": rows}
        print_graph(name, results["graphs"][name])
    results["load_average_at_end"] = os.getloadavg()[0]
    save(args.write, {"graph_metrics.json": lambda p: p.write_text(json.dumps(results, indent=2, default=float)),
                      "graph_metrics.md": lambda p: p.write_text(markdown(results))})


def _fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def print_graph(name: str, graph: dict) -> None:
    print(f"  {'property':24s} {'ours s':>9s} {'networkx s':>11s} {'ratio':>9s} {'agreement':>10s}")
    for prop, r in graph["properties"].items():
        extra = " (extrapolated)" if r.get("extrapolated") else ""
        print(f"  {prop:24s} {_fmt(r['ours_s'], '.4f'):>9s} {_fmt(r.get('nx_s'), '.2f'):>11s} "
              f"{_fmt(r.get('ratio'), '.0f'):>8s}x {_fmt(r.get('agreement'), '.6f'):>10s}{extra}{r.get('note', '')}")
        if "graph_tool_s" in r:
            print(f"  {'  graph-tool (iterative)':24s} {'':9s} {r['graph_tool_s']:11.2f} {'':9s} "
                  f"{r['graph_tool_agreement']:10.6f}")
    print(f"  all properties but betweenness: {graph['all_but_betweenness_s']:.3f} s", flush=True)


def markdown(results: dict) -> str:
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in results["args"].items()
             if v not in (None, False) and k != "graphs"]
    lines = [f"# Graph metrics benchmark ({results['measured_at']}, {results['cores']} cores, load average "
             f"{results['load_average_at_start']:.1f} -> {results['load_average_at_end']:.1f})", "",
             "`.venv/bin/python benchmarks/graph_metrics.py " + " ".join(flags) + "`", "",
             f"Options: {results['options']}", ""]
    for name, g in results["graphs"].items():
        sampled = f", closeness/betweenness from {g['pivots']} pivots" if g["pivots"] else ", all exact"
        lines += [f"## {name}: {g['nodes']:,} nodes, {g['edges']:,} edges{sampled}", "",
                  "| property | ours (s) | networkx (s) | ratio | agreement (corr.) |", "| --- | ---: | ---: | ---: | ---: |"]
        for prop, r in g["properties"].items():
            nx_s = _fmt(r.get("nx_s"), ".2f") + (" (extrapolated)" if r.get("extrapolated") else "")
            lines.append(f"| {prop} | {r['ours_s']:.4f} | {nx_s}{r.get('note', '')} | {_fmt(r.get('ratio'), '.0f')}x | "
                         f"{_fmt(r.get('agreement'), '.6f')} |")
            if "graph_tool_s" in r:
                lines.append(f"| {prop}: graph-tool's iterative version (reference) | | "
                             f"{r['graph_tool_s']:.2f} | | {r['graph_tool_agreement']:.6f} |")
        lines += ["", f"All properties but betweenness: {g['all_but_betweenness_s']:.3f} s "
                      f"(graph build: trace {g['trace_s']:.2f} s once per architecture, weights {g['build_s']:.2f} s).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
