"""Triage in the training flow: runs trained rung by rung, scored there by a registered predictor (or,
cold, by their accuracy at the rung); the kept runs trained on, the others stopped; decided once per
rung, so a re-run or a resume after kill -9 changes nothing that was decided; a predictor of a study
unlike this one refused or its differences recorded by name (real CLI, Prefect, DuckDB, tiny digits
runs)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline_lib.corpus import CORPUS_ENV
from pipeline_lib.datasets import load_dataset
from flows.triage import check_triage
from pipeline_lib.decisions.registry import fit_on_all
from pipeline_lib.decisions.replay import Curves, simulate_rungs
from pipeline_lib.decisions.rung_scores import accuracy_scorer
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.decisions.path_cost import columns_used, properties_read
from pipeline_lib.decisions.triage import TriageError, decide
from pipeline_lib.layout import DataLayout
from pipeline_lib.spec import KeepPGood, Study, TriageSpec, expand_runs, load_study
from pipeline_lib.run_state import RunStore
from pipeline_lib.training import train_run
from tests.conftest import TINY_STUDY, write_spec
from warehouse.db import Warehouse
from pipeline_lib.report.triage import triage_section
from warehouse.predict import graph_ready_runs, report_tables, study_runs

ROOT = Path(__file__).resolve().parents[1]
K = 1
# 2 configurations x 2 seeds of LeNet on 400 digits, 3 epochs; half of them kept after epoch 1
TRIAGED = {"name": "triaged", "widths": [1.0], "samples": 2, "epochs": 3, "width_transfer": {},
           "triage": {"predictor": "tiny", "at_epoch": K, "keep": 0.5}}


@pytest.fixture(autouse=True)
def without_the_corpus(tmp_path_factory, monkeypatch):
    """A checkout without the corpus: `auto` falls back to accuracy (the corpus' own cold start:
    test_cold_start_with_the_shipped_corpus_predictor)."""
    monkeypatch.setenv(CORPUS_ENV, str(tmp_path_factory.mktemp("no-corpus")))


def _cli(spec: Path, warehouse: Path, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own temporary server, as a user's
    return subprocess.Popen([sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse",
                             str(warehouse)], cwd=ROOT, env=env, text=True, **popen)


def _files(data_dir: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in data_dir.rglob("*") if p.is_file()}


def test_refuses_before_prefect_starts(registered_tiny, tmp_path):
    registered = registered_tiny
    hparams = registered.query("""SELECT id FROM predictors WHERE study = 'tiny' AND k = 1 AND task = 'regression'
                                  AND feature_set = 'hparams' AND predictor = 'linear'""")["id"][0]
    with registered.writer() as con:  # a study whose one predictor has no classification twin
        con.execute("""INSERT INTO predictors SELECT * REPLACE ('lonely' AS id, 'lonely' AS study)
                       FROM predictors WHERE id = ?""", [hparams])
    cases = [({"predictor": "nope"}, ScoringError, "no registered predictor 'nope'"),
             ({"at_epoch": 2}, ScoringError, "no registered regression predictor at k = 2 of study 'tiny'"),
             ({"predictor": "lonely", "keep": {"p_good": 0.5}}, TriageError, "needs a calibrated classification twin")]
    for change, error, message in cases:
        spec = write_spec(tmp_path, **dict(TRIAGED, triage={**TRIAGED["triage"], **change}))
        with pytest.raises(error, match=message):
            check_triage(str(registered.path), load_study(spec))
    with registered.writer() as con:
        con.execute("DELETE FROM predictors WHERE id = 'lonely'")
    with pytest.raises(TriageError, match="does not exist"):
        check_triage(str(tmp_path / "none.duckdb"), load_study(write_spec(tmp_path, **TRIAGED)))
    # predictor auto needs no warehouse (accuracy at the rung), unless keeping by P(good)
    auto = dict(TRIAGED, triage={**TRIAGED["triage"], "predictor": "auto"})
    check_triage(str(tmp_path / "none.duckdb"), load_study(write_spec(tmp_path, **auto)))
    with pytest.raises(TriageError, match="needs a predictor with a calibrated classification twin"):
        check_triage(str(tmp_path / "none.duckdb"),
                     load_study(write_spec(tmp_path, **dict(auto, triage={**auto["triage"], "keep": {"p_good": 0.5}}))))
    assert not (tmp_path / "none.duckdb").exists()

    spec = write_spec(tmp_path, **dict(TRIAGED, triage=dict(TRIAGED["triage"], predictor="nope")))
    done = subprocess.run([sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse",
                           str(registered.path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: no registered predictor 'nope'"), done.stderr
    assert "Traceback" not in done.stderr and "Starting temporary server" not in done.stderr
    assert registered.query("SELECT count(*) AS n FROM runs WHERE study = 'triaged'")["n"][0] == 0


def test_keep_rules():
    scores = pl.DataFrame({"run_id": ["a", "b", "c", "d", "e"], "predicted": [0.5, 0.9, 0.7, 0.9, 0.1],
                           "low": 0.0, "high": 1.0, "p_good": [0.2, 0.8, None, 0.6, 0.7], "rank": 0})
    kept = lambda keep: set(decide(scores, TriageSpec(at_epoch=1, keep=keep))  # noqa: E731
                            .filter(pl.col("decision") == "keep")["run_id"])
    assert kept(0.5) == {"b", "d", "c"}  # ceil(2.5) = 3 best predicted
    assert kept(0.2) == {"b"} and kept(1) == {"b"}  # the tie at 0.9 goes to the lower run id
    assert kept(10) == set("abcde")
    assert kept(KeepPGood(p_good=0.6)) == {"b", "d", "e"}  # no P(good): stopped
    ranks = decide(scores, TriageSpec(at_epoch=1, keep=2)).sort("rank")
    assert ranks["run_id"].to_list() == ["b", "d", "c", "a", "e"] and ranks["rank"].to_list() == [1, 2, 3, 4, 5]
    unscored = scores.with_columns(pl.Series("predicted", [0.5, float("nan"), 0.7, None, 0.1]))
    assert decide(unscored, TriageSpec(at_epoch=1, keep=2)).sort("rank")["run_id"].to_list() == ["c", "a", "e", "b", "d"]


def test_graph_properties_are_those_the_fitted_model_selects():
    """Only the columns the pipeline's selection keeps count: closeness is read only if selected."""
    rng = np.random.default_rng(0)
    y = rng.uniform(0.2, 0.9, 80)
    strong = ["depth:0/eigenvector/mean@e1", "graph/strength/cv@d1", "test_acc@k"]
    noise = [f"graph/closeness/q{i}@e1" for i in range(70)]
    X = np.column_stack([y + rng.normal(0, 0.01, 80) for _ in strong] + [rng.normal(size=80) for _ in noise])
    targets = pl.DataFrame({"config_id": [f"c{i // 2}" for i in range(80)], "final_acc": y, "good": (y > 0.5) * 1})
    model = fit_on_all("regression", "linear", X, targets)
    used = columns_used(model, strong + noise)
    assert len(used) == 64 and set(strong) <= set(used)  # at most 64 columns kept: the strong three among them
    assert properties_read(used) == ("strength", "eigenvector", "closeness")  # 61 of 70 noise columns kept
    assert properties_read(strong) == ("strength", "eigenvector")
    assert properties_read(["graph/perron_value/log@d1", "test_acc@k", "lr"]) == ()


@pytest.mark.slow
def test_triage_keeps_the_best_runs_and_survives_kill_9_and_reruns(registered_tiny, tmp_path, prefect_harness):
    spec, wh = write_spec(tmp_path, **TRIAGED), registered_tiny
    study = load_study(spec)
    data_dir = wh.data_dir

    # 1. killed (the whole process group, -9) once the decisions are written, before the kept runs go on
    flow = _cli(spec, wh.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen, deadline = [], time.monotonic() + 400
    for line in flow.stdout:
        seen.append(line)
        if "triage of triaged at epoch 1" in line or time.monotonic() > deadline:
            break
    os.killpg(flow.pid, signal.SIGKILL)
    flow.wait(timeout=30)
    assert any("triage of triaged at epoch 1" in line for line in seen), "".join(seen[-30:])
    decided = wh.query("SELECT * FROM triage_decisions WHERE study = 'triaged' ORDER BY run_id")
    assert decided.height == 4

    # 2. the same command resumes: decisions kept, kept runs finished, the others stopped at epoch k
    resumed = _cli(spec, wh.path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    decisions = wh.query("SELECT * FROM triage_decisions WHERE study = 'triaged' ORDER BY run_id")
    assert decisions.equals(decided)

    # the predictor: study tiny's regression predictor at k = 1 of highest pooled Kendall tau (ties: lowest id)
    rows = wh.query("SELECT id, metrics_json FROM predictors WHERE study = 'tiny' AND task = 'regression' AND k = 1")
    taus = {r["id"]: json.loads(r["metrics_json"])["kendall_tau"]["value"] for r in rows.iter_rows(named=True)}
    assert set(decisions["predictor_id"]) == {min(taus, key=lambda i: (-taus[i], i))}
    # the rule, from the stored scores: the best ceil(0.5 x 4) = 2 predicted runs are kept
    scores = wh.query("SELECT run_id, predicted, low, high, p_good FROM scores WHERE study = 'triaged' AND k = 1")
    best = sorted(scores.iter_rows(named=True), key=lambda r: (-r["predicted"], r["run_id"]))[:math.ceil(0.5 * 4)]
    kept = set(decisions.filter(pl.col("decision") == "keep")["run_id"])
    assert kept == {r["run_id"] for r in best} and len(kept) == 2
    joined = decisions.join(scores, on="run_id", suffix="_score")
    for column in ("predicted", "low", "high", "p_good"):
        np.testing.assert_allclose(joined[column], joined[f"{column}_score"])
    assert set(decisions["keep_policy"]) == {"fraction 0.5"} and set(decisions["rung"]) == {1}
    # named in the spec; tiny's spec is not recorded in this warehouse, which is recorded and warned
    assert set(decisions["source"]) == {"registered"}
    assert decisions["mismatches"].to_list() == [["study spec 'recorded' here, 'not recorded' in the predictor's study"]] * 4

    runs = wh.query("SELECT run_id, status, epochs_done, final_test_acc FROM runs WHERE study = 'triaged'")
    assert runs.height == 4
    for r in runs.iter_rows(named=True):
        snaps = sorted(p.parent.name for p in (data_dir / "snapshots" / f"run_id={r['run_id']}").glob("*/*.parquet"))
        state = RunStore(data_dir, r["run_id"]).load()
        if r["run_id"] in kept:
            assert (r["status"], r["epochs_done"], state.status) == ("completed", 3, "completed")
            assert snaps == ["epoch=0", "epoch=1", "epoch=2", "epoch=3"] and r["final_test_acc"] is not None
        else:
            assert (r["status"], r["epochs_done"], state.status) == ("stopped", 1, "stopped")
            assert snaps == ["epoch=0", "epoch=1"] and r["final_test_acc"] is None and state.model is None
    assert set(study_runs(wh, "triaged")["run_id"]) == kept  # stopped runs never become training targets

    # a kept run, paused at epoch 1 and continued after the kill, trained as it is alone without a pause
    config = next(c for c in expand_runs(study) if c.run_id in kept)
    alone = train_run(config, load_dataset("digits", subset=400), tmp_path / "alone")
    stored = wh.query("SELECT * FROM epoch_metrics WHERE run_id = ? ORDER BY epoch", [config.run_id])
    assert stored["epoch"].to_list() == [m.epoch for m in alone.metrics]
    np.testing.assert_allclose(stored["test_loss"], [m.test_loss for m in alone.metrics], rtol=1e-4)
    np.testing.assert_allclose(stored["train_loss"], [m.train_loss for m in alone.metrics], rtol=1e-4)

    # 3. a re-run trains, decides and writes nothing
    from flows.train_sweep import train_sweep

    before = _files(data_dir)
    counts = train_sweep(str(spec), str(wh.path))
    assert counts == {"completed": 2, "stopped": 2}
    assert _files(data_dir) == before
    assert wh.query("SELECT * FROM triage_decisions WHERE study = 'triaged' ORDER BY run_id").equals(decided)
    assert not (DataLayout(data_dir).snapshot(sorted(set(runs["run_id"]) - kept)[0], 2)).exists()

    # the report's section: 2 kept to epoch 3 and 2 stopped at epoch 1 = 8 of the 12 epochs of training all
    tables = report_tables(wh, "triaged")
    section = "\n".join(triage_section(tables["triage"], tables["triage_rungs"], tables["costs"]))
    assert "Epoch 1: 2 of 4 runs kept (fraction 0.5)" in section and "Epochs trained: 8 of the 12" in section
    assert section.count("| keep ") == 2 and section.count("| stop ") == 2

    # the savings in seconds: every recorded epoch plus the decision's work, against training all
    saved = wh.query("SELECT * FROM costs WHERE study = 'triaged' AND strategy = 'triage'").row(0, named=True)
    trained = wh.query("""SELECT sum(m.seconds) AS s FROM epoch_metrics m JOIN runs r USING (run_id)
                          WHERE r.study = 'triaged'""")["s"][0]
    work = decisions["graph_seconds"][0] + decisions["scoring_seconds"][0]
    assert saved["seconds"] == pytest.approx(trained + work) and saved["decision_seconds"] == pytest.approx(work)
    assert saved["train_all_seconds"] > trained and saved["runs_to_end"] == 2


def _copy_predictors(wh: Warehouse, study: dict) -> None:
    """Study tiny's predictors registered again as those of `study` (its spec recorded)."""
    from warehouse.runs import record_study

    record_study(wh, Study.model_validate(study))
    with wh.writer() as con:
        con.execute("""INSERT OR REPLACE INTO predictors SELECT * REPLACE (id || '-' || ? AS id, ? AS study)
                       FROM predictors WHERE study = 'tiny'""", [study["name"], study["name"]])


def test_a_predictor_of_another_study_is_refused_or_warned_by_name(registered_tiny, tmp_path):
    from stages.context import StudyContext
    from stages.score import study_differences
    from stages.triage import rung_source
    from warehouse.registry import registered_source

    wh = registered_tiny
    base = {**TINY_STUDY, "width_transfer": {}}
    for name, change in (("exact-metrics", {"train_metrics": "exact"}), ("longer", {"epochs": 5}), ("alike", {})):
        _copy_predictors(wh, {**base, "name": name, **change})
    ours = lambda predictor: load_study(write_spec(  # noqa: E731
        tmp_path, **dict(base, name="new-sweep", triage={"predictor": predictor, "rungs": [1], "keep": 0.5})))

    with pytest.raises(ScoringError, match="train_metrics 'epoch' here, 'exact' in the predictor's study"):
        rung_source(wh, ours("exact-metrics"), 1)
    longer = rung_source(wh, ours("longer"), 1)
    assert [str(m) for m in longer.mismatches] == ["epochs 3 here, 5 in the predictor's study"]
    # auto takes only the matching study's predictor, and says why the others were passed over
    auto = rung_source(wh, ours("auto"), 1)
    assert auto.kind == "registered" and auto.study == "alike" and not auto.mismatches
    # flows.score's stage: the same refusal and named differences for a predictor of another study
    context = StudyContext(ours("auto"), wh, ours("auto").execution, orchestration=None)
    of = lambda study: registered_source(wh, wh.query("SELECT id FROM predictors WHERE study = ? LIMIT 1",  # noqa: E731
                                                      [study])["id"][0])
    assert [m.name for m in study_differences(context, of("longer"))] == ["epochs"]
    with pytest.raises(ScoringError, match="train_metrics"):
        study_differences(context, of("exact-metrics"))
    with wh.writer() as con:
        for name in ("exact-metrics", "longer", "alike"):
            con.execute("DELETE FROM predictors WHERE study = ?", [name])
            con.execute("DELETE FROM studies WHERE study = ?", [name])


def test_a_triaged_studys_predictors_are_marked_and_auto_passes_them_over(tmp_path):
    from stages.triage import rung_source
    from tests.conftest import registered_warehouse
    from warehouse.db import upsert
    from warehouse.runs import record_study

    path = tmp_path / "w.duckdb"
    stop = pl.DataFrame([{"study": "tiny", "run_id": "gone", "rung": 1, "source": "accuracy", "source_reason": "-",
                          "mismatches": [], "predicted": 0.1, "confidence": 0.9, "rank": 1,
                          "keep_policy": "fraction 0.5", "decision": "stop", "graph_seconds": 0.0,
                          "scoring_seconds": 0.0, "decided_at": datetime(2026, 1, 1)}],
                        schema_overrides={"mismatches": pl.List(pl.Utf8)})
    with Warehouse(path).writer() as con:
        upsert(con, "triage_decisions", stop)
    wh = registered_warehouse(path, 1)
    assert set(wh.query("SELECT triaged FROM predictors WHERE study = 'tiny'")["triaged"]) == {True}
    record_study(wh, Study.model_validate({**TINY_STUDY, "predict": {"k_epochs": [1], "n_folds": 3}}))
    new = load_study(write_spec(tmp_path, **dict(TINY_STUDY, name="new-sweep",
                                                 triage={"rungs": [1], "keep": 0.5})))
    source = rung_source(wh, new, 1)
    assert source.kind == "accuracy" and "fitted on the kept runs of triaged study tiny" in source.reason


@pytest.mark.slow
def test_cold_start_triage_decides_each_rung_by_accuracy(tmp_path, prefect_harness):
    """A brand-new warehouse, nothing registered, no corpus predictor: `auto` scores by the test
    accuracy at each rung; the cohort of a rung is the runs kept at the one before, and stacked
    groups go on with only their kept members."""
    from flows.train_sweep import train_sweep

    spec = write_spec(tmp_path, **dict(TINY_STUDY, name="cold", width_transfer={},
                                       triage={"rungs": [1, 2], "keep": 0.5}))
    wh_path = tmp_path / "cold.duckdb"
    check_triage(str(wh_path), load_study(spec))  # no refusal, and no warehouse created by the check
    assert not wh_path.exists()
    assert train_sweep(str(spec), str(wh_path)) == {"completed": 2, "stopped": 6}
    wh = Warehouse(wh_path)
    decisions = wh.query("SELECT * FROM triage_decisions WHERE study = 'cold'")
    assert set(decisions["source"]) == {"accuracy"} and decisions["predictor_id"].null_count() == decisions.height
    assert "test accuracy at epoch 1 (i-Epoch rule)" in decisions.filter(pl.col("rung") == 1)["source_reason"][0]
    metrics = wh.query("SELECT run_id, epoch, test_acc FROM epoch_metrics")
    cohort = set(wh.query("SELECT run_id FROM runs WHERE study = 'cold'")["run_id"])
    assert len(cohort) == 8
    for rung in (1, 2):
        at = decisions.filter(pl.col("rung") == rung)
        assert set(at["run_id"]) == cohort
        accs = {r: a for r, e, a in metrics.iter_rows() if e == rung and r in cohort}
        best = sorted(cohort, key=lambda r: (-accs[r], r))[:math.ceil(len(cohort) / 2)]
        cohort = set(at.filter(pl.col("decision") == "keep")["run_id"])
        assert cohort == set(best)
    runs = {r["run_id"]: r for r in wh.query("SELECT * FROM runs WHERE study = 'cold'").iter_rows(named=True)}
    stopped_at = dict(decisions.filter(pl.col("decision") == "stop").select("run_id", "rung").iter_rows())
    for run_id, run in runs.items():
        assert (run["status"], run["epochs_done"]) == (("completed", 3) if run_id in cohort else ("stopped", stopped_at[run_id]))
    groups = [set(g) for g in wh.query("SELECT run_ids FROM training_groups WHERE study = 'cold'")["run_ids"]]
    assert set().union(*[g for g in groups if g <= cohort]) == cohort  # the last phase stacked the kept runs only
    # the savings row is there; on runs this tiny, whether decisions cost less than the epochs they save is
    # a matter of timing, which belongs to benchmarks (docs/benchmarks.md), not to this test
    saved = wh.query("SELECT fraction FROM costs WHERE study = 'cold' AND strategy = 'triage'")["fraction"][0]
    assert saved > 0
    # The replay's synchronous triage on the curves this sweep recorded (a stopped run's end at its stop rung;
    # the decisions read no final accuracy) decides each rung as the flow did, by the study's own TriageSpec,
    # and trains each run as far as the flow did.
    study = load_study(spec)
    curves = Curves.from_frames(wh.query("SELECT run_id, epoch, test_acc, seconds FROM epoch_metrics"),
                                wh.query("SELECT run_id, coalesce(final_test_acc, 'NaN'::DOUBLE) AS final_acc "
                                         "FROM runs WHERE study = 'cold'"), [c.run_id for c in expand_runs(study)])
    replayed: dict[int, pl.DataFrame] = {}
    out = simulate_rungs(curves, np.arange(len(curves.run_ids)), study.triage, accuracy_scorer(curves), 2,
                         on_decision=replayed.__setitem__)
    assert sorted(replayed) == study.triage.rungs == [1, 2]
    for rung, made in replayed.items():
        recorded = decisions.filter(pl.col("rung") == rung)
        for decision in ("keep", "stop"):
            assert set(made.filter(pl.col("decision") == decision)["run_id"]) == \
                set(recorded.filter(pl.col("decision") == decision)["run_id"]), (rung, decision)
        columns = ["run_id", "predicted", "rank", "decision"]
        assert made.select(columns).sort("run_id").equals(recorded.select(columns).sort("run_id"))
    assert dict(zip(curves.run_ids, out.epochs.tolist())) == {r: run["epochs_done"] for r, run in runs.items()}
    assert {r for r, kept in zip(curves.run_ids, out.kept) if kept} == cohort


@pytest.mark.slow
def test_cold_start_with_the_shipped_corpus_predictor(tmp_path, prefect_harness, monkeypatch):
    """A new warehouse in this checkout, which ships the corpus: `predictor: corpus` takes the corpus
    predictor at the rung, computes the graphs it reads (epochs 0..rung) and keeps the runs it ranks
    best. (`auto` passes it over while its card's accuracy gate fails: test_triage_rungs.)"""
    from flows.train_sweep import train_sweep

    monkeypatch.delenv(CORPUS_ENV)
    spec = write_spec(tmp_path, **dict(TINY_STUDY, name="cold-corpus", width_transfer={},
                                       triage={"rungs": [1], "keep": 0.5, "predictor": "corpus"}))
    wh_path = tmp_path / "w.duckdb"
    assert train_sweep(str(spec), str(wh_path)) == {"completed": 4, "stopped": 4}
    wh = Warehouse(wh_path)
    decisions = wh.query("SELECT * FROM triage_decisions WHERE study = 'cold-corpus'")
    assert set(decisions["source"]) == {"corpus"} and set(decisions["predictor_id"]) == {"corpus-k1"}
    assert decisions["source_reason"][0] == "named in the spec: corpus"
    scores = wh.query("SELECT run_id, predicted FROM scores WHERE study = 'cold-corpus' AND predictor_id = 'corpus-k1'")
    assert scores.height == 8 and scores["predicted"].is_between(0, 1).all()  # within-study percentiles
    best = scores.sort(["predicted", "run_id"], descending=[True, False])["run_id"][:4]
    assert set(decisions.filter(pl.col("decision") == "keep")["run_id"]) == set(best)
    assert graph_ready_runs(wh, "cold-corpus", 1).height == 8  # what the predictor read


def test_a_recorded_triage_starts_over_with_the_command_its_refusal_names(tmp_path):
    """A triage already decided refused a changed spec, and its advice (delete rows of a table) left the
    stopped runs stopped; `--restart-triage` forgets the decisions and trains the stopped runs again."""
    from flows._cli import command_parser
    from flows.triage import restart_triage
    from stages import train_sweep as train_stage
    from stages.local import local_context

    triage = {"predictor": "auto", "rungs": [1], "keep": 0.5}  # no corpus here: accuracy at the rung
    spec = write_spec(tmp_path, samples=2, width_transfer={}, triage=triage)
    warehouse = tmp_path / "w.duckdb"
    with local_context(spec, warehouse) as ctx:
        assert train_stage.run(ctx) == {"completed": 4, "stopped": 4}
    wh = Warehouse(warehouse)
    stopped = wh.query("SELECT run_id FROM runs WHERE status = 'stopped' ORDER BY run_id")["run_id"].to_list()

    changed = write_spec(tmp_path, samples=2, width_transfer={}, triage={**triage, "keep": 0.75})
    with pytest.raises(TriageError, match="start over with python -m flows.train_sweep --spec SPEC --warehouse "
                                          "WAREHOUSE --restart-triage"):
        check_triage(str(warehouse), load_study(changed))
    args = command_parser("train_sweep", "").parse_args(["--spec", str(changed), "--warehouse", str(warehouse),
                                                        "--restart-triage"])
    assert args.restart_triage
    restart_triage(str(warehouse), load_study(changed))
    assert wh.query("SELECT count(*) AS n FROM triage_decisions")["n"][0] == 0
    assert not any(RunStore(wh.data_dir, r).path.exists() for r in stopped)
    check_triage(str(warehouse), load_study(changed))  # no longer refused
    with local_context(changed, warehouse) as ctx:
        assert train_stage.run(ctx) == {"completed": 6, "stopped": 2}
    decided = wh.query("SELECT DISTINCT keep_policy FROM triage_decisions")["keep_policy"].to_list()
    assert decided == [load_study(changed).triage.policy]


def test_a_rung_reads_each_predictor_file_once(registered_tiny, tmp_path, monkeypatch):
    """Checking the rung's source, learning what it reads and scoring the cohort share one load of the
    predictor and one of its twin (the loader itself counted, on the real files)."""
    from pipeline_lib.decisions import registry
    from stages.context import StudyContext
    from stages.triage import decide_rung
    from tests.conftest import add_runs

    wh = registered_tiny
    pid = wh.query("""SELECT id FROM predictors WHERE study = 'tiny' AND k = 1 AND task = 'regression'
                      AND feature_set = 'early_acc' AND predictor = 'linear'""")["id"][0]
    add_runs(wh, "read-once", [0.2, 0.4, 0.6, 0.8], 1, last_epoch=1, status="pending")
    study = load_study(write_spec(tmp_path, **dict(TINY_STUDY, name="read-once", width_transfer={},
                                                   triage={"predictor": pid, "rungs": [1], "keep": 0.5})))
    loaded, load = [], registry.load
    monkeypatch.setattr(registry, "load", lambda path, *args: loaded.append(Path(path).name) or load(path, *args))
    decisions = decide_rung(StudyContext(study, wh, study.execution, orchestration=None), 1)
    assert decisions.height == 4 and decisions["p_good"].null_count() == 0  # P(good): the twin was read
    assert len(loaded) == 2 and len(set(loaded)) == 2, loaded


def test_each_source_declares_what_its_fitted_models_read(tmp_path, monkeypatch):
    """A graph predictor and its twin, saved and read back, and the shipped corpus predictor: the node
    properties a source declares are those behind the columns their fitted selections keep."""
    import skops.io as sio

    from pipeline_lib.decisions import corpus, registry
    from pipeline_lib.decisions.sources import AccuracySource, CorpusSource, RegisteredSource
    from pipeline_lib.fingerprints import predictor_pins

    rng = np.random.default_rng(0)
    y = rng.uniform(0.2, 0.9, 80)
    strong = ["depth:0/eigenvector/mean@e1", "graph/strength/cv@d1", "test_acc@k"]
    noise = [f"graph/closeness/q{i}@e1" for i in range(70)] + [f"graph/katz/q{i}@e1" for i in range(70)]
    X = np.column_stack([y + rng.normal(0, 0.01, 80) for _ in strong] + [rng.normal(size=80) for _ in noise])
    targets = pl.DataFrame({"config_id": [f"c{i // 2}" for i in range(80)], "final_acc": y, "good": (y > 0.5) * 1})
    rows = {}
    for task in ("regression", "classification"):
        path = tmp_path / f"{task}.skops"
        digest = registry.save(fit_on_all(task, "linear", X, targets), path)
        rows[task] = {"id": task, "study": "s", "k": 1, "feature_set": "graph+learning_curve", "features": strong + noise,
                      "path": str(path), "file_digest": digest, "code_digest": predictor_pins(),
                      "calibration": [1.0, 0.0] if task == "classification" else None}
    source = RegisteredSource(rows["regression"], rows["classification"])
    used = [c for task in rows for c in columns_used(registry.load(rows[task]["path"], rows[task]["file_digest"],
                                                                   predictor_pins()), strong + noise)]
    assert source.graph_properties == properties_read(used) and "closeness" in source.graph_properties
    assert source.feature_sets == ("graph", "learning_curve") and source.min_cohort == 1 and source.has_p_good
    assert not RegisteredSource(rows["regression"]).has_p_good
    assert set(RegisteredSource(rows["regression"]).graph_properties) <= set(source.graph_properties)

    monkeypatch.delenv(CORPUS_ENV, raising=False)  # the shipped corpus predictor
    shipped = CorpusSource(corpus.predictor_row(1))
    files = [shipped.row["path"], shipped.row["twin_path"]]
    models = [sio.load(f, trusted=[*sio.get_untrusted_types(file=f)]) for f in files]
    declared = properties_read([c for m in models for c in columns_used(m, shipped.row["features"])])
    assert shipped.graph_properties == (declared if shipped.reads_graphs else None)
    assert shipped.min_cohort == corpus.MIN_RUNS and shipped.has_p_good
    assert AccuracySource(1).feature_sets == ("early_acc",) and AccuracySource(1).graph_properties is None
