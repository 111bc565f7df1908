-- Files found damaged and moved to <data_dir>/quarantine/ (never deleted); their unit was redone.
CREATE TABLE IF NOT EXISTS quarantined_files (
    quarantined_path VARCHAR PRIMARY KEY,  -- where the file lies now
    path VARCHAR NOT NULL,                 -- where it was
    error VARCHAR NOT NULL,                -- why it could not be used
    quarantined_at TIMESTAMP NOT NULL
);
