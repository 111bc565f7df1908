-- One notion of done (pipeline_lib/fingerprints.py): every unit stores a fingerprint of the options
-- and the code that made it; a stage computes again the units whose fingerprint is not the current
-- one. Rows from before this migration have NULL and are therefore computed again once.
ALTER TABLE graphs ADD COLUMN IF NOT EXISTS fingerprint VARCHAR;    -- graph options used + graph code
ALTER TABLE features ADD COLUMN IF NOT EXISTS fingerprint VARCHAR;  -- feature code (+ the graphs read)
