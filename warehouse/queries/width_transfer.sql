-- Width transfer: fitted on some widths, tested on others. Every feature set's best predictor per
-- k and metric. Needs the prediction stage's tables (views_predictions.sql).
SELECT study, split, task, k, metric, feature_set, predictor, round(mean, 4) AS mean
FROM width_transfer_results
QUALIFY row_number() OVER (PARTITION BY study, split, task, k, metric, feature_set ORDER BY rank) = 1
ORDER BY study, split, task, metric, k, mean DESC;
