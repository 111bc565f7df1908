-- Prediction stage: features from the first k epochs, cross-validated evaluations, out-of-fold
-- predictions, compute costs (RQ3), and the fingerprints that let a re-run skip finished work.

-- Long format: one row per (run, k, base feature set, feature). Built from epochs 0..k only.
--   feature_set: graph | early_acc | learning_curve | weight_stats | hparams
--   (combinations such as graph+learning_curve are unions of base sets, assembled when evaluating)
CREATE TABLE IF NOT EXISTS features (
    study        VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    feature_set  VARCHAR NOT NULL,
    feature      VARCHAR NOT NULL,
    value        DOUBLE,                -- NULL: not observable at k (e.g. the run diverged earlier)
    PRIMARY KEY (study, run_id, k, feature_set, feature)
);

-- One row per metric of one predictor on one feature set at one k.
--   task:      regression (final test accuracy) | classification (good run)
--   split:     cv (grouped k-fold by config_id; mean/std over folds) |
--              width_transfer (fit on train_widths, test on test_widths) | width_transfer_reverse
--   predictor: linear | hgb | other_seeds (feature_set seed_agreement: the noise ceiling)
--   metric:    r2 | mae | kendall_tau | spearman_rho | accuracy | roc_auc
CREATE TABLE IF NOT EXISTS evaluations (
    study        VARCHAR NOT NULL,
    task         VARCHAR NOT NULL,
    predictor    VARCHAR NOT NULL,
    feature_set  VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    split        VARCHAR NOT NULL,
    metric       VARCHAR NOT NULL,
    mean         DOUBLE,
    std          DOUBLE,                -- over folds (NULL for a single train/test split)
    n            INTEGER NOT NULL,      -- test predictions the metric covers
    folds        INTEGER NOT NULL,      -- folds in which the metric is defined
    PRIMARY KEY (study, task, predictor, feature_set, k, split, metric)
);

-- Out-of-fold (or transfer-test) prediction for every run.
--   regression:     y_true, y_pred = final test accuracy; score NULL
--   classification: y_true, y_pred in {0, 1} (1 = good run); score = predicted P(good)
CREATE TABLE IF NOT EXISTS predictions (
    study        VARCHAR NOT NULL,
    task         VARCHAR NOT NULL,
    predictor    VARCHAR NOT NULL,
    feature_set  VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    split        VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    fold         INTEGER NOT NULL,
    y_true       DOUBLE NOT NULL,
    y_pred       DOUBLE NOT NULL,
    score        DOUBLE,
    PRIMARY KEY (study, task, predictor, feature_set, k, split, run_id)
);

-- RQ3: compute to reach a decision, from recorded timings (epoch_metrics.seconds, graphs.seconds).
--   strategy: train_all | early_stopping | predict_then_finish
CREATE TABLE IF NOT EXISTS costs (
    study           VARCHAR NOT NULL,
    strategy        VARCHAR NOT NULL,
    k               INTEGER,            -- predict_then_finish: the epoch of the prediction
    feature_set     VARCHAR,            -- predict_then_finish: what the prediction used
    predictor       VARCHAR,
    seconds         DOUBLE NOT NULL,    -- training (+ graph) seconds summed over runs
    fraction        DOUBLE NOT NULL,    -- seconds / seconds of train_all
    runs_to_end     INTEGER NOT NULL,   -- runs trained to the last epoch
    best_final_acc  DOUBLE,             -- best final test accuracy among the runs kept
    detail          VARCHAR
);

-- What a stage last computed from: a re-run with the same fingerprint skips the stage.
CREATE TABLE IF NOT EXISTS stage_fingerprints (
    study        VARCHAR NOT NULL,
    stage        VARCHAR NOT NULL,
    fingerprint  VARCHAR NOT NULL,
    finished_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (study, stage)
);
