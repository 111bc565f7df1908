"""Shared command-line handling for the flows: --spec/--warehouse and readable errors."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from pipeline_lib.datasets import DatasetUnavailable
from pipeline_lib.placement import DeviceUnavailable, plan_placement
from pipeline_lib.spec import ExecutionSpec, SpecError, Study, load_study
from warehouse.db import DEFAULT_PATH, WarehouseError

USER_ERRORS = (SpecError, DatasetUnavailable, DeviceUnavailable)


def study_arguments(description: str, execution: bool = True) -> argparse.ArgumentParser:
    """--spec and --warehouse, plus the execution overrides for stages that fan out work."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="study spec (YAML)")
    parser.add_argument("--warehouse", default=str(DEFAULT_PATH), help="DuckDB file (default: %(default)s)")
    if not execution:
        return parser
    scale = parser.add_argument_group("execution (overrides the spec's execution: section)")
    scale.add_argument("--runner", choices=["local", "ray"], help="local process pool or a Ray cluster")
    scale.add_argument("--ray-address", help="Ray cluster address (implies --runner ray), e.g. 10.0.0.5:6379")
    scale.add_argument("--data-dir", help="where snapshots and node metrics go (shared by all nodes on a cluster)")
    return parser


def execution_from_args(args: argparse.Namespace, study: Study) -> ExecutionSpec:
    """The spec's execution section with the command line's choices applied on top."""
    overrides = {"runner": args.runner or ("ray" if args.ray_address else None),
                 "ray_address": args.ray_address, "data_dir": args.data_dir}
    return ExecutionSpec.model_validate({**study.execution.model_dump(),
                                         **{k: v for k, v in overrides.items() if v is not None}})


def load_runnable_study(path: str, trains: bool = False, cross_validates: bool = False) -> Study:
    """The validated spec, checked against what the stages about to run need (the training device
    on this machine, configurations for grouped cross-validation), before Prefect starts or the
    warehouse file is created."""
    study = load_study(path)
    try:
        if trains:
            plan_placement(study.device, study.runs_per_device)
        if cross_validates:
            study.check_cross_validation()
    except (DeviceUnavailable, SpecError) as e:
        field = "device: " if isinstance(e, DeviceUnavailable) else ""
        raise SpecError(f"invalid study spec {path}:\n  {field}{e}") from None
    return study


def run_cli(main: Callable[[], object]) -> None:
    """Run a flow entry point; bad input ends with a readable message and exit status 2, no traceback;
    a warehouse that cannot be written ends with the original error and exit status 1."""
    try:
        main()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except WarehouseError as e:  # the disk, a permission or a lock: said last, plainly, whatever was logged before
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def run_warehouse_stage(flow_fn: Callable[[str, str], object], description: str,
                        cross_validates: bool = False) -> None:
    """Command line of a stage that only reads and writes the warehouse (no fan-out to configure)."""
    def main() -> None:
        args = study_arguments(description, execution=False).parse_args()
        load_runnable_study(args.spec, cross_validates=cross_validates)  # before starting Prefect
        flow_fn(args.spec, args.warehouse)

    run_cli(main)
