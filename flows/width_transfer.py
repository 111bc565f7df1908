"""Transfer flow (RQ2): fit on some widths and predict others, both ways, and leave one
architecture out.

    python -m flows.width_transfer --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Splits width_transfer, width_transfer_reverse and leave_out:<architecture>, with the same feature
sets, predictors and pooled metrics as the cross-validation; skipped when its inputs have not
changed (`pipeline_lib.fingerprints.WIDTH_TRANSFER`). The stage: stages/width_transfer.py.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.spec import ExecutionSpec
from stages import width_transfer as stage

from ._orchestration import run_stage, study_context


@flow(name="width-transfer", log_prints=True)
def width_transfer(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None) -> dict:
    """Fit and test every transfer direction; returns counts. `execution` overrides the spec's."""
    with study_context(spec, warehouse, execution) as context:
        return run_stage(stage.run, context)


if __name__ == "__main__":
    run_warehouse_stage(width_transfer, __spec__.name, __doc__)
