-- Hyper-parameter configurations ranked by final test accuracy, seeds pooled; the spread over
-- seeds shows how much of an outcome the configuration alone decides.
SELECT study, architecture, width, config_id, lr, dropout, weight_decay, optimizer, batch_size,
       runs, diverged,
       round(mean_final_test_acc, 4) AS mean_final_test_acc,
       round(std_final_test_acc, 4) AS std_over_seeds
FROM config_outcomes
ORDER BY study, mean_final_test_acc DESC NULLS LAST;
