-- RQ3: the compute each strategy spends to reach a decision (train every run to the end, early
-- stopping, or predict at epoch k and finish only the runs predicted good), per study.
SELECT study, strategy, k, feature_set, predictor, round(seconds, 1) AS seconds, round(fraction, 3) AS fraction,
       runs_to_end, runs, round(best_final_acc, 4) AS best_final_acc, detail
FROM cost_per_study
ORDER BY study, fraction, k;
