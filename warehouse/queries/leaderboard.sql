-- The best predictor and feature set per k, by pooled out-of-fold Kendall tau under grouped
-- cross-validation (regression of the final accuracy) with its 95% configuration-bootstrap
-- interval, beside the early-stopping baseline's tau and the seeds' agreement (same definition).
SELECT b.study, b.k, b.feature_set, b.predictor, round(b.value, 4) AS kendall_tau, round(b.low, 4) AS low,
       round(b.high, 4) AS high, round(e.value, 4) AS early_acc_tau, round(b.seed_agreement, 4) AS seed_agreement_tau
FROM best_per_k b
LEFT JOIN (SELECT study, task, split, k, metric, max(value) AS value
           FROM leaderboard WHERE feature_set = 'early_acc' GROUP BY ALL) e
       USING (study, task, split, k, metric)
WHERE b.split = 'cv' AND b.metric = 'kendall_tau' AND b.task = 'regression'
ORDER BY b.study, b.k;
