-- The decision words (pipeline_lib/vocabulary.py): the warehouse refuses a triage decision or a
-- cost strategy it does not know. Tables rebuilt with their checks as in 012_vocabulary.sql (DuckDB
-- cannot add a CHECK to an existing table), rows copied, in the migration's transaction. The lists
-- must match the enums; tests/test_vocabulary.py holds them together.
--   costs.strategy:             CostStrategy
--   triage_decisions.decision:  Decision

CREATE TABLE costs_013 (
    study             VARCHAR NOT NULL,
    strategy          VARCHAR NOT NULL CHECK (strategy IN ('train_all', 'early_stopping', 'predict_then_finish',
                                                           'decision_path', 'graph_stage')),
    k                 INTEGER,
    feature_set       VARCHAR,
    predictor         VARCHAR,
    seconds           DOUBLE NOT NULL,
    fraction          DOUBLE NOT NULL,
    runs_to_end       INTEGER,
    best_final_acc    DOUBLE,
    detail            VARCHAR,
    properties        VARCHAR[],
    snapshot_seconds  DOUBLE,
    epoch_seconds     DOUBLE,
    snapshots_timed   INTEGER
);
INSERT INTO costs_013 BY NAME SELECT * FROM costs;
DROP TABLE costs;
ALTER TABLE costs_013 RENAME TO costs;

CREATE TABLE triage_decisions_013 (
    study         VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    predictor_id  VARCHAR NOT NULL,
    at_epoch      INTEGER NOT NULL,
    predicted     DOUBLE NOT NULL,
    low           DOUBLE NOT NULL,
    high          DOUBLE NOT NULL,
    confidence    DOUBLE NOT NULL,
    p_good        DOUBLE,
    rank          INTEGER NOT NULL,
    keep_policy   VARCHAR NOT NULL,
    decision      VARCHAR NOT NULL CHECK (decision IN ('keep', 'stop')),
    decided_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (study, run_id)
);
INSERT INTO triage_decisions_013 BY NAME SELECT * FROM triage_decisions;
DROP TABLE triage_decisions;
ALTER TABLE triage_decisions_013 RENAME TO triage_decisions;
