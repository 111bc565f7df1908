"""Shared command-line handling for the flows: --spec/--warehouse and readable errors."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
from typing import Callable

from pipeline_lib.datasets import DatasetUnavailable
from pipeline_lib.placement import DeviceUnavailable, plan_placement
from pipeline_lib.files import DamagedFile
from pipeline_lib.spec import ExecutionSpec, SpecError, Study, load_study
from warehouse.db import DEFAULT_PATH, WarehouseError

from ._runtime import owned_data_dir

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
    """The spec's execution section with the command line's choices applied on top; a data_dir other
    than the one the study owns is refused here, before Prefect starts (`owned_data_dir`)."""
    overrides = {"runner": args.runner or ("ray" if args.ray_address else None),
                 "ray_address": args.ray_address, "data_dir": args.data_dir}
    execution = ExecutionSpec.model_validate({**study.execution.model_dump(),
                                              **{k: v for k, v in overrides.items() if v is not None}})
    owned_data_dir(args.warehouse, study.name, execution.data_dir)
    return execution


def load_runnable_study(path: str, trains: bool = False, cross_validates: bool = False) -> Study:
    """The validated spec, checked against what the stages about to run need (the training device
    on this machine, configurations for grouped cross-validation), before Prefect starts or the
    warehouse file is created."""
    study = load_study(path)
    try:
        if trains:
            plan_placement(study.execution.device, study.execution.runs_per_device)
        if cross_validates:
            study.check_cross_validation()
    except (DeviceUnavailable, SpecError) as e:
        field = "execution.device: " if isinstance(e, DeviceUnavailable) else ""
        raise SpecError(f"invalid study spec {path}:\n  {field}{e}") from None
    return study


INTERRUPTED = 130  # the shell's status for a command ended by SIGINT


def _say(text: str) -> None:
    """Write straight to stderr: the interrupted code may be inside a write to sys.stderr or a logging
    handler, and re-entering those from a signal handler fails."""
    os.write(2, (text + "\n").encode())


def _stop_on_interrupt(signum, frame) -> None:
    """First Ctrl-C: end the pool workers and the temporary Prefect server, say what was kept, exit.

    Not through Prefect's own interrupt handling: the terminal's SIGINT also reaches the temporary
    server, and a flow that reports its end to a stopped server waits for it forever. Every finished
    epoch is already on disk (state file and snapshot, written atomically) and every loaded batch in
    the warehouse, so stopping now loses at most the epochs and batches in flight.
    """
    signal.signal(signal.SIGINT, lambda *_: os._exit(INTERRUPTED))  # a second Ctrl-C: at once
    _say("\ninterrupted: stopping the workers (Ctrl-C again to exit at once)")
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join(timeout=5)
    server_module = sys.modules.get("prefect.server.api.server")  # never import in a handler: the import lock
    for server in list(server_module.SubprocessASGIServer._instances.values()) if server_module else []:
        if server.server_process is not None:
            server.server_process.kill()
            server.server_process.wait(timeout=5)
    _say("stopped. Finished epochs, snapshots and loaded graphs are kept; run the same command again "
         "to resume from them.")
    os._exit(INTERRUPTED)


def run_cli(main: Callable[[], object], user_errors: tuple[type[Exception], ...] = ()) -> None:
    """Run a flow entry point; bad input (USER_ERRORS, and the entry point's own `user_errors`)
    ends with a readable message and exit status 2, no traceback;
    a warehouse that cannot be written or a damaged data file ends with the original error, naming
    the file, and exit status 1; Ctrl-C stops within seconds with status 130."""
    previous = signal.signal(signal.SIGINT, _stop_on_interrupt)
    try:
        main()
    except (*USER_ERRORS, *user_errors) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (WarehouseError, DamagedFile) as e:  # said last and plainly (file named), whatever was logged before
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, previous)


def run_warehouse_stage(flow_fn: Callable[..., object], description: str, cross_validates: bool = False,
                        fans_out: bool = False) -> None:
    """Command line of a stage that reads and writes the warehouse; one that `fans_out` work
    (`flows._fanout`) also takes the execution overrides (--runner, --ray-address, --data-dir)."""
    def main() -> None:
        args = study_arguments(description, execution=fans_out).parse_args()
        study = load_runnable_study(args.spec, cross_validates=cross_validates)  # before starting Prefect
        if fans_out:
            flow_fn(args.spec, args.warehouse, execution_from_args(args, study))
        else:
            flow_fn(args.spec, args.warehouse)

    run_cli(main)
