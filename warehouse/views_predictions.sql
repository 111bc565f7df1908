-- Views over the prediction stage: the feature table, the leaderboard of predictors per k, the
-- width-transfer results and the cost per study. They need the tables features, evaluations,
-- predictions and costs (created by the prediction stage's schema file): warehouse/db.py applies
-- this file after views.sql once those tables exist.
--
--   feature_table        one row per run x k x feature: the value next to the run's target
--   leaderboard          one row per study x task x split x k x metric x feature set x predictor, ranked
--   best_per_k           the winner of each leaderboard (rank 1), one row per study x task x split x k x metric
--   width_transfer_results  the leaderboard restricted to fits on some widths tested on others
--   cost_per_study       the compute to reach a prediction at k epochs, beside the study's total training time
--   predicted_vs_true    one row per out-of-fold prediction, with its error

-- Features in long form with the run they describe and its target (final test accuracy).
-- Pivot in DuckDB for one column per feature:
--   PIVOT (SELECT run_id, k, feature, value FROM feature_table WHERE feature_set = 'graph') ON feature USING first(value);
CREATE OR REPLACE VIEW feature_table AS
SELECT f.study, f.run_id, r.config_id, r.architecture, r.width, r.seed, f.k, f.feature_set, f.feature, f.value,
       r.status, r.final_test_acc
FROM features f
JOIN runs r ON r.study = f.study AND r.run_id = f.run_id;

-- Every evaluation ranked against the others that answer the same question (same study, task,
-- split, k and metric). Error metrics (mae, mse, rmse, log_loss, brier) rank lowest first; every
-- other metric (r2, kendall_tau, spearman_rho, accuracy, roc_auc, ...) highest first.
CREATE OR REPLACE VIEW leaderboard AS
SELECT study, task, split, k, metric, feature_set, predictor, mean, std, n,
       rank() OVER (
           PARTITION BY study, task, split, k, metric
           ORDER BY CASE WHEN metric IN ('mae', 'mse', 'rmse', 'log_loss', 'brier') THEN mean ELSE -mean END
       ) AS rank
FROM evaluations;

CREATE OR REPLACE VIEW best_per_k AS
SELECT study, task, split, k, metric, feature_set, predictor, mean, std, n
FROM leaderboard
WHERE rank = 1;

-- Width transfer (fit on train_widths, test on test_widths, and the reverse): the splits whose
-- name starts with 'width_transfer'.
CREATE OR REPLACE VIEW width_transfer_results AS
SELECT *
FROM leaderboard
WHERE split LIKE 'width_transfer%';

-- RQ3: the cost rows of each study beside what training every run to the end cost.
CREATE OR REPLACE VIEW cost_per_study AS
SELECT c.*, t.runs, t.train_seconds_total
FROM costs c
LEFT JOIN (SELECT study, count(*) AS runs, sum(train_seconds) AS train_seconds_total
           FROM runs GROUP BY study) t USING (study);

-- Out-of-fold predictions next to the truth: the data of the "predicted vs true" figure.
CREATE OR REPLACE VIEW predicted_vs_true AS
SELECT p.study, p.task, p.predictor, p.feature_set, p.k, p.split, p.run_id, r.architecture, r.width, r.seed,
       p.y_true, p.y_pred, p.y_pred - p.y_true AS error
FROM predictions p
JOIN runs r ON r.study = p.study AND r.run_id = p.run_id;
