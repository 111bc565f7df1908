-- Which whole-graph statistics after epoch 1 rank the runs by final accuracy? Spearman's rho per
-- property and statistic over completed runs, strongest first (undefined, from a constant statistic: NULL, last).
WITH values_at_1 AS (
    SELECT study, property, statistic, value, final_test_acc
    FROM graph_trajectories
    WHERE scope = 'graph' AND epoch = 1 AND status = 'completed' AND isfinite(value)
),
ranked AS (
    SELECT study, property, statistic,
           rank() OVER w_value + (count(*) OVER (PARTITION BY study, property, statistic, value) - 1) / 2.0 AS rank_value,
           rank() OVER w_final + (count(*) OVER (PARTITION BY study, property, statistic, final_test_acc) - 1) / 2.0 AS rank_final
    FROM values_at_1
    WINDOW w_value AS (PARTITION BY study, property, statistic ORDER BY value),
           w_final AS (PARTITION BY study, property, statistic ORDER BY final_test_acc)
)
SELECT study, property, statistic, count(*) AS runs,
       round(nullif(corr(rank_value, rank_final), 'NaN'::DOUBLE), 4) AS spearman_rho  -- NaN (a constant statistic) -> NULL, last
FROM ranked
GROUP BY ALL
HAVING count(*) >= 3
ORDER BY study, abs(spearman_rho) DESC NULLS LAST, property, statistic;
