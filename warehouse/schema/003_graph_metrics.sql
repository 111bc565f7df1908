-- Graph stage, additions to 002: per-snapshot spectral facts and how distances were computed.
ALTER TABLE graphs ADD COLUMN IF NOT EXISTS perron_value DOUBLE;  -- lambda_1 of A + A^T (undirected adjacency)
ALTER TABLE graphs ADD COLUMN IF NOT EXISTS katz_alpha DOUBLE;    -- alpha used for Katz (katz_factor / perron_value)
ALTER TABLE graphs ADD COLUMN IF NOT EXISTS pivots INTEGER;       -- sampled sources for closeness/betweenness; 0 = exact
-- node_metrics is a view over <data_dir>/node_metrics/*/*/nodes.parquet, made on every open by warehouse.db
-- once node files exist (the data_dir is a property of the warehouse, not of the schema).
