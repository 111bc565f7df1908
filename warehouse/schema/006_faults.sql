-- Files found damaged and moved to <data_dir>/quarantine/ (never deleted); their unit was redone.
CREATE TABLE IF NOT EXISTS quarantined_files (
    quarantined_path VARCHAR PRIMARY KEY,  -- where the file lies now
    path VARCHAR NOT NULL,                 -- where it was
    error VARCHAR NOT NULL,                -- why it could not be used
    quarantined_at TIMESTAMP NOT NULL
);

-- Relative gap between the top two eigenvalues of A + A^T / singular values of A: below
-- properties.MIN_GAP the eigenvector / hub and authority are not determined and stored as NULL.
ALTER TABLE graphs ADD COLUMN IF NOT EXISTS perron_gap DOUBLE;
ALTER TABLE graphs ADD COLUMN IF NOT EXISTS hits_gap DOUBLE;
