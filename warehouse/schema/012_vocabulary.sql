-- One vocabulary (pipeline_lib/vocabulary.py): the warehouse itself refuses a run status, task,
-- predictor or split it does not know. DuckDB cannot add a CHECK to an existing table, so each
-- table is rebuilt with its checks and its rows copied over (in the migration's transaction:
-- all or nothing). The lists must match the enums; tests/test_vocabulary.py holds them together.
--   status:    RunStatus
--   task:      Task
--   predictor: Predictor (registered predictors: the fitted ones only)
--   split:     Split: cv | width_transfer | width_transfer_reverse | cv:<architecture> | leave_out:<architecture>

CREATE TABLE runs_012 (
    study           VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    config_id       VARCHAR NOT NULL,
    architecture    VARCHAR NOT NULL,
    width           DOUBLE NOT NULL,
    depth           INTEGER NOT NULL,
    dataset         VARCHAR NOT NULL,
    dataset_subset  INTEGER,
    lr              DOUBLE NOT NULL,
    dropout         DOUBLE NOT NULL,
    weight_decay    DOUBLE NOT NULL,
    optimizer       VARCHAR NOT NULL,
    batch_size      INTEGER NOT NULL,
    seed            INTEGER NOT NULL,
    epochs          INTEGER NOT NULL,
    status          VARCHAR NOT NULL
                    CHECK (status IN ('pending', 'running', 'completed', 'diverged', 'stopped', 'failed')),
    epochs_done     INTEGER NOT NULL,
    diverged_epoch  INTEGER,
    final_test_acc  DOUBLE,
    train_seconds   DOUBLE,
    device          VARCHAR,
    error           VARCHAR,
    updated_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (study, run_id)
);
INSERT INTO runs_012 BY NAME SELECT * FROM runs;
DROP TABLE runs;
ALTER TABLE runs_012 RENAME TO runs;

CREATE TABLE evaluations_012 (
    study        VARCHAR NOT NULL,
    task         VARCHAR NOT NULL CHECK (task IN ('regression', 'classification')),
    predictor    VARCHAR NOT NULL CHECK (predictor IN ('linear', 'hgb', 'other_seeds')),
    feature_set  VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    split        VARCHAR NOT NULL CHECK (split IN ('cv', 'width_transfer', 'width_transfer_reverse')
                                         OR regexp_full_match(split, '(cv|leave_out):.+')),
    metric       VARCHAR NOT NULL,
    mean         DOUBLE,
    std          DOUBLE,
    n            INTEGER NOT NULL,
    folds        INTEGER NOT NULL,
    value        DOUBLE,
    low          DOUBLE,
    high         DOUBLE,
    configs      INTEGER,
    PRIMARY KEY (study, task, predictor, feature_set, k, split, metric)
);
INSERT INTO evaluations_012 BY NAME SELECT * FROM evaluations;
DROP TABLE evaluations;
ALTER TABLE evaluations_012 RENAME TO evaluations;

CREATE TABLE predictions_012 (
    study        VARCHAR NOT NULL,
    task         VARCHAR NOT NULL CHECK (task IN ('regression', 'classification')),
    predictor    VARCHAR NOT NULL CHECK (predictor IN ('linear', 'hgb', 'other_seeds')),
    feature_set  VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    split        VARCHAR NOT NULL CHECK (split IN ('cv', 'width_transfer', 'width_transfer_reverse')
                                         OR regexp_full_match(split, '(cv|leave_out):.+')),
    run_id       VARCHAR NOT NULL,
    fold         INTEGER NOT NULL,
    y_true       DOUBLE NOT NULL,
    y_pred       DOUBLE NOT NULL,
    score        DOUBLE,
    PRIMARY KEY (study, task, predictor, feature_set, k, split, run_id)
);
INSERT INTO predictions_012 BY NAME SELECT * FROM predictions;
DROP TABLE predictions;
ALTER TABLE predictions_012 RENAME TO predictions;

CREATE TABLE comparisons_012 (
    study        VARCHAR NOT NULL,
    task         VARCHAR NOT NULL CHECK (task IN ('regression', 'classification')),
    predictor    VARCHAR NOT NULL CHECK (predictor IN ('linear', 'hgb', 'other_seeds')),
    k            INTEGER NOT NULL,
    split        VARCHAR NOT NULL CHECK (split IN ('cv', 'width_transfer', 'width_transfer_reverse')
                                         OR regexp_full_match(split, '(cv|leave_out):.+')),
    metric       VARCHAR NOT NULL,
    feature_set  VARCHAR NOT NULL,
    baseline     VARCHAR NOT NULL,
    difference   DOUBLE,
    low          DOUBLE,
    high         DOUBLE,
    verdict      VARCHAR NOT NULL,
    configs      INTEGER NOT NULL,
    PRIMARY KEY (study, task, predictor, k, split, metric, feature_set, baseline)
);
INSERT INTO comparisons_012 BY NAME SELECT * FROM comparisons;
DROP TABLE comparisons;
ALTER TABLE comparisons_012 RENAME TO comparisons;

CREATE TABLE predictors_012 (
    id              VARCHAR PRIMARY KEY,
    study           VARCHAR NOT NULL,
    dataset         VARCHAR NOT NULL,
    architectures   VARCHAR[] NOT NULL,
    widths          DOUBLE[] NOT NULL,
    feature_set     VARCHAR NOT NULL,
    k               INTEGER NOT NULL,
    task            VARCHAR NOT NULL CHECK (task IN ('regression', 'classification')),
    predictor       VARCHAR NOT NULL CHECK (predictor IN ('linear', 'hgb')),
    runs_used       INTEGER NOT NULL,
    good_threshold  DOUBLE,
    metrics_json    VARCHAR NOT NULL,
    features        VARCHAR[] NOT NULL,
    path            VARCHAR NOT NULL,
    file_digest     VARCHAR NOT NULL,
    code_digest     VARCHAR NOT NULL,
    created         TIMESTAMP NOT NULL,
    oof_residuals   DOUBLE[],
    calibration     DOUBLE[]
);
INSERT INTO predictors_012 BY NAME SELECT * FROM predictors;
DROP TABLE predictors;
ALTER TABLE predictors_012 RENAME TO predictors;
