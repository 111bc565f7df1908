-- RQ3: the compute spent to reach a prediction at k epochs, per study, beside the cost of training
-- every run to the end. Needs the prediction stage's tables (views_predictions.sql).
SELECT *
FROM cost_per_study
ORDER BY study, k;
