-- Stacked training groups: which runs trained together, where, and where the time went.
CREATE TABLE IF NOT EXISTS training_groups (
    study                  VARCHAR NOT NULL,
    group_id               VARCHAR NOT NULL,  -- hash of the group's run_ids
    run_ids                VARCHAR[] NOT NULL,
    device                 VARCHAR NOT NULL,  -- cpu | cuda:N
    lane_widths            INTEGER[],         -- runs per wide model
    model_epochs           INTEGER,           -- epochs trained by this call (0 when all were finished)
    wall_seconds           DOUBLE,
    train_seconds          DOUBLE,
    eval_seconds           DOUBLE,
    snapshot_wait_seconds  DOUBLE,            -- training blocked on the snapshot writer's full queue
    writer_busy_seconds    DOUBLE,            -- background thread writing snapshots and state files
    gpu_utilization        DOUBLE,            -- percent, mean of samples (NULL on CPU or without NVML)
    max_memory_mb          DOUBLE,            -- peak allocated GPU memory (NULL on CPU)
    options_json           VARCHAR,           -- the stack options used
    updated_at             TIMESTAMP NOT NULL,
    PRIMARY KEY (study, group_id)
);
