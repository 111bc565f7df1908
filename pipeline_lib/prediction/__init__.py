"""Predicting final accuracy from early-epoch features: targets, predictors, grouped evaluation,
the seed-agreement noise ceiling, and compute costs (scikit-learn, Polars; no Prefect)."""
