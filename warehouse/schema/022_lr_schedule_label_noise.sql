-- Two knobs of a run's configuration (pipeline_lib/spec.py): its learning-rate schedule (as
-- `LrSchedule.label` writes it) and the fraction of its training labels replaced. Runs from before
-- trained at a constant rate on clean labels.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS lr_schedule VARCHAR DEFAULT 'constant';
ALTER TABLE runs ADD COLUMN IF NOT EXISTS label_noise DOUBLE DEFAULT 0.0;
