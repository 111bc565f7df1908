-- The noise ceiling: how well do two seeds of one configuration agree on the final accuracy?
-- Spearman's rho between the first two seeds, over configurations where both completed.
-- A predictor that ranks runs better than this exploits more than the configuration.
WITH seeded AS (
    SELECT study, config_id, architecture, width, final_test_acc,
           row_number() OVER (PARTITION BY study, config_id, architecture, width ORDER BY seed) AS nth
    FROM runs
    WHERE status = 'completed'
),
pairs AS (
    SELECT a.study, a.final_test_acc AS first_seed, b.final_test_acc AS second_seed
    FROM seeded a
    JOIN seeded b USING (study, config_id, architecture, width)
    WHERE a.nth = 1 AND b.nth = 2
),
ranked AS (
    SELECT study,
           rank() OVER (PARTITION BY study ORDER BY first_seed)
             + (count(*) OVER (PARTITION BY study, first_seed) - 1) / 2.0 AS rank_first,
           rank() OVER (PARTITION BY study ORDER BY second_seed)
             + (count(*) OVER (PARTITION BY study, second_seed) - 1) / 2.0 AS rank_second
    FROM pairs
)
SELECT study, count(*) AS configurations, round(corr(rank_first, rank_second), 4) AS spearman_rho
FROM ranked
GROUP BY study
ORDER BY study;
