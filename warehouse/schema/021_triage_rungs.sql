-- Triage v2 (spec `triage: {rungs: [...], predictor: auto}`): a decision per run and rung, the
-- source of its score and why, and the differences between this study and the predictor's.
--   rung:            the epoch the run was decided at (was at_epoch: one rung per study)
--   source:          registered | corpus | accuracy (the test accuracy at the rung: no predictor)
--   source_reason:   why that source ('auto: no registered predictor at k = 2 matches: ...')
--   mismatches:      how the predictor's study differs from this one, by name ('epochs 10 here, 8
--                    in the predictor's study'); empty when it matches or when scoring by accuracy
--   graph_seconds, scoring_seconds: the rung's decision work, measured (the same on its rows)
-- predictor_id is NULL and low, high too when scoring by accuracy.
CREATE TABLE triage_decisions_v2 (
    study            VARCHAR NOT NULL,
    run_id           VARCHAR NOT NULL,
    rung             INTEGER NOT NULL,
    source           VARCHAR NOT NULL CHECK (source IN ('registered', 'corpus', 'accuracy')),
    source_reason    VARCHAR NOT NULL,
    predictor_id     VARCHAR,
    mismatches       VARCHAR[] NOT NULL,
    predicted        DOUBLE NOT NULL,
    low              DOUBLE,
    high             DOUBLE,
    confidence       DOUBLE NOT NULL,
    p_good           DOUBLE,
    rank             INTEGER NOT NULL,
    keep_policy      VARCHAR NOT NULL,
    decision         VARCHAR NOT NULL CHECK (decision IN ('keep', 'stop')),
    graph_seconds    DOUBLE NOT NULL,
    scoring_seconds  DOUBLE NOT NULL,
    decided_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (study, run_id, rung)
);
INSERT INTO triage_decisions_v2
SELECT study, run_id, at_epoch, 'registered', 'named in the spec (recorded before rungs)', predictor_id, [],
       predicted, low, high, confidence, p_good, rank, keep_policy, decision, 0, 0, decided_at
FROM triage_decisions;
DROP TABLE triage_decisions;
ALTER TABLE triage_decisions_v2 RENAME TO triage_decisions;

-- Scores by a predictor of another study: how the two studies differ (as above; empty = none).
ALTER TABLE scores ADD COLUMN IF NOT EXISTS mismatches VARCHAR[];

-- A predictor fitted on a triaged study's kept runs only (the stopped runs have no final accuracy):
-- its training data are the runs a triage chose, not a sweep. `predictor: auto` never takes one.
ALTER TABLE predictors ADD COLUMN IF NOT EXISTS triaged BOOLEAN DEFAULT false;

-- Triage savings (strategy 'triage', CostStrategy.TRIAGE): seconds = training seconds done + the
-- decisions' graph and scoring seconds; fraction = seconds / train_all_seconds, the estimated seconds
-- of training every run to the end (recorded epochs, plus each stopped run's remaining epochs at its
-- mean seconds per epoch); decision_seconds: the graph and scoring part. The table is rebuilt to
-- take the new strategy in its CHECK (as in 013_decision_vocabulary.sql).
CREATE TABLE costs_021 (
    study              VARCHAR NOT NULL,
    strategy           VARCHAR NOT NULL CHECK (strategy IN ('train_all', 'early_stopping', 'predict_then_finish',
                                                            'decision_path', 'graph_stage', 'triage')),
    k                  INTEGER,
    feature_set        VARCHAR,
    predictor          VARCHAR,
    seconds            DOUBLE NOT NULL,
    fraction           DOUBLE NOT NULL,
    runs_to_end        INTEGER,
    best_final_acc     DOUBLE,
    detail             VARCHAR,
    properties         VARCHAR[],
    snapshot_seconds   DOUBLE,
    epoch_seconds      DOUBLE,
    snapshots_timed    INTEGER,
    train_all_seconds  DOUBLE,
    decision_seconds   DOUBLE
);
INSERT INTO costs_021 BY NAME SELECT * FROM costs;
DROP TABLE costs;
ALTER TABLE costs_021 RENAME TO costs;
