-- Learning curves of each study's five best runs: test accuracy per epoch, one row per run x epoch.
WITH best AS (
    SELECT study, run_id
    FROM run_outcomes
    WHERE status = 'completed'
    QUALIFY row_number() OVER (PARTITION BY study ORDER BY final_test_acc DESC, run_id) <= 5
)
SELECT study, run_id, architecture, width, lr, seed, epoch,
       round(test_acc, 4) AS test_acc, round(test_loss, 4) AS test_loss,
       round(train_seconds_so_far, 2) AS train_seconds_so_far
FROM learning_curves
JOIN best USING (study, run_id)
ORDER BY study, final_test_acc DESC, run_id, epoch;
