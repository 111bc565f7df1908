"""Evaluation flow: grouped cross-validation of every predictor on every feature set and k.

    python -m flows.evaluate --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Writes out-of-fold `predictions`, `evaluations` (pooled metrics with configuration-bootstrap
intervals), paired `comparisons` and `costs`; skipped when its inputs have not changed
(`pipeline_lib.fingerprints.EVALUATE`). The stage: stages/evaluate.py.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.spec import ExecutionSpec
from stages import evaluate as stage

from ._orchestration import run_stage, study_context


@flow(name="evaluate", log_prints=True)
def evaluate(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None) -> dict:
    """Cross-validate everything; returns counts of what was written (or that it was up to date).
    `execution` overrides the spec's."""
    with study_context(spec, warehouse, execution) as context:
        return run_stage(stage.run, context)


if __name__ == "__main__":
    run_warehouse_stage(evaluate, __spec__.name, __doc__, cross_validates=True)
