"""Every flow's command line, and the checks and readable errors around it.

Light on purpose (argparse and the standard library; the rest is imported where used): each flow
module calls `answer_early` before its own heavy imports (Prefect, torch, ...), so `--help` and
usage errors answer at once. Then its `main` parses the same command line again and runs
`check_warehouse` before Prefect starts: a warehouse in a directory that does not exist is refused
unless asked to create it, and a stage whose inputs are not in the warehouse yet says which command
to run first.
"""
from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from flows._interrupt import stop_on_interrupt
from warehouse import DEFAULT_PATH

if TYPE_CHECKING:
    from pipeline_lib.spec import ExecutionSpec, Study

FANS_OUT = {"study", "train_sweep", "graph_metrics", "features", "evaluate", "width_transfer"}
CREATES = {"study", "train_sweep"}  # the commands that may start a warehouse; the others read what these wrote
TRAIN = "flows.train_sweep"
# What a stage reads, per command: (table with rows of the study, the command that writes them). The
# others that do not create a warehouse need its file (flows.score says itself what a study lacks).
NEEDS = {
    "graph_metrics": [("runs", TRAIN)],
    "features": [("runs", TRAIN)],
    "evaluate": [("runs", TRAIN), ("features", "flows.features")],
    "width_transfer": [("runs", TRAIN), ("features", "flows.features")],
    "register": [("runs", TRAIN), ("features", "flows.features"), ("evaluations", "flows.evaluate")],
    "report": [("runs", TRAIN), ("evaluations", "flows.evaluate")],
    "replay": [("runs", TRAIN), ("features", "flows.features")],  # evaluations only add the oracle
}


class CommandLineError(Exception):
    """Bad input on the command line itself (not in the spec): exit status 2."""


def study_arguments(description: str, execution: bool = True, creates: bool = False,
                    prog: str | None = None) -> argparse.ArgumentParser:
    """--spec and --warehouse, plus the execution overrides for stages that fan out work and
    --create-warehouse for those that may start a warehouse."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--spec", required=True, help="study spec (YAML)")
    parser.add_argument("--warehouse", default=str(DEFAULT_PATH), help="DuckDB file (default: %(default)s)")
    if creates:
        parser.add_argument("--create-warehouse", action="store_true",
                            help="create the --warehouse file's directory if it does not exist (else refused: a "
                                 "mistyped path would start an empty warehouse and train everything again)")
    if not execution:
        return parser
    scale = parser.add_argument_group("execution (overrides the spec's execution: section)")
    scale.add_argument("--runner", choices=["local", "ray"], help="local process pool or a Ray cluster")
    scale.add_argument("--ray-address", help="Ray cluster address (implies --runner ray), e.g. 10.0.0.5:6379")
    scale.add_argument("--data-dir", help="where snapshots and node metrics go (shared by all nodes on a cluster)")
    return parser


def command_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The command line of `flows.<command>`."""
    parser = study_arguments(description, execution=command in FANS_OUT, creates=command in CREATES,
                             prog=f"python -m flows.{command}")
    if command in ("train_sweep", "study"):
        parser.add_argument("--restart-triage", action="store_true",
                            help="start the study's recorded triage over: forget its decisions, train the runs it "
                                 "stopped again from the start, and decide every rung anew (the kept runs go on)")
    if command == "graph_metrics":
        parser.add_argument("--recompute", action="store_true", help="recompute snapshots already in the warehouse")
        parser.add_argument("--until-epoch", type=int, help="only the snapshots of epochs <= this (e.g. the largest "
                            "predict.k_epochs: what the features read)")
    if command == "score":
        parser.add_argument("--predictor", default="best", help="a registered predictor's id, a study name (its "
                            "best predictor), corpus (the shipped corpus predictor), or best (default)")
        parser.add_argument("--at-epoch", type=int, required=True, help="the epoch k to score at")
        parser.add_argument("--confidence", type=float, default=0.9, help="of the intervals (default: %(default)s)")
    if command == "replay":
        parser.add_argument("--workers", type=int, default=4, help="parallel workers simulated (default: %(default)s)")
        parser.add_argument("--orders", type=int, default=20, help="seeded random launch orders besides the sweep's "
                            "(default: %(default)s)")
    return parser


def parse_arguments(module: str, doc: str) -> argparse.Namespace:
    """The command line of the flow module named `module` (its `__spec__.name`), from sys.argv."""
    return command_parser(module.rpartition(".")[2], doc.splitlines()[0]).parse_args()


def answer_early(name: str, module: str, doc: str) -> None:
    """When the module runs as a command (`name` is __main__), parse its command line now, before the
    module's heavy imports: --help prints and exits, a usage error exits 2, both at once. A quick
    command with no Prefect server configured runs here, in this process, and exits
    (`flows._in_process`)."""
    if name == "__main__":
        args = parse_arguments(module, doc)
        command = module.rpartition(".")[2]
        from ._in_process import QUICK, run_in_process, server_configured

        if command in QUICK and not server_configured():
            run_in_process(command, args)


def check_warehouse(command: str, args: argparse.Namespace, study: str) -> None:
    """Refuse, before Prefect starts, a --warehouse whose directory does not exist (unless
    --create-warehouse), and a stage whose inputs the warehouse does not hold yet (naming the command
    that writes them). Reads only."""
    path = Path(args.warehouse)
    if not path.parent.is_dir():
        if getattr(args, "create_warehouse", False):
            return
        hint = ("pass --create-warehouse to start a new warehouse there" if command in CREATES
                else "so neither does the warehouse (a typo?)")
        raise CommandLineError(f"--warehouse {path}: directory {path.parent} does not exist; {hint}")
    if command in CREATES:
        return

    def first(writer: str) -> str:
        return (f"run .venv/bin/python -m {writer} --spec {args.spec} --warehouse {path} first (flows.study runs "
                "every stage)")

    if not path.is_file():
        raise CommandLineError(f"warehouse {path} does not exist; {first(TRAIN)}")
    from warehouse.db import Warehouse

    wh = Warehouse(path)
    for table, writer in NEEDS.get(command, []):
        if wh.query(f"SELECT count(*) AS n FROM {table} WHERE study = ?", [study])["n"][0] == 0:
            raise CommandLineError(f"warehouse {path} has no {table} of study {study} yet; {first(writer)}")


def execution_from_args(args: argparse.Namespace, study: Study) -> ExecutionSpec:
    """The spec's execution section with the command line's choices applied on top; a data_dir other
    than the one the study owns is refused here, before Prefect starts (`owned_data_dir`)."""
    from pipeline_lib.spec import ExecutionSpec

    from stages.context import owned_data_dir

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
    from pipeline_lib.datasets import check_files
    from pipeline_lib.placement import DeviceUnavailable, plan_placement
    from pipeline_lib.spec import SpecError, load_study

    study = load_study(path)
    try:
        if trains:
            check_files(study.dataset.name, study.dataset.root)
            plan_placement(study.execution.device, study.execution.runs_per_device)
        if cross_validates:
            study.check_cross_validation()
    except (DeviceUnavailable, SpecError) as e:
        field = "execution.device: " if isinstance(e, DeviceUnavailable) else ""
        raise SpecError(f"invalid study spec {path}:\n  {field}{e}") from None
    return study


class _WithoutTraceback(logging.Filter):
    """Drops the traceback from a log record of an exception that the command line reports itself, in
    one line naming its file (Prefect logs a flow's or task's exception with its traceback)."""

    def __init__(self, plain: tuple[type[BaseException], ...]):
        super().__init__()
        self.plain = plain

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.plain):
            record.exc_info = record.exc_text = None
        return True


_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


@contextmanager
def _logged_plainly(plain: tuple[type[BaseException], ...]):
    only_message = _WithoutTraceback(plain)
    for name in _RUN_LOGGERS:
        logging.getLogger(name).addFilter(only_message)
    try:
        yield
    finally:
        for name in _RUN_LOGGERS:
            logging.getLogger(name).removeFilter(only_message)


def _cannot_go_on() -> tuple[type[Exception], ...]:
    """Errors that stop a command and name their file (a damaged one, one that cannot be written)."""
    from pipeline_lib.files import DamagedFile
    from warehouse.db import WarehouseError

    return WarehouseError, DamagedFile, OSError


def start_pool_worker(initializer: Callable[..., None] | None, *initargs) -> None:
    """A process-pool worker's start (`stages.local.ignore_interrupts`); a task that fails on a file is
    logged in one line there too (its stage logs the unit's failure, naming the file)."""
    from stages.local import ignore_interrupts

    for name in _RUN_LOGGERS:
        logging.getLogger(name).addFilter(_WithoutTraceback(_cannot_go_on()))
    ignore_interrupts(initializer, *initargs)


def run_cli(main: Callable[[], object], user_errors: tuple[type[Exception], ...] = ()) -> None:
    """Run a flow entry point; bad input (a bad command line or spec, a dataset or device that is not
    there, and the entry point's own `user_errors`) ends with a readable message and exit status 2, no
    traceback; a warehouse or file that cannot be written (permission, full disk) or a damaged data file
    ends with the original error, naming the file, and exit status 1; so do failed units of a stage,
    after the command wrote what succeeded (their counts: `StudyContext.report_failures`); Ctrl-C stops
    within seconds with status 130."""
    from pipeline_lib.datasets import DatasetUnavailable
    from pipeline_lib.placement import DeviceUnavailable
    from pipeline_lib.spec import SpecError
    from stages.context import collect_unit_failures

    bad_input = (CommandLineError, SpecError, DatasetUnavailable, DeviceUnavailable, *user_errors)
    cannot_go_on = _cannot_go_on()
    try:
        with stop_on_interrupt(), _logged_plainly(bad_input + cannot_go_on), collect_unit_failures() as failures:
            main()
    except bad_input as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except cannot_go_on as e:  # said last and plainly (file named), whatever was logged before
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if failures:
        print(f"error: {'; '.join(map(str, failures))}; see the log above", file=sys.stderr)
        sys.exit(1)


def run_warehouse_stage(flow_fn: Callable[..., object], module: str, doc: str, cross_validates: bool = False) -> None:
    """Command line of a stage that reads and writes the warehouse; one that fans work out
    (`flows._fanout`) also takes the execution overrides (--runner, --ray-address, --data-dir)."""
    def main() -> None:
        args = parse_arguments(module, doc)
        study = load_runnable_study(args.spec, cross_validates=cross_validates)  # before starting Prefect
        command = module.rpartition(".")[2]
        execution = execution_from_args(args, study) if command in FANS_OUT else None
        check_warehouse(command, args, study.name)
        if execution is not None:
            flow_fn(args.spec, args.warehouse, execution)
        else:
            flow_fn(args.spec, args.warehouse)

    run_cli(main)
