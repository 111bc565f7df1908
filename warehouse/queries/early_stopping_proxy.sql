-- The baseline every predictor must beat: how well does test accuracy after epoch k rank the
-- runs by their final accuracy? Spearman's rho (Pearson correlation of average ranks) per study
-- and epoch, over completed runs, for every epoch before the last.
WITH pairs AS (
    SELECT study, epoch AS k, run_id, test_acc, final_test_acc
    FROM learning_curves
    WHERE status = 'completed' AND epoch >= 1 AND epoch < epochs
),
ranked AS (
    SELECT study, k,
           rank() OVER (PARTITION BY study, k ORDER BY test_acc)
             + (count(*) OVER (PARTITION BY study, k, test_acc) - 1) / 2.0 AS rank_early,
           rank() OVER (PARTITION BY study, k ORDER BY final_test_acc)
             + (count(*) OVER (PARTITION BY study, k, final_test_acc) - 1) / 2.0 AS rank_final
    FROM pairs
)
SELECT study, k, count(*) AS runs,
       round(nullif(corr(rank_early, rank_final), 'NaN'::DOUBLE), 4) AS spearman_rho  -- NaN (a constant side) -> NULL
FROM ranked
GROUP BY study, k
ORDER BY study, k;
