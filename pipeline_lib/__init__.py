"""The library: specs, datasets, model families, training, snapshots, graphs, features, predictors.

Nothing here imports Prefect; training needs only torch and pyarrow.
"""
