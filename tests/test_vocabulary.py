"""One vocabulary: DuckDB itself refuses a run status, task, predictor, split, triage decision or
cost strategy the enums do not name, and a warehouse made before the checks gains them without
losing a row."""
from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from pipeline_lib.datasets import load_dataset
from pipeline_lib.vocabulary import (DATASETS, FITTED_PREDICTORS, CostStrategy, Decision, Predictor, RunStatus, Split,
                                     Task)
from warehouse.db import SCHEMA_DIR, Warehouse

RUN = ("INSERT INTO runs (study, run_id, config_id, architecture, width, depth, dataset, lr, dropout, weight_decay, "
       "optimizer, batch_size, seed, epochs, status, epochs_done, updated_at) "
       "VALUES ('s', ?, 'c', 'lenet', 1.0, 1, 'digits', 0.1, 0.0, 0.0, 'sgd', 32, 0, 3, ?, 0, TIMESTAMP '2026-01-01')")
EVALUATION = ("INSERT INTO evaluations (study, task, predictor, feature_set, k, split, metric, n, folds, value) "
              "VALUES ('s', ?, ?, 'graph', 1, ?, 'kendall_tau', 10, 5, ?)")
PREDICTION = ("INSERT INTO predictions (study, task, predictor, feature_set, k, split, run_id, fold, y_true, y_pred) "
              "VALUES ('s', ?, ?, 'graph', 1, ?, ?, 0, 0.5, 0.4)")
PREDICTOR = ("INSERT INTO predictors (id, study, dataset, architectures, widths, feature_set, k, task, predictor, "
             "runs_used, metrics_json, features, path, file_digest, code_digest, created) "
             "VALUES (?, 's', 'digits', ['lenet'], [1.0], 'graph', 1, ?, ?, 10, '{}', ['f'], 'p', 'd', 'c', "
             "TIMESTAMP '2026-01-01')")
COST = ("INSERT INTO costs (study, strategy, k, seconds, fraction, runs_to_end, detail) "
        "VALUES ('s', ?, 1, ?, 0.5, 3, 'd')")
DECISION = ("INSERT INTO triage_decisions (study, run_id, rung, source, source_reason, predictor_id, mismatches, "
            "predicted, low, high, confidence, rank, keep_policy, decision, graph_seconds, scoring_seconds, decided_at) "
            "VALUES ('s', ?, 1, 'registered', 'named', 'p', [], 0.5, 0.4, 0.6, 0.9, 1, 'top 1', ?, 0, 0, "
            "TIMESTAMP '2026-01-01')")
OLD_DECISION = ("INSERT INTO triage_decisions (study, run_id, predictor_id, at_epoch, predicted, low, high, confidence, "
                "rank, keep_policy, decision, decided_at) "
                "VALUES ('s', ?, 'p', 1, 0.5, 0.4, 0.6, 0.9, 1, 'top 1', ?, TIMESTAMP '2026-01-01')")
SPLITS = [Split.CV, Split.WIDTH_TRANSFER, Split.WIDTH_TRANSFER_REVERSE, Split.CV_PREFIX.of("lenet"),
          Split.LEAVE_OUT_PREFIX.of("vgg")]


def _refused(wh: Warehouse, sql: str, params: list) -> bool:
    """Whether DuckDB rejects the insert by a constraint (the transaction is rolled back)."""
    try:
        with wh.writer() as con:
            con.execute(sql, params)
    except duckdb.ConstraintException:
        return True
    return False


def test_the_warehouse_accepts_the_vocabulary_and_refuses_other_words(tmp_path):
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.writer() as con:
        for i, status in enumerate(RunStatus):
            con.execute(RUN, [f"r{i}", status])
        for i, (task, predictor, split) in enumerate((t, p, s) for t in Task for p in Predictor for s in SPLITS):
            con.execute(EVALUATION, [task, predictor, split, float(i)])
            con.execute(PREDICTION, [task, predictor, split, f"r{i}"])
        for task in Task:
            for predictor in FITTED_PREDICTORS:
                con.execute(PREDICTOR, [f"{task}-{predictor}", task, predictor])
        for i, strategy in enumerate(CostStrategy):
            con.execute(COST, [strategy, float(i)])
        for decision in Decision:
            con.execute(DECISION, [f"r{decision}", decision])
    counts = wh.query("SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM evaluations) AS evaluations, "
                      "(SELECT count(*) FROM predictors) AS predictors, (SELECT count(*) FROM costs) AS costs, "
                      "(SELECT count(*) FROM triage_decisions) AS decisions").row(0)
    assert counts == (6, 2 * 3 * 5, 2 * 2, len(CostStrategy), 2)

    assert _refused(wh, RUN, ["bad", "finished"])
    assert _refused(wh, RUN, ["bad", "Completed"])
    assert _refused(wh, EVALUATION, ["ranking", "linear", "cv", 0.0])
    assert _refused(wh, EVALUATION, ["regression", "ridge", "cv", 0.0])
    for split in ("CV", "cv:", "leave_out", "width-transfer", "transfer:lenet"):
        assert _refused(wh, EVALUATION, ["regression", "linear", split, 0.0]), split
        assert _refused(wh, PREDICTION, ["regression", "linear", split, "x"]), split
    # the noise ceiling is evaluated, never registered
    assert _refused(wh, PREDICTOR, ["x", "regression", "other_seeds"])
    for strategy in ("train-all", "TRAIN_ALL", "early_stop", "predict_then_finish:1", ""):
        assert _refused(wh, COST, [strategy, 1.0]), strategy
    for decision in ("Keep", "continue", "stopped", ""):
        assert _refused(wh, DECISION, ["r9", decision]), decision
    with wh.reader() as con:
        con.execute("SELECT 1")  # still readable after the refusals
    assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == 6


def test_a_warehouse_from_before_the_checks_keeps_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    for sql_file in sorted(SCHEMA_DIR.glob("*.sql")):
        if sql_file.name < "012":
            con.execute(sql_file.read_text())
    con.execute(RUN, ["r1", "completed"])
    con.execute(RUN, ["r2", "diverged"])
    con.execute(EVALUATION, ["classification", "hgb", "leave_out:vgg", 0.25])
    con.execute(PREDICTION, ["regression", "other_seeds", "cv", "r1"])
    con.execute("INSERT INTO comparisons VALUES ('s', 'regression', 'linear', 1, 'cv', 'kendall_tau', 'graph', "
                "'early_acc', 0.1, -0.1, 0.3, 'no detectable difference', 6)")
    con.execute(PREDICTOR, ["p1", "regression", "hgb"])
    con.execute("UPDATE predictors SET oof_residuals = [0.1, -0.2]")
    con.execute(COST, ["early_stopping", 12.5])
    con.execute("INSERT INTO costs (study, strategy, k, seconds, fraction, properties, snapshot_seconds) "
                "VALUES ('s', 'decision_path', 2, 3.0, 0.1, ['perron'], 0.25)")
    con.execute(OLD_DECISION, ["r1", "keep"])
    con.execute(OLD_DECISION, ["r2", "stop"])
    tables = ("runs", "evaluations", "predictions", "comparisons", "predictors", "costs", "triage_decisions")
    columns = {t: [c for (c, *_) in con.execute(f"SELECT * FROM {t} LIMIT 0").description] for t in tables}
    before = {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
    con.close()

    wh = Warehouse(path)
    wh.migrate()
    with wh.reader() as con:  # the old columns keep their values (at_epoch is now a decision's rung)
        after = {t: con.execute(f"SELECT {', '.join(columns[t]).replace('at_epoch', 'rung')} FROM {t} "
                                "ORDER BY ALL").fetchall() for t in before}
        applied = [name for (name,) in con.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()]
    assert after == before
    assert applied == sorted(p.name for p in SCHEMA_DIR.glob("*.sql"))
    assert _refused(wh, RUN, ["r3", "finished"])
    assert _refused(wh, EVALUATION, ["regression", "linear", "holdout", 0.0])
    assert _refused(wh, COST, ["train-all", 1.0])
    assert _refused(wh, DECISION, ["r3", "continue"])

    Warehouse(path).migrate()  # opened again: nothing is applied twice
    assert wh.query("SELECT count(*) AS n FROM runs")["n"][0] == 2


def test_dataset_facts_describe_the_data():
    digits = load_dataset("digits")  # the embedded one; the others need their files
    facts = DATASETS["digits"]
    assert (digits.in_channels, digits.image_size, digits.num_classes) == (facts.channels, facts.image_size, facts.classes)
    assert (len(digits.y_train), len(digits.y_test)) == (facts.train_images, facts.test_images)
    assert facts.chance_accuracy == 1 / len(set(digits.y_train.tolist()))
    # warehouse/queries/seed_agreement.sql counts a diverged run as 0.1
    assert {f.chance_accuracy for f in DATASETS.values()} == {0.1}
