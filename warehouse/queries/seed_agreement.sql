-- The seed-agreement reference, with the definition the evaluation uses
-- (pipeline_lib/prediction/evaluation.py other_seed_predictions, metrics.py): every finished run is
-- "predicted" by the mean final accuracy of the other seeds of its configuration (config_id,
-- architecture, width, depth); Kendall's tau-b between truth and prediction over all such runs
-- pooled. Diverged runs count as chance accuracy (0.1: every dataset of pipeline_lib/vocabulary.py has
-- 10 classes; tests/test_vocabulary.py says so if one does not).
-- A constant prediction orders nothing and scores 0. (The evaluation adds a bootstrap interval.)
WITH outcome AS (
    SELECT study, run_id, config_id, architecture, width, depth,
           CASE WHEN status = 'diverged' THEN 0.1 ELSE final_test_acc END AS y
    FROM runs
    WHERE status IN ('completed', 'diverged')
),
predicted AS (
    SELECT a.study, a.run_id, a.config_id, any_value(a.y) AS y, avg(b.y) AS p
    FROM outcome a
    JOIN outcome b USING (study, config_id, architecture, width, depth)
    WHERE a.run_id <> b.run_id
    GROUP BY a.study, a.run_id, a.config_id
),
pairs AS (
    SELECT a.study, sign(a.y - b.y) AS sy, sign(a.p - b.p) AS sp
    FROM predicted a
    JOIN predicted b ON a.study = b.study AND a.run_id < b.run_id
)
SELECT p.study, r.runs, r.configurations,
       round(CASE WHEN sum(abs(p.sp)) = 0 THEN 0
                  ELSE sum(p.sy * p.sp) / sqrt(sum(abs(p.sy)) * sum(abs(p.sp))) END, 4) AS kendall_tau
FROM pairs p
JOIN (SELECT study, count(*) AS runs, count(DISTINCT config_id) AS configurations FROM predicted GROUP BY study) r
  USING (study)
GROUP BY p.study, r.runs, r.configurations
ORDER BY p.study;
