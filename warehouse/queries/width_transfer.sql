-- Width transfer: fitted on the spec's train_widths and tested on its test_widths (split
-- width_transfer), and the reverse (width_transfer_reverse). Every feature set's best predictor per
-- k and metric.
SELECT study, split, task, k, metric, feature_set, predictor, round(mean, 4) AS mean
FROM width_transfer_results
QUALIFY row_number() OVER (PARTITION BY study, split, task, k, metric, feature_set ORDER BY rank) = 1
ORDER BY study, split, task, metric, k, mean DESC;
