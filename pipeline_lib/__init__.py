"""The library: specs, datasets, model families, training, snapshots, graphs, features, predictors.

Nothing here imports Prefect; training needs only torch and pyarrow.

Public API for your own training loop (`pipeline_lib.api`): Predictor, History, Prediction,
PredictionError, ModelNotTraceable; exported here lazily, so importing a library module does not
load them.
"""

_API = ("History", "ModelNotTraceable", "Prediction", "PredictionError", "Predictor")


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_API)
