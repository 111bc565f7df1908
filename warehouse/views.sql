-- Views over the warehouse: the questions users ask, answered in one SELECT each.
-- Re-created on every open by warehouse/db.py (after the schema files), so they always match the
-- tables.
--
--   learning_curves   one row per run x epoch: the run's configuration and its metrics at that epoch
--   run_outcomes      one row per run: final, best and early accuracies, divergence, cost
--   config_outcomes   one row per hyper-parameter configuration x architecture x width: seeds pooled
--   snapshot_index    one row per weight snapshot: where its Parquet lies and whether its graph is done
--   graph_progress    one row per study: snapshots, graphs computed, graphs failed
--   graph_trajectories one row per run x epoch x scope x property x statistic, with the run's outcome
--   feature_table     one row per run x k x feature: the value next to the run's target
--   leaderboard       one row per study x task x split x k x metric x feature set x predictor, ranked,
--                     with the seeds' agreement (the noise ceiling) beside
--   predictor_standing one row per study x split x predictor: its mean Kendall tau, the report's choice
--   best_per_k        the winner of each leaderboard (rank 1)
--   width_transfer_results  the leaderboard of fits on some widths (or architectures) tested on others
--   cost_per_study    the compute of each decision strategy, beside the study's total training time
--   predicted_vs_true one row per out-of-fold prediction, with its error
--   configuration_scores one row per study x predictor x k x configuration x architecture: the scores
--                     of its runs (seeds and widths) pooled, ranked by mean predicted final accuracy
--   node_metrics      one row per node of every computed graph: not here, since its Parquet glob names
--                     the data directory; warehouse.db.create_node_metrics_view makes it on every open

-- Per-run learning curves. `train_seconds_so_far` is the training time spent up to and including
-- this epoch (evaluation excluded): the cost of stopping the run here.
CREATE OR REPLACE VIEW learning_curves AS
SELECT r.study, r.run_id, r.config_id, r.architecture, r.width, r.depth, r.dataset, r.lr, r.dropout,
       r.weight_decay, r.optimizer, r.batch_size, r.seed, r.status, r.epochs,
       m.epoch, m.train_loss, m.train_acc, m.test_loss, m.test_acc,
       sum(m.seconds) OVER (PARTITION BY r.study, r.run_id ORDER BY m.epoch) AS train_seconds_so_far,
       r.final_test_acc
FROM runs r
JOIN epoch_metrics m USING (run_id);

-- One row per run: how it ended, its best epoch, and its accuracy after 1, 3 and 5 epochs
-- (the early-stopping proxy the predictors must beat).
CREATE OR REPLACE VIEW run_outcomes AS
SELECT r.study, r.run_id, r.config_id, r.architecture, r.width, r.depth, r.lr, r.dropout, r.weight_decay,
       r.optimizer, r.batch_size, r.seed, r.status, r.epochs, r.epochs_done, r.diverged_epoch,
       r.final_test_acc,
       max(m.test_acc) AS best_test_acc,
       arg_max(m.epoch, m.test_acc) AS best_epoch,
       max(m.test_acc) FILTER (WHERE m.epoch = 1) AS test_acc_at_1,
       max(m.test_acc) FILTER (WHERE m.epoch = 3) AS test_acc_at_3,
       max(m.test_acc) FILTER (WHERE m.epoch = 5) AS test_acc_at_5,
       r.train_seconds, r.device
FROM runs r
LEFT JOIN epoch_metrics m USING (run_id)
GROUP BY ALL;

-- Seeds of one configuration pooled: the mean and spread of the final accuracy show how much of
-- a run's outcome its configuration decides (the noise ceiling of any predictor).
CREATE OR REPLACE VIEW config_outcomes AS
SELECT study, config_id, architecture, width, depth, lr, dropout, weight_decay, optimizer, batch_size,
       count(*) AS runs,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'diverged') AS diverged,
       avg(final_test_acc) AS mean_final_test_acc,
       stddev_samp(final_test_acc) AS std_final_test_acc,
       min(final_test_acc) AS min_final_test_acc,
       max(final_test_acc) AS max_final_test_acc
FROM runs
GROUP BY ALL;

-- The snapshot index: every weight snapshot, where its Parquet file lies, and its graph's state
-- (graph_state: 'done', 'failed' or 'pending').
CREATE OR REPLACE VIEW snapshot_index AS
SELECT r.study, s.run_id, r.architecture, r.width, r.seed, s.epoch, s.path, s.bytes, s.n_params,
       g.nodes, g.edges, g.seconds AS graph_seconds, g.error AS graph_error,
       CASE WHEN g.run_id IS NULL THEN 'pending' WHEN g.error IS NULL THEN 'done' ELSE 'failed' END AS graph_state
FROM snapshots s
JOIN runs r USING (run_id)
LEFT JOIN graphs g USING (run_id, epoch);

-- How far the graph stage has come, per study.
CREATE OR REPLACE VIEW graph_progress AS
SELECT study,
       count(*) AS snapshots,
       count(*) FILTER (WHERE graph_state = 'done') AS graphs_done,
       count(*) FILTER (WHERE graph_state = 'failed') AS graphs_failed,
       count(*) FILTER (WHERE graph_state = 'pending') AS graphs_pending,
       sum(bytes) AS snapshot_bytes,
       sum(graph_seconds) AS graph_seconds
FROM snapshot_index
GROUP BY study;

-- Graph property summaries next to the run they describe: how a statistic moves over the epochs,
-- and how that relates to the final accuracy. Scopes, properties and statistics are listed in
-- schema/002_graphs.sql.
CREATE OR REPLACE VIEW graph_trajectories AS
SELECT r.study, g.run_id, r.config_id, r.architecture, r.width, r.seed, g.epoch, g.scope, g.property,
       g.statistic, g.value, r.status, r.final_test_acc
FROM graph_summaries g
JOIN runs r USING (run_id);

-- Features in long form with the run they describe and its target (final test accuracy).
-- Pivot in DuckDB for one column per feature:
--   PIVOT (SELECT run_id, k, feature, value FROM feature_table WHERE feature_set = 'graph') ON feature USING first(value);
CREATE OR REPLACE VIEW feature_table AS
SELECT f.study, f.run_id, r.config_id, r.architecture, r.width, r.seed, f.k, f.feature_set, f.feature, f.value,
       r.status, r.final_test_acc
FROM features f
JOIN runs r ON r.study = f.study AND r.run_id = f.run_id;

-- Every evaluation of a predictor ranked against the others that answer the same question (same
-- study, task, split, k and metric), by the pooled value (schema/005_evaluation.sql; low/high: its
-- 95% configuration-bootstrap interval). Error metrics (mae) rank lowest first; every other metric
-- highest first; an undefined value (NULL) last. `predictor_rank` ranks the feature sets of one
-- predictor alike (the report's tables show one predictor). `seed_agreement` is how well the other
-- seeds of the same configuration score (feature set seed_agreement in evaluations), with its interval.
CREATE OR REPLACE VIEW leaderboard AS
WITH oriented AS (  -- `better`: lower is better
    SELECT *, CASE WHEN metric IN ('mae', 'mse', 'rmse', 'log_loss', 'brier') THEN value ELSE -value END AS better
    FROM evaluations
)
SELECT e.study, e.task, e.split, e.k, e.metric, e.feature_set, e.predictor, e.value, e.low, e.high, e.std, e.n,
       rank() OVER (PARTITION BY e.study, e.task, e.split, e.k, e.metric ORDER BY e.better NULLS LAST) AS rank,
       rank() OVER (PARTITION BY e.study, e.task, e.split, e.k, e.metric, e.predictor ORDER BY e.better NULLS LAST)
           AS predictor_rank,
       s.value AS seed_agreement, s.low AS seed_agreement_low, s.high AS seed_agreement_high
FROM oriented e
LEFT JOIN (SELECT study, task, split, k, metric, value, low, high FROM evaluations
           WHERE feature_set = 'seed_agreement') s
       ON s.study = e.study AND s.task = e.task AND s.split = e.split AND s.k = e.k AND s.metric = e.metric
WHERE e.feature_set <> 'seed_agreement';

-- The predictor a study's tables show: the higher pooled Kendall tau (regression), averaged over
-- every feature set and k of a split (ties: the first name); rank 1 is shown.
CREATE OR REPLACE VIEW predictor_standing AS
SELECT study, split, predictor, avg(value) AS mean_kendall_tau,
       row_number() OVER (PARTITION BY study, split ORDER BY avg(value) DESC NULLS LAST, predictor) AS rank
FROM leaderboard
WHERE metric = 'kendall_tau'
GROUP BY study, split, predictor;

CREATE OR REPLACE VIEW best_per_k AS
SELECT study, task, split, k, metric, feature_set, predictor, value, low, high, std, n, seed_agreement,
       seed_agreement_low, seed_agreement_high
FROM leaderboard
WHERE rank = 1;

-- Transfer (RQ2): fit on train_widths, test on test_widths, and the reverse (splits
-- 'width_transfer%'), and fit on the other architectures, test on one ('leave_out:<architecture>').
CREATE OR REPLACE VIEW width_transfer_results AS
SELECT *
FROM leaderboard
WHERE split LIKE 'width_transfer%' OR split LIKE 'leave_out:%';

-- RQ3: the compute of each strategy (train_all | early_stopping | predict_then_finish, see
-- schema/004_predict.sql) beside the study's runs and their summed training time.
CREATE OR REPLACE VIEW cost_per_study AS
SELECT c.*, t.runs, t.train_seconds_total
FROM costs c
LEFT JOIN (SELECT study, count(*) AS runs, sum(train_seconds) AS train_seconds_total
           FROM runs GROUP BY study) t USING (study);

-- Out-of-fold predictions next to the truth: the data of the "predicted vs true" figure.
CREATE OR REPLACE VIEW predicted_vs_true AS
SELECT p.study, p.task, p.predictor, p.feature_set, p.k, p.split, p.fold, p.run_id, r.architecture, r.width,
       r.seed, p.y_true, p.y_pred, p.score, p.y_pred - p.y_true AS error
FROM predictions p
JOIN runs r ON r.study = p.study AND r.run_id = p.run_id;

-- Which configurations to keep training: the scores (flows/score.py) of a configuration's runs,
-- seeds and widths pooled, ranked within each scoring (study, predictor, k); rank 1 = best.
CREATE OR REPLACE VIEW configuration_scores AS
SELECT s.study, s.predictor_id, s.k, r.config_id, r.architecture, r.depth,
       count(*) AS runs,
       avg(s.predicted) AS mean_predicted,
       min(s.low) AS min_low,
       max(s.high) AS max_high,
       avg(s.p_good) AS mean_p_good,
       rank() OVER (PARTITION BY s.study, s.predictor_id, s.k ORDER BY avg(s.predicted) DESC) AS rank
FROM scores s
JOIN runs r ON r.study = s.study AND r.run_id = s.run_id
GROUP BY s.study, s.predictor_id, s.k, r.config_id, r.architecture, r.depth;
