"""The decision path's cost (graph work for just the quantities a predictor reads) and the report's
Decisions section, on real snapshots of tiny LeNet runs and on hand-made curves."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline_lib.datasets import load_dataset
from pipeline_lib.decisions import path_cost
from pipeline_lib.graphs.properties import PROPERTIES, node_properties
from pipeline_lib.graphs.snapshot_metrics import SnapshotJob, process_snapshots
from pipeline_lib.layout import DataLayout
from pipeline_lib.report.decisions import calibrates, decisions_section
from pipeline_lib.spec import GraphOptions, RunConfig, Study, expand_runs
from pipeline_lib.training import train_run
from tests.conftest import TINY_STUDY
from tests.test_replay import replay_rows
from tests.test_graph_properties import random_layered_graph


def test_properties_read_names_the_graph_quantities_behind_columns():
    columns = ["graph/closeness/mean@e0", "depth:2/betweenness/q90@slope", "depth:0/strength/cv@e1",
               "graph/perron_value/log@d3", "order:1/weight/mean", "order:1/bias/std", "test_acc@k", "diverged_by_k",
               "log10_lr", "train_loss@e1"]
    assert path_cost.properties_read(columns) == ("strength", "closeness", "betweenness")
    assert path_cost.properties_read(["order:3/weight/q90", "tse"]) == ()


def test_only_the_requested_properties_are_computed_and_they_equal_the_full_computation():
    graph = random_layered_graph([8, 30, 40, 20, 5], seed=1, density=0.3, skips=20)
    options = GraphOptions(exact_limit=10_000)
    full = node_properties(graph, options)
    some = node_properties(graph, options.model_copy(update={"properties": ["strength", "katz"]}))
    for name in PROPERTIES:
        if name in ("strength", "katz"):
            np.testing.assert_array_equal(some.values[name], full.values[name])
        else:
            assert np.isnan(some.values[name]).all(), name
    assert some.perron_value == full.perron_value  # every graph has its lambda_1 (katz's alpha needs it)
    with pytest.raises(ValueError, match="closenes"):
        GraphOptions(properties=["closenes"])


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> tuple[Path, list[SnapshotJob]]:
    """Snapshots (epochs 0..2) of two LeNet runs of widths 0.5 and 1 trained on 300 digits."""
    data_dir = tmp_path_factory.mktemp("path")
    data = load_dataset("digits", subset=300)
    jobs = []
    for width in (0.5, 1.0):
        config = RunConfig(study="t", dataset={"name": "digits", "subset": 300}, architecture="lenet", width=width,
                           depth=1, epochs=2, seed=0, config_id="c", lr=0.05, dropout=0.0, weight_decay=0.0,
                           optimizer="sgd", batch_size=64)
        train_run(config, data, data_dir)
        jobs += [SnapshotJob(config.run_id, e, str(DataLayout(data_dir).snapshot(config.run_id, e)), "lenet", width, 1,
                             "digits") for e in range(3)]
    return data_dir, jobs


def test_decision_path_summaries_are_the_graph_stage_s_for_its_quantities(snapshots, tmp_path):
    """The path computes what the graph stage stores (restricted to its quantities), nothing else."""
    _, jobs = snapshots
    options = GraphOptions(exact_limit=128, pivots=16)
    stage = process_snapshots(jobs[:2], tmp_path, options).summaries
    few = ("strength", "eigenvector")
    path = pl.concat([path_cost.graph_work(job, options, few) for job in jobs[:2]])
    assert set(path["property"]) == set(few)
    keys = ["run_id", "epoch", "scope", "property", "statistic"]
    joined = stage.filter(pl.col("property").is_in(few)).join(path, on=keys, how="full", suffix="_path")
    assert joined.height == path.height and joined["run_id"].null_count() == joined["run_id_path"].null_count() == 0
    np.testing.assert_allclose(joined["value_path"].fill_null(np.nan), joined["value"].fill_null(np.nan), rtol=1e-12)
    assert joined["value"].null_count() < joined.height / 10  # NULL only where a statistic is undefined (entropy)


def test_fewer_quantities_cost_less_on_the_same_snapshots(snapshots):
    """Strength alone (sums of the adjacency) against every property (closeness and betweenness: a
    Dijkstra per source): the subset must be cheaper, measured in the same interleaved loop."""
    _, jobs = snapshots
    options = GraphOptions(exact_limit=1000)  # exact closeness and betweenness on these <= 237-node graphs
    sample = path_cost.sample_snapshots(jobs, size=4, seed=0)
    assert len(sample) == 4 and len({(j.run_id, j.epoch) for j in sample}) == 4
    seconds = path_cost.seconds_per_snapshot(sample, options, {"all": PROPERTIES, "strength": ("strength",)},
                                             repeats=2)
    assert 0 < seconds["strength"] < seconds["all"], seconds


def _hand_study() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """16 runs (4 configurations x 2 widths x 2 seeds) with a known final accuracy; one registered
    predictor at k = 1 whose out-of-fold predictions are final + noise."""
    study = Study.model_validate({**TINY_STUDY, "samples": 4, "predict": {"k_epochs": [1, 2], "n_folds": 4}})
    rng = np.random.default_rng(0)
    predictions = []
    for i, run in enumerate(expand_runs(study)):
        final = float(rng.uniform(0.3, 0.95))
        predictions.append({"task": "regression", "predictor": "hgb", "feature_set": "graph_compact", "k": 1,
                            "split": "cv", "run_id": run.run_id, "fold": i % 4, "y_true": final,
                            "y_pred": final + float(rng.normal(0, 0.05)), "score": None})
    predictors = pl.DataFrame([{"id": "p1", "k": 1, "feature_set": "graph_compact", "predictor": "hgb",
                                "tau": 0.61, "tau_low": 0.4, "tau_high": 0.8}])
    costs = pl.DataFrame([
        {"strategy": "decision_path", "k": 1, "feature_set": "graph_compact", "predictor": "hgb", "seconds": 4.0,
         "fraction": 4 / 48, "properties": ["strength", "eigenvector"], "snapshot_seconds": 0.125,
         "epoch_seconds": 1.0, "snapshots_timed": 8, "detail": "32 snapshots x 0.125 s"},
        {"strategy": "graph_stage", "k": 1, "feature_set": None, "predictor": None, "seconds": 32.0,
         "fraction": 32 / 48, "properties": list(PROPERTIES), "snapshot_seconds": 1.0, "epoch_seconds": 1.0,
         "snapshots_timed": 8, "detail": "32 snapshots x 1 s"}])
    return predictors, pl.DataFrame(predictions, schema_overrides={"score": pl.Float64}), costs


def test_decisions_section_has_its_tables_and_the_stored_replay(tmp_path):
    predictors, predictions, costs = _hand_study()
    lines, tables = decisions_section(predictors, predictions, costs, None, tmp_path)
    text = "\n".join(lines)
    assert text.startswith("## Decisions") and "No replay of stopping policies is stored" in text
    assert "k = 1, graph_compact/hgb (strength, eigenvector): 0.1250 s of graph work per snapshot against 1.0000 s" \
           " of training per model-epoch; deciding for every run costs 8% of training, every property 67%." in text

    # coverage out of fold, by hand: each fold judged by the ceil((n+1) 0.9)-th smallest |residual| of the others
    registered = tables["registered"].row(0, named=True)
    residual = (predictions["y_true"] - predictions["y_pred"]).abs().to_numpy()
    folds = predictions["fold"].to_numpy()
    covered = []
    for fold in range(4):
        others = np.sort(residual[folds != fold])
        covered += list(residual[folds == fold] <= others[math.ceil((len(others) + 1) * 0.9) - 1])
    assert registered["coverage out of fold"] == pytest.approx(np.mean(covered))
    every = np.sort(residual)[math.ceil(17 * 0.9) - 1]
    assert registered["90% interval width"] == pytest.approx(2 * every)
    assert registered["tau [95%]"] == "0.610 [0.400, 0.800]"
    assert not calibrates(8, 0.9) and calibrates(9, 0.9)  # ceil(9 x 0.9) = 9 > 8; ceil(10 x 0.9) = 9 <= 9

    # a stored replay is rendered, not recomputed: its section, figure and summary table
    lines, tables = decisions_section(predictors, predictions, costs, replay_rows(), tmp_path)
    assert "![replay pareto](replay_pareto.png)" in "\n".join(lines) and tables["replay"].height == 5
    assert (tmp_path / "replay_pareto.png").stat().st_size > 10_000
