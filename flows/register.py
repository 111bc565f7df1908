"""Registry flow: fit every predictor on all finished runs of the study and save it for later scoring.

    .venv/bin/python -m flows.register --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Each (feature set, k, task, predictor) whose features cover every finished run is fitted on all of
them, saved with skops under <data_dir>/predictors/<id>.skops and recorded in `predictors` with its
pooled cross-validated metrics and intervals (from `evaluations`, so run it after evaluate), the
columns it reads and the digests that loading checks (`warehouse.registry.load_predictor`). Then
the cost of the decision path: per k, the best predictor's (and the best graph predictor's) graph
work per snapshot for just the quantities it reads, against every property, measured on a sample of
the study's snapshots, beside the training seconds per model-epoch, into `costs`
(`warehouse.decision_path`).
Skipped when the prediction stage's inputs (features, run outcomes, spec, prediction code) and the
registration's own code (what it stores beside each predictor) have not changed.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow, get_run_logger

from pipeline_lib.decisions import path_cost, uncertainty
from pipeline_lib.fingerprints import digest, source_digest
from pipeline_lib.layout import DataLayout
from warehouse import decision_path
from warehouse import registry as registration
from warehouse.db import Warehouse
from warehouse.predict import record_stage, stage_inputs

from ._prediction import open_stage

STAGE = "register"


def _fingerprint(wh: Warehouse, study) -> str:
    """The prediction inputs plus the registration code: a change to what is stored with each
    predictor (e.g. its out-of-fold residuals) re-registers."""
    return digest(stage_inputs(wh, study), source_digest(registration, uncertainty, decision_path, path_cost))


@flow(name="register", log_prints=True)
def register(spec: str, warehouse: str | None = None) -> dict:
    """Fit, save and record the study's predictors and their decision path's cost; returns how many
    predictors (or that they were up to date)."""
    logger = get_run_logger()
    study, wh, fingerprint = open_stage(spec, warehouse, STAGE, _fingerprint)
    if fingerprint is None:
        return {"up_to_date": True}
    rows = registration.register_study(wh, study)
    logger.info("registered %d predictors of %s under %s", rows.height, study.name, DataLayout(wh.data_dir).predictors)
    for r in decision_path.record_decision_path(wh, study).iter_rows(named=True):
        what = f"{r['feature_set']}/{r['predictor']}" if r["feature_set"] else "every property"
        logger.info("k = %d, %s: %.4f s of graph work per snapshot (%s) against %.4f s of training per "
                    "model-epoch; for every run's snapshots 0..k, %.0f%% of training every run to the end", r["k"],
                    what, r["snapshot_seconds"], ", ".join(r["properties"]) or "none", r["epoch_seconds"],
                    100 * r["fraction"])
    record_stage(wh, study.name, STAGE, fingerprint)
    return {"predictors": rows.height}


if __name__ == "__main__":
    run_warehouse_stage(register, __spec__.name, __doc__, cross_validates=True)
