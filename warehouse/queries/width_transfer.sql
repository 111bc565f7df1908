-- Transfer: fitted on the spec's train_widths and tested on its test_widths (split width_transfer),
-- the reverse (width_transfer_reverse), and fitted on the other architectures, tested on one
-- (leave_out:<architecture>). Every feature set's best predictor per k and metric: pooled value
-- and its 95% configuration-bootstrap interval.
SELECT study, split, task, k, metric, feature_set, predictor, round(value, 4) AS value, round(low, 4) AS low,
       round(high, 4) AS high
FROM width_transfer_results
QUALIFY row_number() OVER (PARTITION BY study, split, task, k, metric, feature_set ORDER BY rank) = 1
ORDER BY study, split, task, metric, k, value DESC;
