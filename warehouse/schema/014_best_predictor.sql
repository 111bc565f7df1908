-- The best registered predictor at k, in one place: every registered regression predictor with a
-- pooled out-of-fold Kendall tau (and its 95% interval), best first within its study and k:
-- standing 1 is the study's best at k (ties broken by id). Scoring with `best` takes the highest tau
-- among the studies whose predictors cover its runs (stages/score.py); the decision path
-- (stages/register.py) and the report take a study's standing 1.
-- Also: predictors.code_digest now holds the pins a predictor loads under (JSON: the digest of the
-- model code and the versions of scikit-learn, skops, numpy, scipy; pipeline_lib/fingerprints.py).
CREATE OR REPLACE VIEW best_predictors AS
SELECT *, row_number() OVER (PARTITION BY study, k ORDER BY tau DESC, id) AS standing
FROM (SELECT *, json_extract(metrics_json, '$.kendall_tau.value')::DOUBLE AS tau,
             json_extract(metrics_json, '$.kendall_tau.low')::DOUBLE AS tau_low,
             json_extract(metrics_json, '$.kendall_tau.high')::DOUBLE AS tau_high
      FROM predictors WHERE task = 'regression')
WHERE tau IS NOT NULL;
