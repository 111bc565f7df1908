"""Feature flow: feature vectors from the first k epochs of every finished run, into `features`.

    python -m flows.features --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Computes, per k of predict.k_epochs and base feature set, the units not stored with their current
fingerprint (`pipeline_lib.fingerprints.FEATURES`, one per base set); re-running with the same code and graphs
computes nothing. The stage: stages/features.py.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.spec import ExecutionSpec
from stages import features as stage

from ._orchestration import run_stage, study_context


@flow(name="features", log_prints=True)
def features(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None) -> dict:
    """Compute the feature units that are missing or stale; returns how many units were written per base
    set. `execution` overrides the spec's."""
    with study_context(spec, warehouse, execution) as context:
        return run_stage(stage.run, context)


if __name__ == "__main__":
    run_warehouse_stage(features, __spec__.name, __doc__)
