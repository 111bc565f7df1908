"""The graph metanetwork (`pipeline_lib.decisions.metanetwork`) trained on a tiny slice of the committed
corpus (its compact graphs, curves and runs): relabelling the channels of one hidden layer of a
snapshot's graph leaves a run's score unchanged, and training is deterministic given the seed."""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest

from pipeline_lib.corpus import corpus_targets, read_corpus, read_corpus_graphs
from pipeline_lib.decisions.metanetwork import MetaConfig, fit, graph_tensors, predict, run_set
from pipeline_lib.graphs.compact import CompactGraph, decode

STUDIES = ("corpus-digits-resnet-noise", "corpus-fashion-lenet-noise")
CONFIG = MetaConfig(hidden=8, steps=15, runs_per_step=8)


@pytest.fixture(scope="module")
def corpus_slice():
    corpus = read_corpus()
    runs = (corpus.runs.filter(pl.col("study").is_in(STUDIES)).sort("run_id")
            .group_by("study", maintain_order=True).head(10))
    table = read_corpus_graphs()
    table = table.filter(pc.and_(pc.is_in(table["run_id"], pl.Series(runs["run_id"]).to_arrow()),
                                 pc.less_equal(table["epoch"], 1)))
    graphs = {(g.run_id, g.epoch): g for g in decode(table)}
    return runs, corpus.curves, graphs, corpus_targets(runs)


def _tensors(graphs: dict) -> dict:
    return {key: graph_tensors(g) for key, g in graphs.items()}


def _permute_hidden_layer(graph: CompactGraph, rng: np.random.Generator) -> CompactGraph:
    """The same graph with the nodes of its widest hidden layer relabelled among themselves."""
    layers, counts = np.unique(graph.layer[(graph.layer > 0) & (graph.layer < graph.layer.max())], return_counts=True)
    nodes = np.nonzero(graph.layer == layers[np.argmax(counts)])[0]
    new_id = np.arange(graph.n_nodes)
    new_id[nodes] = rng.permutation(nodes)
    assert (new_id != np.arange(graph.n_nodes)).any()
    features, layer = np.empty_like(graph.features), np.empty_like(graph.layer)
    features[new_id], layer[new_id] = graph.features, graph.layer
    return dataclasses.replace(graph, features=features, layer=layer, src=new_id[graph.src], dst=new_id[graph.dst])


def test_relabelling_one_hidden_layers_channels_leaves_the_score_unchanged(corpus_slice):
    runs, curves, graphs, targets = corpus_slice
    model = fit(run_set(runs, curves, _tensors(graphs), 1, targets), CONFIG)
    rng = np.random.default_rng(0)
    for run_id in runs["run_id"].head(4).to_list() + runs["run_id"].tail(4).to_list():
        one = runs.filter(pl.col("run_id") == run_id)
        base = predict(model, run_set(one, curves, _tensors(graphs), 1))
        permuted = {**graphs, (run_id, 1): _permute_hidden_layer(graphs[(run_id, 1)], rng)}
        assert not np.array_equal(permuted[(run_id, 1)].src, graphs[(run_id, 1)].src)
        moved = predict(model, run_set(one, curves, _tensors(permuted), 1))
        np.testing.assert_allclose(moved, base, rtol=1e-5, atol=1e-6)
        # the score reads the graph: dropping a hidden layer's edges changes it
        g = graphs[(run_id, 1)]
        keep = g.layer[g.dst] != np.unique(g.layer)[1]
        cut = {**graphs, (run_id, 1): dataclasses.replace(g, src=g.src[keep], dst=g.dst[keep], weight=g.weight[keep])}
        assert not np.allclose(predict(model, run_set(one, curves, _tensors(cut), 1)), base)


def test_training_is_deterministic_given_the_seed(corpus_slice):
    runs, curves, graphs, targets = corpus_slice
    data = run_set(runs, curves, _tensors(graphs), 1, targets)
    first = predict(fit(data, CONFIG), data)
    assert np.array_equal(predict(fit(data, CONFIG), data), first)
    assert not np.allclose(predict(fit(data, dataclasses.replace(CONFIG, seed=1)), data), first)
