-- The replay's share of the true top 5 by final accuracy trained to their end (`replay.judge`'s
-- top5_kept; the decision race of curve-only policies reads it, docs/results/race.md). Rows replayed
-- before it hold NULL.
ALTER TABLE replays ADD COLUMN IF NOT EXISTS top5_kept DOUBLE;
