-- Acting on predictions: what each registered predictor knows of its own uncertainty, and the
-- scores it gave the runs of a study at epoch k (pipeline_lib/decisions/uncertainty.py, scoring.py).

-- Kept with each registered predictor at registration, from its out-of-fold cv predictions:
--   oof_residuals: regression; y_true - y_pred of every run (split-conformal intervals, crepes)
--   calibration:   classification; [slope, intercept] of Platt scaling of the raw score (P(good))
ALTER TABLE predictors ADD COLUMN IF NOT EXISTS oof_residuals DOUBLE[];
ALTER TABLE predictors ADD COLUMN IF NOT EXISTS calibration DOUBLE[];

-- One row per (study, run, regression predictor, k): a run scored at epoch k, finished or not.
--   low, high:  split-conformal interval of the final accuracy at `confidence`
--   p_good:     calibrated P(good) from the classification twin (same study, feature set, k and
--               model) of the predictor, NULL when there is none
--   rank:       1 = highest predicted final accuracy among the runs scored together
CREATE TABLE IF NOT EXISTS scores (
    study         VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    predictor_id  VARCHAR NOT NULL,
    k             INTEGER NOT NULL,
    predicted     DOUBLE NOT NULL,
    low           DOUBLE NOT NULL,
    high          DOUBLE NOT NULL,
    confidence    DOUBLE NOT NULL,
    p_good        DOUBLE,
    rank          INTEGER NOT NULL,
    scored_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (study, run_id, predictor_id, k)
);
