"""Acting on predictions: which runs to stop, at what cost (no Prefect)."""
