-- The best predictor and feature set per k, by Kendall's tau under grouped cross-validation
-- (regression of the final accuracy), beside the early-stopping baseline's tau and the seeds'
-- agreement (the noise ceiling).
SELECT b.study, b.k, b.feature_set, b.predictor, round(b.mean, 4) AS kendall_tau, round(b.std, 4) AS std,
       round(e.mean, 4) AS early_acc_tau, round(b.seed_agreement, 4) AS seed_agreement_tau
FROM best_per_k b
LEFT JOIN (SELECT study, task, split, k, metric, max(mean) AS mean
           FROM leaderboard WHERE feature_set = 'early_acc' GROUP BY ALL) e
       USING (study, task, split, k, metric)
WHERE b.split = 'cv' AND b.metric = 'kendall_tau' AND b.task = 'regression'
ORDER BY b.study, b.k;
