"""One notion of done: changed `graphs:` options or a feature set's code recompute exactly what they change,
and the study's data directory is the one its first stage recorded (real Prefect, DuckDB, graph-tool)."""
from __future__ import annotations

import dataclasses
import sys

import polars as pl
import pytest

from flows import graph_metrics as graph_metrics_flow
from flows import train_sweep as train_sweep_flow
from flows._cli import run_cli
from flows.evaluate import evaluate
from flows.features import features
from pipeline_lib import fingerprints
from pipeline_lib.layout import DataLayout
from pipeline_lib.spec import GraphOptions
from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

# 2 configurations x widths 0.5 (124 nodes: exact below exact_limit) and 1.0 (237 nodes: sampled)
# x 2 seeds, epochs 0 to 2: 24 snapshots, half of them on each side of exact_limit.
STUDY = dict(epochs=2, predict={"k_epochs": [1], "n_folds": 2}, graphs={"exact_limit": 200, "pivots": 16})


def _cli(module, monkeypatch, *args: str) -> None:
    """Run a flow's command line in this process (inside the Prefect test harness)."""
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    run_cli(module.main)


@pytest.fixture(scope="module")
def study(tmp_path_factory, prefect_harness):
    """`train_sweep --data-dir X`, then `graph_metrics` without it."""
    root = tmp_path_factory.mktemp("fingerprints")
    spec, wh_path, data_dir = write_spec(root, **STUDY), root / "w.duckdb", root / "elsewhere"
    with pytest.MonkeyPatch.context() as mp:
        _cli(train_sweep_flow, mp, "--spec", str(spec), "--warehouse", str(wh_path), "--data-dir", str(data_dir))
        _cli(graph_metrics_flow, mp, "--spec", str(spec), "--warehouse", str(wh_path))
    return spec, Warehouse(wh_path, data_dir=data_dir), data_dir


def _graphs(wh: Warehouse) -> pl.DataFrame:
    return wh.query("""SELECT g.run_id, g.epoch, r.width, g.nodes, g.pivots, g.fingerprint, g.error
                       FROM graphs g JOIN runs r USING (run_id) ORDER BY ALL""")


def test_later_stages_use_the_studys_data_dir(study, tmp_path, monkeypatch, capsys):
    spec, wh, data_dir = study
    assert wh.query("SELECT data_dir FROM studies")["data_dir"].to_list() == [str(data_dir)]
    snapshots = wh.query("SELECT run_id, epoch, path FROM snapshots")
    assert snapshots.height == 24 and all(p.startswith(str(data_dir)) for p in snapshots["path"])
    for run_id, epoch, _ in snapshots.iter_rows():  # node metrics beside the snapshots, none beside the warehouse
        assert DataLayout(data_dir).node_metrics(run_id, epoch).is_file()
    assert not (wh.path.parent / "data").exists()
    assert wh.query("SELECT count(DISTINCT (run_id, epoch)) AS n FROM node_metrics")["n"][0] == 24

    with pytest.raises(SystemExit) as refused:
        _cli(graph_metrics_flow, monkeypatch, "--spec", str(spec), "--warehouse", str(wh.path),
             "--data-dir", str(tmp_path / "other"))
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert str(data_dir) in message and str(tmp_path / "other") in message
    assert not (tmp_path / "other").exists()


def test_triage_graphs_hold_only_the_asked_properties_and_the_full_stage_redoes_them(study):
    """Triage's graphs (epochs <= k, some properties) are not taken for full graphs; full graphs serve triage.
    Runs before the pivots test changes the graphs; leaves them as it found them."""
    spec, wh, data_dir = study
    node_metrics = lambda: wh.query("SELECT run_id, epoch, node, strength, eigenvector, closeness, katz "  # noqa: E731
                                    "FROM node_metrics WHERE epoch <= 1 ORDER BY ALL")
    full = node_metrics()
    asked = ["eigenvector", "strength"]
    served = graph_metrics_flow.graph_metrics(str(spec), str(wh.path), until_epoch=1, properties=asked)
    assert served == {"computed": 0, "failed": 0, "skipped": 16}  # full graphs hold the properties asked for

    redone = graph_metrics_flow.graph_metrics(str(spec), str(wh.path), recompute=True, until_epoch=1, properties=asked)
    assert redone == {"computed": 16, "failed": 0, "skipped": 0}
    restricted = node_metrics()
    assert restricted.select("run_id", "epoch", "node", *asked).equals(full.select("run_id", "epoch", "node", *asked))
    assert restricted["closeness"].is_null().all() and restricted["katz"].is_null().all()
    assert full["closeness"].is_not_null().all()
    assert wh.query("SELECT count(*) AS n FROM graph_summaries WHERE property = 'closeness' AND epoch <= 1")["n"][0] == 0

    again = graph_metrics_flow.graph_metrics(str(spec), str(wh.path))  # the full stage computes exactly those again
    assert again == {"computed": 16, "failed": 0, "skipped": 8}
    assert node_metrics().equals(full)


def test_changing_pivots_recomputes_exactly_the_sampled_graphs(study, tmp_path):
    spec, wh, data_dir = study
    before = _graphs(wh)
    assert before["error"].is_null().all() and before["fingerprint"].is_not_null().all()
    assert sorted(set(zip(before["width"], before["nodes"], before["pivots"]))) == [(0.5, 124, 0), (1.0, 237, 16)]
    assert features(str(spec), str(wh.path))  # features of the current graphs
    unchanged = graph_metrics_flow.graph_metrics(str(spec), str(wh.path))
    assert unchanged == {"computed": 0, "failed": 0, "skipped": 24}

    changed = write_spec(tmp_path, **{**STUDY, "graphs": {"exact_limit": 200, "pivots": 8}})
    counts = graph_metrics_flow.graph_metrics(str(changed), str(wh.path))
    assert counts == {"computed": 12, "failed": 0, "skipped": 12}
    after = _graphs(wh)
    exact, sampled = after["width"] == 0.5, after["width"] == 1.0
    assert after.filter(exact).equals(before.filter(exact))  # the exact graphs are the rows they were
    assert (after.filter(sampled)["pivots"] == 8).all()
    assert not set(after.filter(sampled)["fingerprint"]) & set(before.filter(sampled)["fingerprint"])
    # then the graph features of the runs whose graphs changed, and nothing else
    assert features(str(changed), str(wh.path)) == {"graph": 4, "graph_compact": 4}


def test_graph_fingerprints_follow_what_a_graph_of_that_size_uses():
    base = GraphOptions(exact_limit=200, pivots=16)
    fp = fingerprints.graph_fingerprints
    assert fp(base, [124, 237]) != fp(base.model_copy(update={"seed": 1}), [124, 237])  # 237 is sampled
    assert fp(base, [124])[124] == fp(base.model_copy(update={"seed": 1, "pivots": 8}), [124])[124]
    assert fp(base, [237])[237] != fp(base.model_copy(update={"exact_limit": 300}), [237])[237]
    assert fp(base, [124])[124] != fp(base.model_copy(update={"fold_batchnorm": False}), [124])[124]
    restricted = base.model_copy(update={"properties": ["strength", "eigenvector"]})
    assert fp(restricted, [124])[124] != fp(base, [124])[124]  # a graph of some properties is not a full one
    assert fp(restricted, [124]) == fp(restricted.model_copy(update={"properties": ["eigenvector", "strength"]}), [124])


def test_changed_code_of_one_feature_set_recomputes_that_set_and_the_evaluation(study, monkeypatch):
    spec, wh, _ = study
    features(str(spec), str(wh.path))
    assert "up_to_date" not in evaluate(str(spec), str(wh.path))
    assert features(str(spec), str(wh.path)) == {}  # same code: nothing to do
    assert evaluate(str(spec), str(wh.path)) == {"up_to_date": True}
    stored = wh.query("SELECT DISTINCT feature_set, fingerprint FROM features")

    # the code of one base set changed: that set's units are computed again, no other, and the evaluation follows
    policy = fingerprints.FEATURES["hparams"]
    monkeypatch.setitem(fingerprints.FEATURES, "hparams", dataclasses.replace(
        policy, alone=(*policy.alone, "pipeline_lib.features.weights")))
    assert features(str(spec), str(wh.path)) == {"hparams": 8}
    after = wh.query("SELECT DISTINCT feature_set, fingerprint FROM features")
    assert after.filter(pl.col("feature_set") != "hparams").sort("feature_set", "fingerprint").equals(
        stored.filter(pl.col("feature_set") != "hparams").sort("feature_set", "fingerprint"))
    assert not set(after.filter(pl.col("feature_set") == "hparams")["fingerprint"]) & set(stored["fingerprint"])
    assert "up_to_date" not in evaluate(str(spec), str(wh.path))


def test_code_digest_ignores_comments_and_docstrings(tmp_path):
    digests = []
    for source in ('"""doc"""\ndef f(x):\n    return x + 1\n',
                   '# a comment\ndef f(x):\n    """why"""\n\n    return x + 1  # same\n',
                   'def f(x):\n    return x + 2\n',
                   'def f(x):\n    return x + 1, "order:{}"\n', 'def f(x):\n    return x + 1, "depth:{}"\n'):
        (tmp_path / "probe.py").write_text(source)
        digests.append(fingerprints.source_digest(tmp_path / "probe.py"))
    assert digests[0] == digests[1] != digests[2]
    assert digests[3] != digests[4]  # a renamed feature is new feature code: its units are computed again
