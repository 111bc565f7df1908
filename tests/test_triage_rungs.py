"""Triage v2's library parts, without training: rungs and keep rules of the spec, each rung's cohort,
the i-Epoch score, the named differences between a study and a predictor's, where `auto` takes its
score from, and the savings in seconds (checked against sums written out by hand)."""
from __future__ import annotations

import math

import polars as pl
import pytest

from pipeline_lib.corpus import CORPUS_ENV
from pipeline_lib.decisions.predictor_source import auto_source, named_source
from pipeline_lib.decisions.savings import triage_savings
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.decisions.study_match import mismatches
from pipeline_lib.decisions.sources import AccuracySource, CorpusSource, RegisteredSource
from pipeline_lib.decisions.triage import decide, split_cohort
from pipeline_lib.features import base_set_features
from pipeline_lib.spec import SpecError, Study, TriageSpec, load_study
from tests.conftest import TINY_STUDY, write_spec


def _study(**overrides) -> Study:
    return Study.model_validate({**TINY_STUDY, "width_transfer": {}, **overrides})


def test_rungs_and_keep_rules_parse(tmp_path):
    assert TriageSpec(at_epoch=2, keep=0.5).rungs == [2]  # the one-rung form before rungs
    triage = TriageSpec(rungs=[1, 2], reduction_factor=3)
    assert (triage.predictor, triage.policy, triage.keep_rule) == ("auto", "reduction 3", 1 / 3)
    bad = [({"rungs": [2, 1], "keep": 0.5}, "increasing order"),
           ({"rungs": [0], "keep": 0.5}, "increasing order"),
           ({"rungs": [1], "at_epoch": 1, "keep": 0.5}, "not both"),
           ({"rungs": [1]}, "give one keep rule"),
           ({"rungs": [1], "keep": 0.5, "reduction_factor": 2}, "give one keep rule"),
           ({"rungs": [1], "reduction_factor": 1}, "greater than or equal to 2"),
           ({"rungs": [1, 3], "keep": 0.5}, r"triage.rungs \[1, 3\] must be below epochs=3")]
    for triage, message in bad:
        with pytest.raises(SpecError, match=message):
            load_study(write_spec(tmp_path, triage=triage))


def test_reduction_factor_keeps_the_ceiling_of_one_in_eta():
    scores = pl.DataFrame({"run_id": [f"r{i}" for i in range(9)], "predicted": [i / 10 for i in range(9)],
                           "low": None, "high": None, "p_good": None}, schema_overrides={"low": pl.Float64,
                                                                                          "high": pl.Float64,
                                                                                          "p_good": pl.Float64})
    for eta, n in ((3, 9), (3, 7), (2, 5), (4, 1)):
        decided = decide(scores.head(n), TriageSpec(rungs=[1], reduction_factor=eta))
        kept = decided.filter(pl.col("decision") == "keep")["run_id"].to_list()
        assert len(kept) == -(-n // eta)  # ceil(n / eta) in integers: 9 / 3 keeps 3, not 4
        assert set(kept) == {f"r{i}" for i in range(n - len(kept), n)}  # the highest scored


def test_a_failed_or_diverged_run_does_not_block_its_rung():
    cohort = pl.DataFrame({"run_id": ["a", "b", "c", "d", "e"],
                           "status": ["running", "failed", "diverged", "running", "pending"],
                           "last_epoch": [2, 0, 1, 3, 1], "diverged_epoch": [None, None, 1, None, None]})
    ready, excluded = split_cohort(cohort, 2)
    assert ready == ["a", "d"]
    assert excluded == {"b": "failed", "c": "diverged at epoch 1", "e": "at epoch 1, short of the rung"}


def test_accuracy_at_the_rung_is_the_score():
    metrics = pl.DataFrame({"run_id": ["a", "a", "b", "b", "c"], "epoch": [1, 2, 1, 2, 2],
                            "test_acc": [0.3, 0.5, 0.6, 0.4, 0.9]})
    runs = pl.DataFrame({"run_id": ["a", "b"], "diverged_epoch": [None, None]}, schema_overrides={"diverged_epoch": pl.Int64})
    source = AccuracySource(2)
    assert source.feature_sets == ("early_acc",) and source.graph_properties is None and not source.has_p_good
    scores = source.score(base_set_features("early_acc", 2, runs, metrics), ["a", "b"], 0.9)
    assert dict(zip(scores["run_id"], scores["predicted"])) == {"a": 0.5, "b": 0.4}
    assert scores["low"].null_count() == 2
    assert decide(scores, TriageSpec(rungs=[2], keep=1)).filter(pl.col("decision") == "keep")["run_id"].to_list() == ["a"]


def test_every_difference_is_named():
    ours = _study(epochs=4, widths=[0.5, 2.0], train_metrics="exact", graphs={"pivots": 16})
    found = {m.name: m for m in mismatches(ours, _study(), reads_graphs=True)}
    assert set(found) == {"epochs", "widths", "train_metrics", "graphs.pivots"}
    assert found["train_metrics"].refused and not found["epochs"].refused
    assert str(found["epochs"]) == "epochs 4 here, 3 in the predictor's study"
    assert str(found["widths"]) == "widths [2.0] not seen by the predictor"
    # graph options matter only to a predictor that reads graph features
    assert {m.name for m in mismatches(ours, _study(), reads_graphs=False)} == {"epochs", "widths", "train_metrics"}
    assert mismatches(_study(), _study(), reads_graphs=True) == []
    other = {m.name for m in mismatches(_study(architectures=["vgg"], dataset={"name": "fashion_mnist", "subset": 400}),
                                   _study(), False)}
    assert other == {"dataset", "architectures"}


def _row(pid: str, study: str, feature_set: str = "hparams", **extra) -> RegisteredSource:
    return RegisteredSource({"id": pid, "study": study, "feature_set": feature_set, "predictor": "linear",
                             "oof_residuals": [0.1], **extra})


def test_auto_takes_a_matching_study_then_the_corpus_then_accuracy():
    ours = _study(name="new")
    longer, triaged, same = _study(name="longer", epochs=5), _study(name="cut"), _study(name="twin")
    candidates = [(_row("p1", "longer"), longer), (_row("p2", "cut", triaged=True), triaged),
                  (_row("p3", "gone"), None), (_row("p4", "twin"), same)]
    chosen = auto_source(ours, 1, candidates, corpus_source=None)
    assert (chosen.kind, chosen.id) == ("registered", "p4") and "its study matches" in chosen.reason

    corpus = CorpusSource({"id": "corpus-k1", "accuracy_gate": {"holds": True, "worse_on": []}})
    fallback = auto_source(ours, 1, candidates[:3], corpus)
    assert (fallback.kind, fallback.id) == ("corpus", "corpus-k1")
    for why in ("p1: epochs 3 here, 5 in the predictor's study", "p2: fitted on the kept runs of triaged study cut",
                "p3: study gone's spec is not recorded"):
        assert why in fallback.reason

    small = auto_source(ours, 1, [], corpus, cohort=7)  # the corpus predictor ranks 8 runs at least
    assert small.kind == "accuracy" and "ranks 8 runs together at least, the cohort has 7" in small.reason
    assert auto_source(ours, 1, [], corpus, cohort=8).kind == "corpus"

    # never worse than the raw rule: a corpus predictor that trails test accuracy on a held-out study
    # (or has no such comparison) is passed over for accuracy, and the reason names the studies
    losing = CorpusSource({"id": "corpus-k1", "accuracy_gate": {"holds": False, "worse_on": ["s1", "s2"]}})
    gated = auto_source(ours, 1, [], losing, cohort=8)
    assert gated.kind == "accuracy" and "ranks worse than test accuracy at epoch 1 (tau or top-5 kept) on held-out studies s1, s2" in gated.reason
    assert auto_source(ours, 1, [], CorpusSource({"id": "corpus-k1"}), cohort=8).kind == "accuracy"

    cold = auto_source(ours, 2, [], corpus_source=None)
    assert (cold.kind, cold.id, cold.row) == ("accuracy", None, None)
    assert "test accuracy at epoch 2 (i-Epoch rule)" in cold.reason


def test_a_named_predictor_of_another_study_is_refused_or_its_differences_kept():
    ours = _study(name="new", epochs=5)
    warned = named_source(ours, "tiny", _row("p1", "tiny"), _study())
    assert [str(m) for m in warned.mismatches] == ["epochs 5 here, 3 in the predictor's study"]
    with pytest.raises(ScoringError, match="train_metrics 'exact' here, 'epoch' in the predictor's study"):
        named_source(_study(train_metrics="exact"), "tiny", _row("p1", "tiny"), _study())
    assert [m.name for m in named_source(ours, "p1", _row("p1", "tiny"), None).mismatches] == ["study spec"]


def test_savings_in_seconds():
    runs = pl.DataFrame({"run_id": ["kept", "stopped", "failed"], "status": ["completed", "stopped", "failed"],
                         "epochs": [4, 4, 4], "epochs_done": [4, 1, 0], "final_test_acc": [0.9, None, None]})
    epochs = pl.DataFrame({"run_id": ["kept"] * 5 + ["stopped"] * 2 + ["failed"],
                           "epoch": [0, 1, 2, 3, 4, 0, 1, 0],
                           "seconds": [0.5, 2.0, 2.0, 2.0, 2.0, 0.5, 3.0, 0.5]})
    row = triage_savings(runs, epochs, decision_seconds=1.5)
    trained = 8.5 + 3.5 + 0.5
    train_all = trained + 3 * 3.0  # the stopped run's 3 remaining epochs at its 3 s per epoch
    assert row["train_all_seconds"] == pytest.approx(train_all)
    assert row["seconds"] == pytest.approx(trained + 1.5)
    assert row["fraction"] == pytest.approx((trained + 1.5) / train_all)
    assert (row["runs_to_end"], row["best_final_acc"]) == (1, 0.9)
    assert math.isclose(row["epoch_seconds"], (2.0 + 3.0) / 2)


def test_a_corpus_triage_that_cannot_finish_is_refused_before_training(monkeypatch):
    """No warehouse yet (the corpus ships with the project): `predictor: corpus` is checked without one;
    a cohort the spec makes smaller than the corpus predictor's minimum, and a P(good) rule that
    leaves an unknown cohort for the next rung, are refused before anything trains, saying what to do."""
    from stages.triage import TriageError, check, planned_cohorts

    monkeypatch.delenv(CORPUS_ENV, raising=False)  # the shipped corpus
    six = _study(name="six", samples=3, widths=[1.0], seeds=[0, 1], triage={"rungs": [1], "keep": 0.5,
                                                                          "predictor": "corpus"})
    with pytest.raises(TriageError, match="needs at least 8 of them at epoch 1; this study's cohort there has 6. Add runs"):
        check(None, six)
    sixteen = dict(samples=4, widths=[1.0, 2.0], seeds=[0, 1])
    assert planned_cohorts(_study(name="a", **sixteen, triage={"rungs": [1, 2], "keep": 0.25})) == {1: 16, 2: 4}
    check(None, _study(name="ok", **sixteen, triage={"rungs": [1], "keep": 0.5, "predictor": "corpus"}))
    with pytest.raises(TriageError, match="needs at least 8 of them at epoch 2; this study's cohort there has 4"):
        check(None, _study(name="b", **sixteen, triage={"rungs": [1, 2], "keep": 0.25, "predictor": "corpus"}))
    with pytest.raises(TriageError, match="leaves an unknown number of runs for epoch 2"):
        check(None, _study(name="c", **sixteen, triage={"rungs": [1, 2], "keep": {"p_good": 0.5}, "predictor": "corpus"}))
