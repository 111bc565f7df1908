-- Trustworthy numbers (pipeline_lib/prediction/metrics.py): every evaluation leads with its pooled
-- out-of-fold value and a 95% bootstrap interval that resamples configurations; feature sets are
-- compared by paired bootstrap intervals of their difference.

-- evaluations, one row per (study, task, predictor, feature_set, k, split, metric):
--   value         the metric of all the unit's predictions pooled (out of fold for cv)
--   low, high     95% percentile interval, configurations (config_id) resampled, seeded
--   mean, std     mean and spread of the per-fold values (secondary; NULL std for one fold)
--   n, folds      predictions pooled; folds where the metric is defined
--   configs       configurations resampled
--   split:  cv | cv:<architecture> (the cv predictions of one family) | width_transfer |
--           width_transfer_reverse | leave_out:<architecture> (fit on the other families)
--   metric: kendall_tau | spearman_rho | r2 | mae | balanced_accuracy | accuracy | roc_auc
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS value DOUBLE;
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS low DOUBLE;
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS high DOUBLE;
ALTER TABLE evaluations ADD COLUMN IF NOT EXISTS configs INTEGER;

-- Paired comparisons: feature_set minus baseline on the runs both predicted, same task, predictor,
-- k and split, the interval from the same configuration resamples. verdict: 'beats' / 'is beaten
-- by' only when the interval excludes 0 (mae: lower is better), else 'no detectable difference'.
CREATE TABLE IF NOT EXISTS comparisons (
    study        VARCHAR NOT NULL,
    task         VARCHAR NOT NULL,
    predictor    VARCHAR NOT NULL,
    k            INTEGER NOT NULL,
    split        VARCHAR NOT NULL,
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
