-- Replay v2 (flows.replay, pipeline_lib/decisions/replay.py and policies.py): a finished sweep
-- simulated as it would have run, W parallel workers from the recorded per-epoch seconds, runs
-- started in the sweep's order (order_index 0) and in seeded random orders (1..n), under stopping
-- policies that use only what they would know at decision time. One row per (policy setting, order).
--   policy:       train_all | i_epoch | online | transfer | oracle | an Optuna pruner's class name
--                 | triage (the synchronous rung-by-rung triage of flows.train_sweep; setting: its rung list
--                 and keep rule, e.g. "rungs=1,3 keep=0.25", rung: its first rung)
--   deployable:   false for oracle (out-of-fold predictions fitted on this sweep's final accuracies)
--   rung:         the epoch a rung rule decides at (NULL for train_all and the pruners)
--   keep_fraction / alpha: the rule: ASHA-like keep fraction, or stop when P(top share) < alpha
--   source:       what a predictor was fitted on (online: refit on ended runs; transfer: the study;
--                 triage: accuracy, or the transfer predictor's study)
--   epochs, seconds: every epoch trained (runs finished for labels included); seconds = training
--                 + recorded graph seconds of the snapshots the policy's features need + measured
--                 decision seconds (scoring, refits); fraction = seconds / train-all's
--   wall_seconds: simulated wall time with `workers` workers (decision seconds added as if serial)
--   regret:       best final accuracy minus the best final accuracy among runs trained to the end
--   recall_top:   share of the true top 10% trained to the end; top_missed: how many were stopped
CREATE TABLE IF NOT EXISTS replays (
    study            VARCHAR NOT NULL,
    policy           VARCHAR NOT NULL,
    family           VARCHAR NOT NULL,
    setting          VARCHAR NOT NULL,
    deployable       BOOLEAN NOT NULL,
    rung             INTEGER,
    feature_set      VARCHAR,
    source           VARCHAR,
    keep_fraction    DOUBLE,
    alpha            DOUBLE,
    order_index      INTEGER NOT NULL,
    workers          INTEGER NOT NULL,
    epochs           INTEGER NOT NULL,
    epochs_fraction  DOUBLE NOT NULL,
    train_seconds    DOUBLE NOT NULL,
    graph_seconds    DOUBLE NOT NULL,
    decision_seconds DOUBLE NOT NULL,
    seconds          DOUBLE NOT NULL,
    fraction         DOUBLE NOT NULL,
    wall_seconds     DOUBLE NOT NULL,
    runs_kept        INTEGER NOT NULL,
    regret           DOUBLE NOT NULL,
    best_kept        BOOLEAN NOT NULL,
    recall_top       DOUBLE NOT NULL,
    top_missed       INTEGER NOT NULL,
    replayed_at      TIMESTAMP NOT NULL   -- a replay replaces all of its study's rows (no key: rung etc. may be NULL)
);
