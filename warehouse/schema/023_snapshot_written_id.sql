-- Each snapshot file's `written_id` (pipeline_lib/snapshots.py), new at every write: when a run is
-- trained again its snapshots get new ids, and record_runs drops the graphs and features made from
-- the old ones. NULL for snapshots recorded before the ids (never taken as changed).
ALTER TABLE snapshots ADD COLUMN IF NOT EXISTS written_id VARCHAR;
