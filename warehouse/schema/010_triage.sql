-- Triage (spec section `triage:`): every run trained to at_epoch, scored there by one registered
-- predictor, then kept (trained to the end) or stopped. Decided once per study, in one
-- transaction; a re-run reads these rows and never decides again. A stopped run has status
-- 'stopped' in `runs` (epochs_done = at_epoch, final_test_acc NULL): it has no outcome, so no
-- target of evaluation or registration reads it.
--   predicted, low, high: predicted final accuracy and its split-conformal interval at `confidence`
--   p_good:      calibrated P(good) of the predictor's classification twin (NULL without one)
--   rank:        1 = best predicted among the runs triaged (runs diverged by at_epoch are not)
--   keep_policy: the keep rule as text: 'fraction 0.3', 'top 5' or 'p_good>=0.6'
CREATE TABLE IF NOT EXISTS triage_decisions (
    study         VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    predictor_id  VARCHAR NOT NULL,
    at_epoch      INTEGER NOT NULL,
    predicted     DOUBLE NOT NULL,
    low           DOUBLE NOT NULL,
    high          DOUBLE NOT NULL,
    confidence    DOUBLE NOT NULL,
    p_good        DOUBLE,
    rank          INTEGER NOT NULL,
    keep_policy   VARCHAR NOT NULL,
    decision      VARCHAR NOT NULL,   -- keep | stop
    decided_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (study, run_id)
);
