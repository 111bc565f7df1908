-- Core tables: studies, their runs, per-epoch metrics and the snapshot index.
-- Every file in warehouse/schema/ is applied in name order on open; statements must be idempotent.

CREATE TABLE IF NOT EXISTS studies (
    study       VARCHAR PRIMARY KEY,
    spec_json   VARCHAR NOT NULL,      -- the validated spec, as JSON
    data_dir    VARCHAR NOT NULL,      -- where snapshots and node metrics of this warehouse lie
    updated_at  TIMESTAMP NOT NULL
);

-- One row per (study, run). run_id hashes the full configuration (not the study name), so
-- identical runs in two studies share their snapshots.
CREATE TABLE IF NOT EXISTS runs (
    study           VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    config_id       VARCHAR NOT NULL,  -- hyper-parameter configuration; seeds of one config share it
    architecture    VARCHAR NOT NULL,
    width           DOUBLE NOT NULL,
    depth           INTEGER NOT NULL,
    dataset         VARCHAR NOT NULL,
    dataset_subset  INTEGER,
    lr              DOUBLE NOT NULL,
    dropout         DOUBLE NOT NULL,
    weight_decay    DOUBLE NOT NULL,
    optimizer       VARCHAR NOT NULL,
    batch_size      INTEGER NOT NULL,
    seed            INTEGER NOT NULL,
    epochs          INTEGER NOT NULL,  -- planned epochs
    status          VARCHAR NOT NULL,  -- pending | running (paused by triage) | completed | diverged | stopped | failed
    epochs_done     INTEGER NOT NULL,
    diverged_epoch  INTEGER,
    final_test_acc  DOUBLE,            -- test accuracy after the last epoch (NULL unless completed)
    train_seconds   DOUBLE,            -- summed training time over epochs, evaluation excluded
    device          VARCHAR,
    error           VARCHAR,
    updated_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (study, run_id)
);

CREATE TABLE IF NOT EXISTS epoch_metrics (
    run_id      VARCHAR NOT NULL,
    epoch       INTEGER NOT NULL,      -- 0 = at initialisation
    train_loss  DOUBLE,
    train_acc   DOUBLE,
    test_loss   DOUBLE,
    test_acc    DOUBLE,
    seconds     DOUBLE,                -- training time of this epoch
    PRIMARY KEY (run_id, epoch)
);

CREATE TABLE IF NOT EXISTS snapshots (
    run_id    VARCHAR NOT NULL,
    epoch     INTEGER NOT NULL,
    path      VARCHAR NOT NULL,
    bytes     BIGINT NOT NULL,
    n_params  BIGINT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
