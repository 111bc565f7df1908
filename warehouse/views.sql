-- Views over the warehouse: the questions users ask, answered in one SELECT each.
-- Re-created on every open by warehouse/db.py (after the schema files), so they always match the
-- tables. Views over the prediction tables (features, evaluations, predictions, costs) live in
-- views_predictions.sql.
--
--   learning_curves   one row per run x epoch: the run's configuration and its metrics at that epoch
--   run_outcomes      one row per run: final, best and early accuracies, divergence, cost
--   config_outcomes   one row per hyper-parameter configuration x architecture x width: seeds pooled
--   snapshot_index    one row per weight snapshot: where its Parquet lies and whether its graph is done
--   graph_progress    one row per study: snapshots, graphs computed, graphs failed
--   graph_trajectories one row per run x epoch x scope x property x statistic, with the run's outcome

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
