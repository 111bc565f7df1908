"""Fitted predictors kept for scoring new runs: fitted on every finished run of a study, saved with
skops (no pickle: loading admits only the types it is told to trust), and refused when the file
changed since it was registered or when what reads it back changed: the model code and the library
versions `fingerprints.PREDICTOR` pins (an edit elsewhere in the project leaves them loadable).

Trust: skops trusts scikit-learn's own estimators; beyond them a saved predictor may hold only
TRUSTED_TYPES (the project's rank-correlation scorer, numpy dtypes, the boosting trees). A file
holding anything else is refused, whatever its digest says.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import skops.io as sio
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from pipeline_lib.files import atomic_write
from pipeline_lib.fingerprints import predictor_pins
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


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(model: Pipeline, path: str | Path) -> str:
    """Write the model with skops (temporary name, then rename); returns the file's sha256.
    Deflated: skops keeps each boosting tree's arrays as separate entries (650 kB -> 270 kB)."""
    atomic_write(path, lambda tmp: sio.dump(model, tmp, compression=zipfile.ZIP_DEFLATED))
    return file_digest(path)


def changed_pins(registered: str) -> list[str]:
    """What differs between the pins a predictor was registered with (JSON, `predictor_pins`) and this
    checkout's, e.g. ['scikit-learn 1.5.2 -> 1.6.1']; empty when nothing does."""
    now = json.loads(predictor_pins())
    try:
        then = json.loads(registered)
    except json.JSONDecodeError:  # registered before the pins: a digest of the whole prediction package
        return [f"pins {registered[:12]}... (from before model code and library versions were pinned)"]
    return [f"{name} {str(then.get(name))[:12]} -> {str(value)[:12]}" for name, value in now.items()
            if then.get(name) != value]


def load(path: str | Path, expected_file_digest: str, pins: str) -> Pipeline:
    """The saved model, or RegistryError when the file, the model code or a library version is not
    what was registered, or the file holds types outside skops' defaults and TRUSTED_TYPES."""
    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"predictor file {path} is missing; re-register the study's predictors (python -m "
                            "flows.register --spec SPEC --warehouse FILE fits missing or changed files again)")
    found = file_digest(path)
    if found != expected_file_digest:
        raise RegistryError(f"predictor file {path} has sha256 {found[:12]}..., but {expected_file_digest[:12]}... was "
                            "registered: the file was changed or replaced since; refusing to load it. "
                            "Re-register the study's predictors to refit it (python -m flows.register --spec SPEC "
                            "--warehouse FILE).")
    changed = changed_pins(pins)
    if changed:
        raise RegistryError(f"predictor file {path} was saved under other model code or libraries "
                            f"({'; '.join(changed)}); refusing to load it. Re-register to refit.")
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if untrusted:
        raise RegistryError(f"predictor file {path} holds types that are not trusted: {', '.join(untrusted)}")
    return sio.load(path, trusted=list(TRUSTED_TYPES))
