"""Registry flow: fit every predictor on all finished runs of the study and save it for later scoring.

    .venv/bin/python -m flows.register --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Each (feature set, k, task, predictor) whose features cover every finished run is fitted on all of
them, saved with skops under <data_dir>/predictors/<id>.skops and recorded in `predictors` (run it
after evaluate: it records their cross-validated metrics); then the decision path's cost into
`costs`. Skipped when nothing it reads changed (`pipeline_lib.fingerprints.REGISTER`). The stage:
stages/register.py.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from stages import register as stage

from ._orchestration import run_stage, study_context


@flow(name="register", log_prints=True)
def register(spec: str, warehouse: str | None = None) -> dict:
    """Fit, save and record the study's predictors and their decision path's cost; returns how many
    predictors (or that they were up to date)."""
    with study_context(spec, warehouse) as context:
        return run_stage(stage.run, context)


if __name__ == "__main__":
    run_warehouse_stage(register, __spec__.name, __doc__, cross_validates=True)
