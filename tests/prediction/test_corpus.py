"""The corpus: a tiny two-study corpus from digits, exported from real warehouses, evaluated leave one
study out; the committed corpus' fingerprints per base feature set; the corpus predictor scoring a
study with no predictor of its own, and refusing only what reads a stale feature set."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata

from pipeline_lib import corpus as corpus_lib
from pipeline_lib import fingerprints
from pipeline_lib.corpus import (CorpusStale, check_reads, corpus_designs, corpus_targets, loso_evaluation,
                                 loso_predictions, read_corpus, regression_view, stale_sets, within_study_ranks,
                                 write_corpus)
from pipeline_lib.decisions import corpus as corpus_predictor
from pipeline_lib.features import BASE_SETS, base_set_features
from pipeline_lib.prediction.models import inner_splits, make_predictor
from pipeline_lib.spec import TriageSpec
from pipeline_lib.vocabulary import Split, Task
from stages.replay import corpus_transfer
from stages.score import score_study
from stages.triage import rung_source
from tests.prediction.conftest import build_study
from warehouse.corpus import StaleFeatures, corpus_tables
from warehouse.predict import (epoch_metrics, invariant_graph_summaries, pending_features, snapshot_paths,
                               study_runs, write_features)

TINY = {"samples": 4, "epochs": 3, "widths": [0.5, 1.0], "predict": {"k_epochs": [1, 2], "n_folds": 2}}
STUDIES = {
    "corpus-a": {"sweep": {"lr": {"log_uniform": [0.01, 0.5]}, "batch_size": [64],
                           "lr_schedule": ["cosine", {"step": {"step_size": 1, "gamma": 0.1}}]}},
    "corpus-b": {"sweep": {"lr": {"log_uniform": [0.01, 0.5]}, "batch_size": [64], "label_noise": [0.0, 0.4]}},
}


def compute_features(small) -> None:
    """What the features stage does, without Prefect: every pending unit at every k."""
    wh, name = small.warehouse, small.study.name
    runs = study_runs(wh, name)
    inputs = {"epoch_metrics": epoch_metrics(wh, name), "snapshot_paths": snapshot_paths(wh, name),
              "graph_summaries": invariant_graph_summaries(wh, name, max(small.study.predict.k_epochs))}
    for k in small.study.predict.k_epochs:
        for feature_set, units in pending_features(wh, name, runs, k).items():
            rows = base_set_features(feature_set, k, runs.join(units, on="run_id", how="semi"), **inputs)
            write_features(wh, name, rows.join(units, on="run_id"))


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """Two digits studies (16 runs each), their features, exported as the corpus is."""
    root = tmp_path_factory.mktemp("corpus")
    parts, warehouses = [], {}
    for name, overrides in STUDIES.items():
        (root / name).mkdir()
        small = build_study(root / name, name=name, **TINY, **overrides)
        with pytest.raises(StaleFeatures, match="features stage"):
            corpus_tables(small.warehouse, name)
        compute_features(small)
        parts.append(corpus_tables(small.warehouse, name))
        warehouses[name] = small
    write_corpus(root / "out", *(pl.concat([p[i] for p in parts]) for i in range(3)),
                 {"studies": [p[3] for p in parts]})
    return read_corpus(root / "out"), warehouses


def test_corpus_holds_configuration_curves_outcome_and_features(tiny_corpus):
    corpus, _ = tiny_corpus
    assert stale_sets(corpus.meta["feature_codes"]) == []
    assert corpus.runs.height == 32 and set(corpus.runs["study"]) == set(STUDIES)
    assert set(corpus.runs.filter(pl.col("study") == "corpus-b")["label_noise"]) == {0.0, 0.4}
    assert "step(step_size=1,gamma=0.1)" in set(corpus.runs["lr_schedule"])
    assert corpus.curves.group_by("run_id").agg(pl.col("epoch").max())["epoch"].max() == 3
    hp = (corpus.features.filter((pl.col("feature_set") == "hparams") & (pl.col("k") == 1))
          .pivot(on="feature", index="run_id", values="value").join(corpus.runs, on="run_id"))
    assert ((hp["label_noise"] - hp["label_noise_right"]).abs() < 1e-6).all()  # the feature (float32), the run
    kinds = hp["lr_schedule"].str.extract(r"^(\w+)")
    for kind in ("constant", "cosine", "step", "warmup_cosine"):
        assert (hp[f"lr_schedule={kind}"] == (kinds == kind).cast(pl.Float64)).all()
    assert hp["lr_schedule=step"].sum() > 0 and hp["lr_schedule=constant"].sum() > 0
    per_unit = corpus.features.select("run_id", "k", "feature_set").unique()
    assert per_unit.height == 32 * 2 * len(corpus_lib.FEATURE_SETS["all"])  # every run, k and base set


def test_a_stale_set_refuses_what_reads_it_with_the_refreshing_command(tiny_corpus, caplog):
    corpus, _ = tiny_corpus
    recorded = {**corpus.meta["feature_codes"], "tse": "0" * 40}
    with pytest.raises(CorpusStale, match=r"(?s)all_but_graph reads .*feature set\(s\) tse .*make corpus"):
        check_reads(recorded, "all_but_graph")
    with caplog.at_level(logging.WARNING, logger="pipeline_lib.corpus"):
        check_reads(recorded, "graph+learning_curve")  # reads graph and learning_curve only
    assert "feature set(s) tse" in caplog.text and "make corpus" in caplog.text
    assert stale_sets({k: v for k, v in corpus.meta["feature_codes"].items() if k != "hparams"}) == ["hparams"]


@pytest.mark.parametrize("base", BASE_SETS)
def test_committed_corpus_was_made_by_this_code_of_each_feature_set(base):
    """When this fails, the code of that base set changed: refresh it with make corpus (python -m
    flows.corpus), which recomputes that set's columns only; meanwhile corpus predictions that read it
    are refused."""
    meta = json.loads((corpus_lib.SHIPPED_DIR / "meta.json").read_text())
    card = json.loads((corpus_lib.SHIPPED_DIR / "predictor" / "card.json").read_text())
    assert meta["feature_codes"][base] == card["feature_codes"][base] == fingerprints.FEATURES[base].code()


ROOT = Path(__file__).resolve().parents[2]
STALE_PROBE = ("import json, sys\nfrom pipeline_lib.corpus import stale_sets\n"
               "print(json.dumps(stale_sets(json.loads(open(sys.argv[1]).read())['feature_codes'])))")


@pytest.mark.parametrize("edited, stale", [
    ("hparams.py", ["hparams"]),
    ("graph.py", ["graph", "graph_compact"]),  # both sets are computed there
    ("curves.py", ["graph", "graph_compact", "early_acc", "tse", "tse_ema", "learning_curve", "weight_stats"]),
    ("sets.py", []),  # the unions of base sets: no stored feature changes
])
def test_an_edit_of_one_feature_module_stales_only_the_sets_computed_with_it(edited, stale, tmp_path):
    """On a copy of the library whose module is really edited, read by a fresh interpreter: which sets
    of the committed corpus are stale. graph.py and weights.py import curves.py (the divergence flag)."""
    shutil.copytree(ROOT / "pipeline_lib", tmp_path / "pipeline_lib", ignore=shutil.ignore_patterns("__pycache__"))
    module = tmp_path / "pipeline_lib" / "features" / edited
    module.write_text(module.read_text() + "\n\ndef _edited_in_the_copy():\n    return 1\n")
    out = subprocess.run([sys.executable, "-c", STALE_PROBE, str(corpus_lib.SHIPPED_DIR / "meta.json")], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == stale


def test_within_study_ranks_by_hand():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, np.nan], [10.0, 1.0], [20.0, 0.0]])
    studies = np.array(["a", "a", "a", "b", "b"])
    # (rank - 1/2) / n within each study; ties share their mid-rank; NaN is left out of n
    expected = np.array([[1 / 6, 0.5], [5 / 6, 0.5], [3 / 6, np.nan], [0.25, 0.75], [0.75, 0.25]])
    np.testing.assert_allclose(within_study_ranks(X, studies), expected)


def test_targets_are_within_study_percentiles_and_halves(tiny_corpus):
    corpus, _ = tiny_corpus
    targets = corpus_targets(corpus.runs)
    for study in STUDIES:
        mine = targets.filter(pl.col("study") == study)
        accs = mine["final_acc"].to_numpy()
        np.testing.assert_allclose(mine["percentile"].to_numpy(), (rankdata(accs) - 0.5) / len(accs))
        assert mine["good"].sum() <= len(accs) / 2 and (mine["good"] == (accs > np.median(accs))).all()
        assert all(c.startswith(f"{study}/") for c in mine["config_id"])


def test_loso_predicts_each_study_from_the_other_only(tiny_corpus):
    corpus, _ = tiny_corpus
    targets = corpus_targets(corpus.runs)
    designs = corpus_designs(corpus, targets, ks=[1])
    assert ("graph", 1) in designs and ("hparams", 1) in designs
    chosen = {key: designs[key] for key in [("early_acc", 1), ("graph_compact", 1), ("hparams", 1)]}
    predictions = loso_predictions(chosen, targets, ("linear",))
    for study in STUDIES:
        held_out = predictions.filter(pl.col("split") == Split.LOSO_PREFIX.of(study))
        assert set(held_out["run_id"]) == set(targets.filter(pl.col("study") == study)["run_id"])
    # reproduced with scikit-learn directly: fitted on study b's rows only, predicting study a's
    X, _ = chosen[("early_acc", 1)]
    view = regression_view(targets)
    train = (targets["study"] == "corpus-b").to_numpy()
    y = view["final_acc"].to_numpy()
    splits = inner_splits(Task.REGRESSION, y[train], targets["config_id"].to_numpy()[train])
    model = make_predictor("linear", Task.REGRESSION, int(train.sum()), X.shape[1], splits).fit(X[train], y[train])
    ours = predictions.filter((pl.col("split") == "loso:corpus-a") & (pl.col("feature_set") == "early_acc")
                              & (pl.col("task") == Task.REGRESSION)).sort("run_id")
    expected = dict(zip(targets["run_id"].to_numpy()[~train], model.predict(X[~train])))
    np.testing.assert_allclose(ours["y_pred"].to_numpy(), [expected[r] for r in ours["run_id"]])

    evaluations, comparisons = loso_evaluation(predictions, targets)
    splits_seen = set(evaluations["split"])
    assert splits_seen == {"loso:corpus-a", "loso:corpus-b", Split.LOSO}
    tau = evaluations.filter((pl.col("metric") == "kendall_tau") & (pl.col("split") == "loso:corpus-a"))
    assert ((tau["low"] <= tau["value"]) & (tau["value"] <= tau["high"])).all()
    assert set(comparisons["feature_set"]) == {"graph_compact"}
    assert set(comparisons["baseline"]) <= {"early_acc", "hparams"}


def test_corpus_predictor_scores_a_study_without_predictors(tiny_corpus, tmp_path, monkeypatch):
    corpus, warehouses = tiny_corpus
    targets = corpus_targets(corpus.runs)
    designs = corpus_designs(corpus, targets, ks=[1])
    chosen = {key: designs[key] for key in [("early_acc", 1), ("learning_curve", 1)]}
    predictions = loso_predictions(chosen, targets, ("linear",))
    evaluations, _ = loso_evaluation(predictions, targets)
    monkeypatch.setenv(corpus_lib.CORPUS_ENV, str(tmp_path))  # the corpus predictor is read from here on
    card = corpus_predictor.fit_corpus_predictors(chosen, targets, corpus.runs, corpus.curves, evaluations, predictions,
                                                  corpus.meta["studies"])
    readme = corpus_predictor.write_model_card(card).read_text()
    assert "corpus-a: 16 runs" in readme and "Input contract" in readme
    card_file = tmp_path / "predictor" / "card.json"
    assert json.loads(card_file.read_text())["predictors"]["1"]["feature_set"] in ("early_acc", "learning_curve")
    small = warehouses["corpus-a"]
    assert small.warehouse.query("SELECT count(*) AS n FROM predictors")["n"][0] == 0
    scores, plan = score_study(small.warehouse, small.study.name, "corpus", 1)
    assert plan.source.id == "corpus-k1" and scores.height == 16
    assert scores["predicted"].is_between(-1, 2).all() and scores["p_good"].is_between(0, 1).all()
    assert sorted(scores["rank"]) == sorted(pl.Series(scores["predicted"]).rank("min", descending=True).cast(pl.Int32))
    stored = small.warehouse.query("SELECT count(*) AS n FROM scores WHERE predictor_id = 'corpus-k1'")["n"][0]
    assert stored == 16
    with pytest.raises(corpus_predictor.ScoringError, match="not at k = 2"):
        score_study(small.warehouse, small.study.name, "corpus", 2)
    # triage takes it by name too, P(good) included (its calibration comes from the LOSO scores)
    triaged = small.study.model_copy(update={"triage": TriageSpec(predictor="corpus", at_epoch=1, keep={"p_good": 0.5})})
    source = rung_source(small.warehouse, triaged, 1)
    assert source.kind == "corpus" and source.id == "corpus-k1"


def _changed_code(monkeypatch, base: str) -> None:
    """As if the code of base set `base` had changed since the corpus was made: its digest now covers one
    module more."""
    policy = fingerprints.FEATURES[base]
    monkeypatch.setitem(fingerprints.FEATURES, base, dataclasses.replace(
        policy, alone=(*policy.alone, "pipeline_lib.features.sets")))


def test_corpus_predictor_refuses_only_predictions_that_read_a_stale_set(tiny_corpus, tmp_path, monkeypatch, caplog):
    """The same rule in scoring, triage (`auto` and by name) and the replay's transfer from the corpus."""
    corpus, warehouses = tiny_corpus
    targets = corpus_targets(corpus.runs)
    designs = corpus_designs(corpus, targets, ks=[1], feature_sets=["early_acc"])
    predictions = loso_predictions(designs, targets, ("linear",))
    evaluations, _ = loso_evaluation(predictions, targets)
    monkeypatch.setenv(corpus_lib.CORPUS_ENV, str(tmp_path))  # the corpus and its predictor are read from here on
    write_corpus(tmp_path, corpus.runs, corpus.curves, corpus.features, {"studies": corpus.meta["studies"]})
    card = corpus_predictor.fit_corpus_predictors(designs, targets, corpus.runs, corpus.curves, evaluations,
                                                  predictions, corpus.meta["studies"])
    card["predictors"]["1"]["accuracy_gate"]["holds"] = True  # so that only staleness decides what auto takes
    (tmp_path / "predictor" / "card.json").write_text(json.dumps(card))
    small = warehouses["corpus-a"]
    wh, study = small.warehouse, small.study
    auto = study.model_copy(update={"triage": TriageSpec(predictor="auto", at_epoch=1, keep=0.5)})
    named = study.model_copy(update={"triage": TriageSpec(predictor="corpus", at_epoch=1, keep=0.5)})
    run_ids = study_runs(wh, study.name)["run_id"].to_list()
    rows = corpus.features.filter(pl.col("run_id").is_in(run_ids) & (pl.col("k") == 1))

    fresh = fingerprints.FEATURES["graph"]
    _changed_code(monkeypatch, "graph")  # the predictor reads early_acc only: a warning, nothing refused
    with caplog.at_level(logging.WARNING):
        scores, _ = score_study(wh, study.name, "corpus", 1)
        assert scores.height == 16
        assert rung_source(wh, auto, 1).kind == "corpus" and rung_source(wh, named, 1).kind == "corpus"
        transfer = corpus_transfer(study)
        assert transfer(1, "all_but_graph", rows, run_ids) is not None
        assert transfer(1, "all", rows, run_ids) is None  # all reads graph
    assert "feature set(s) graph" in caplog.text and "make corpus" in caplog.text
    assert "no transfer from the corpus at k = 1 on all:" in caplog.text

    monkeypatch.setitem(fingerprints.FEATURES, "graph", fresh)
    _changed_code(monkeypatch, "early_acc")  # read by the predictor at k = 1: refused, with the command
    with pytest.raises(CorpusStale, match=r"(?s)early_acc .*make corpus"):
        score_study(wh, study.name, "corpus", 1)
    with pytest.raises(CorpusStale, match=r"(?s)early_acc .*make corpus"):
        rung_source(wh, named, 1)
    fallback = rung_source(wh, auto, 1)
    assert fallback.kind == "accuracy" and "early_acc" in fallback.reason and "make corpus" in fallback.reason
    assert corpus_transfer(study)(1, "all_but_graph", rows, run_ids) is None


def test_accuracy_gate_compares_with_test_accuracy_at_k_per_study():
    """The gate's taus are scipy's Kendall tau of the predictions and of the raw accuracy at k, per
    study; a study where the predictor trails accuracy by more than the tolerance fails it."""
    from scipy.stats import kendalltau

    y_true = [0.1, 0.2, 0.3, 0.4, 0.5]
    predictions = pl.DataFrame({"run_id": [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)],
                                "study": ["a"] * 5 + ["b"] * 5, "y_true": y_true * 2,
                                "y_pred": [1, 2, 3, 4, 5] + [5, 4, 3, 2, 1]})
    # accuracy at k = 1: perfect on both studies, except run b4 diverged before epoch 1 (no row)
    curves = pl.DataFrame({"run_id": [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(4)],
                           "epoch": [1] * 9, "test_acc": [0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.2, 0.3, 0.4]})
    taus = corpus_predictor.accuracy_taus(predictions, curves, 1)
    b = taus.filter(pl.col("study") == "b").row(0, named=True)
    assert b["tau"] == pytest.approx(kendalltau([5, 4, 3, 2, 1], y_true).statistic)
    assert b["accuracy_tau"] == pytest.approx(kendalltau([0.1, 0.2, 0.3, 0.4, 0.0], y_true).statistic)
    assert b["top5@4"] == 0.4 and b["accuracy_top5@4"] == 0.4  # 5 runs, all in the top 5: keeping 2 keeps 2
    gate = corpus_predictor.accuracy_gate(taus)
    assert not gate["holds"] and gate["worse_on"] == ["b"]
    assert corpus_predictor.accuracy_gate(taus.filter(pl.col("study") == "a"))["holds"]


def test_the_shipped_card_gates_each_k_on_every_corpus_study():
    """The committed card: `auto` uses the corpus predictor at k only where it ties or beats raw
    accuracy on every held-out study; today it does at no k (docs/results/corpus.md)."""
    card = corpus_predictor.read_card()
    for k, entry in card["predictors"].items():
        gate = entry["accuracy_gate"]
        assert {s for s in gate["studies"] if not s.startswith("heldout:")} == {s["study"] for s in card["studies"]}
        assert gate["measures"] == ["tau", "top5@4", "top5@8"]
        assert gate["holds"] == all(ours >= accuracy - gate["tolerance"] for values in gate["studies"].values()
                                    for ours, accuracy in values.values())
