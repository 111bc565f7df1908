-- Predictor registry: predictors fitted on every finished run of a study, saved with skops under
-- <data_dir>/predictors/<id>.skops, to score runs of this or another study of the same dataset.
--   metrics_json: per metric of split cv, the pooled out-of-fold value with its 95% configuration-
--                 bootstrap interval and the per-fold spread, e.g.
--                 {"kendall_tau": {"value": .., "low": .., "high": .., "fold_mean": .., "fold_std": .., "folds": 5}}
--   good_threshold: the final accuracy above which a run counts as good (the classification target)
--   file_digest:  sha256 of the file; code_digest: sha1 of the prediction code that fitted it.
--   Loading refuses a file whose digest (or the code's) differs from these.
CREATE TABLE IF NOT EXISTS predictors (
    id              VARCHAR PRIMARY KEY,  -- hash of (study, feature_set, k, task, predictor)
    study           VARCHAR NOT NULL,
    dataset         VARCHAR NOT NULL,
    architectures   VARCHAR[] NOT NULL,   -- seen in training
    widths          DOUBLE[] NOT NULL,    -- seen in training
    feature_set     VARCHAR NOT NULL,
    k               INTEGER NOT NULL,
    task            VARCHAR NOT NULL,     -- regression | classification
    predictor       VARCHAR NOT NULL,     -- linear | hgb
    runs_used       INTEGER NOT NULL,
    good_threshold  DOUBLE,
    metrics_json    VARCHAR NOT NULL,
    features        VARCHAR[] NOT NULL,   -- columns the model reads, in order
    path            VARCHAR NOT NULL,
    file_digest     VARCHAR NOT NULL,
    code_digest     VARCHAR NOT NULL,
    created         TIMESTAMP NOT NULL
);
