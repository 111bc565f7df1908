"""Training sweep flow: expand a study into runs and train them concurrently, then load the warehouse.

    python -m flows.train_sweep --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Runs train in stacked groups (or one task per run) on a process pool or Ray; finished runs are read
back, interrupted runs resume; with a `triage:` section runs train rung by rung, the triage decides
once per rung which continue, and those kept at the last rung train to the end. The stage:
stages/train_sweep.py.
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, execution_from_args, load_runnable_study, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.spec import ExecutionSpec
from stages import train_sweep as stage

from ._orchestration import run_stage, study_context
from .triage import TRIAGE_ERRORS, check_triage, restart_triage


@flow(name="train-sweep", log_prints=True)
def train_sweep(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None,
                until_epoch: int | None = None, run_ids: list[str] | None = None) -> dict:
    """Train every run of the study (or those of `run_ids`, to `until_epoch` at most); returns counts
    by status. `execution` overrides the spec's."""
    with study_context(spec, warehouse, execution) as context:
        return run_stage(stage.run, context, {"until_epoch": until_epoch, "run_ids": run_ids})


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    study = load_runnable_study(args.spec, trains=True)  # before Prefect starts, so bad specs fail fast and plainly
    check_warehouse("train_sweep", args, study.name)
    execution = execution_from_args(args, study)
    if args.restart_triage:
        restart_triage(args.warehouse, study)
    check_triage(args.warehouse, study)
    train_sweep(args.spec, args.warehouse, execution)


if __name__ == "__main__":
    run_cli(main, user_errors=TRIAGE_ERRORS)
