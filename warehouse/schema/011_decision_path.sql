-- The cost of the decision path (pipeline_lib/decisions/path_cost.py): rows of `costs` that price
-- scoring a run with a registered predictor, measured, beside what RQ3 charges.
--   strategy decision_path (k, feature_set, predictor): the graph work for just the quantities the
--            predictor's kept columns read; graph_stage (k): every property on the same snapshots.
--   seconds = snapshot_seconds x the study's snapshots at epochs 0..k; fraction = seconds / train_all.
--   runs_to_end and best_final_acc are NULL on these rows: they decide nothing by themselves.
ALTER TABLE costs ALTER COLUMN runs_to_end DROP NOT NULL;
ALTER TABLE costs ADD COLUMN IF NOT EXISTS properties VARCHAR[];        -- graph quantities computed per snapshot
ALTER TABLE costs ADD COLUMN IF NOT EXISTS snapshot_seconds DOUBLE;     -- measured graph seconds per snapshot (mean of a sample)
ALTER TABLE costs ADD COLUMN IF NOT EXISTS epoch_seconds DOUBLE;        -- recorded training seconds per model-epoch (mean)
ALTER TABLE costs ADD COLUMN IF NOT EXISTS snapshots_timed INTEGER;     -- the sample's size
