"""Fitted predictors kept for scoring new runs: fitted on every finished run of a study, saved with
skops (no pickle: loading admits only the types it is told to trust), and refused when the file or
the prediction code changed since it was registered.

Trust: skops trusts scikit-learn's own estimators; beyond them a saved predictor may hold only
TRUSTED_TYPES (the project's rank-correlation scorer, numpy dtypes, the boosting trees). A file
holding anything else is refused, whatever its digest says.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import skops.io as sio
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

import pipeline_lib.prediction as prediction_package
from pipeline_lib.files import atomic_write
from pipeline_lib.fingerprints import source_digest
from pipeline_lib.prediction.models import inner_splits, make_predictor
from pipeline_lib.vocabulary import Task

TRUSTED_TYPES = ("numpy.dtype", "pipeline_lib.prediction.models.rank_f_score",
                 "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")


class RegistryError(RuntimeError):
    """A registered predictor that cannot be used; the message says why and what to do."""


def fit_on_all(task: str, predictor: str, X: np.ndarray, targets: pl.DataFrame) -> Pipeline:
    """The evaluated pipeline fitted on every run (targets: config_id, final_acc, good), with the
    penalty chosen by the same grouped inner CV as in evaluation. One thread: on a few hundred
    rows OpenMP workers only wait on each other (boosting took 5 s instead of 0.1 s on 2 busy cores)."""
    y = targets["final_acc" if task == Task.REGRESSION else "good"].to_numpy().astype(np.float64)
    splits = inner_splits(task, y, targets["config_id"].to_numpy())
    with threadpool_limits(1):
        return make_predictor(predictor, task, len(y), X.shape[1], splits).fit(X, y)


def prediction_code_digest() -> str:
    """Digest of the prediction package's code: a predictor is only as good as the code it ran."""
    return source_digest(prediction_package)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(model: Pipeline, path: str | Path) -> str:
    """Write the model with skops (temporary name, then rename); returns the file's sha256.
    Deflated: skops keeps each boosting tree's arrays as separate entries (650 kB -> 270 kB)."""
    atomic_write(path, lambda tmp: sio.dump(model, tmp, compression=zipfile.ZIP_DEFLATED))
    return file_digest(path)


def load(path: str | Path, expected_file_digest: str, expected_code_digest: str) -> Pipeline:
    """The saved model, or RegistryError when the file or the code is not what was registered,
    or the file holds types outside skops' defaults and TRUSTED_TYPES."""
    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"predictor file {path} is missing; re-register the study's predictors")
    found = file_digest(path)
    if found != expected_file_digest:
        raise RegistryError(f"predictor file {path} has sha256 {found[:12]}..., but {expected_file_digest[:12]}... was "
                            "registered: the file was changed or replaced since; refusing to load it. "
                            "Re-register the study's predictors to refit it.")
    code = prediction_code_digest()
    if code != expected_code_digest:
        raise RegistryError(f"predictor file {path} was fitted by prediction code {expected_code_digest[:12]}..., "
                            f"this checkout's is {code[:12]}...; refusing to load it. Re-register to refit.")
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if untrusted:
        raise RegistryError(f"predictor file {path} holds types that are not trusted: {', '.join(untrusted)}")
    return sio.load(path, trusted=list(TRUSTED_TYPES))
