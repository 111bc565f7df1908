"""The study context: the spec, the open warehouse (with the data directory the study owns) and the
execution settings, opened once at the edge (a command line, a deployment's flow run) and handed to
every stage; and the narrow port through which a stage asks the orchestration (`flows._orchestration`:
Prefect) to fan its units of work out, to run a nested stage, or to publish a table."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from pipeline_lib.layout import DataLayout
from pipeline_lib.placement import WorkerPlan
from pipeline_lib.spec import ExecutionSpec, SpecError, Study, load_study
from warehouse.db import DEFAULT_PATH, Warehouse


class Work(StrEnum):
    """The units of work stages fan out; the orchestration runs each as its task."""

    TRAIN_RUN = "train_run"
    TRAIN_GROUP = "train_group"
    GRAPH_BATCH = "graph_batch"
    FEATURES = "features"
    CROSS_VALIDATE = "cross_validate"
    TRANSFER = "transfer"


@dataclass(frozen=True)
class Failed:
    """A unit whose task raised: "<type>: <message>", for the stage to record against the unit's items."""

    error: str

    @classmethod
    def of(cls, e: BaseException) -> "Failed":
        return cls(f"{type(e).__name__}: {e}")


@dataclass(frozen=True)
class UnitFailures:
    """How many of a stage's units failed (each logged by the stage; the others were written): the
    command goes on to its later stages, then exits 1 saying so (`flows._cli.run_cli`)."""

    failed: int
    total: int
    units: str  # what a unit is
    redo: str  # where the failures are kept, what redoes them

    def __str__(self) -> str:
        return f"{self.failed} of {self.total} {self.units} failed ({self.redo})"


_FAILURES: ContextVar[list[UnitFailures] | None] = ContextVar("unit_failures", default=None)


@contextmanager
def collect_unit_failures() -> Iterator[list[UnitFailures]]:
    """The unit failures the stages run inside report (`StudyContext.report_failures`): a command line
    reads them for its exit status, whichever flows and subflows ran its stages (all in its thread)."""
    failures: list[UnitFailures] = []
    token = _FAILURES.set(failures)
    try:
        yield failures
    finally:
        _FAILURES.reset(token)


@dataclass(frozen=True)
class Detail:
    """A second progress line the stage counts itself (e.g. epochs from the tasks' progress files)."""

    label: str
    total: int
    completed: Callable[[], int]


class Orchestration(Protocol):
    def fan_out(self, work: Work, parameters: list[dict], execution: ExecutionSpec, plan: WorkerPlan, *,
                label: str, sizes: list[int] | None = None, on_result: Callable[[int, Any], None] | None = None,
                detail: Detail | None = None) -> list:
        """`work` on every parameter set; the results (or `Failed`) in the order of `parameters`."""

    def stage(self, name: str, run: Callable[..., Any], context: "StudyContext", **options) -> Any:
        """`run(context, **options)` as a stage of its own (named `name`)."""

    def publish_table(self, rows: list[dict], key: str, description: str) -> None:
        """A table for the user beside the logs (the Prefect UI's artifacts)."""


@dataclass(frozen=True)
class StudyContext:
    """What every stage works on; `open_context` makes it."""

    study: Study
    warehouse: Warehouse
    execution: ExecutionSpec
    orchestration: Orchestration

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.warehouse.data_dir)

    def fan_out(self, work: Work, parameters: list[dict], plan: WorkerPlan, **display) -> list:
        return self.orchestration.fan_out(work, parameters, self.execution, plan, **display)

    def stage(self, name: str, run: Callable[..., Any], **options) -> Any:
        return self.orchestration.stage(name, run, self, **options)

    def report_failures(self, failed: int, total: int, units: str, redo: str) -> None:
        """`failed` of the stage's `total` units failed (the stage logged them and wrote the others): the
        command line ends non-zero with the count (`collect_unit_failures`)."""
        collector = _FAILURES.get()
        if failed and collector is not None:
            collector.append(UnitFailures(failed, total, units, redo))


def open_context(spec: str | Path, warehouse: str | Path | None, execution: ExecutionSpec | None,
                 orchestration: Orchestration) -> StudyContext:
    """The study of the spec file, its warehouse (default `warehouse.db.DEFAULT_PATH`) with the data
    directory the study owns, and the execution settings (`execution`, else the spec's)."""
    study = load_study(spec)
    execution = execution or study.execution
    return StudyContext(study, open_warehouse(warehouse, execution, study.name), execution, orchestration)


class DataDirConflict(SpecError):
    """A data_dir asked for a study whose snapshots and node metrics already lie elsewhere."""


def owned_data_dir(path: str | Path, study: str, requested: str | None) -> Path | None:
    """The study's data directory: the one `studies` records once a stage has run, else `requested`
    (None: beside the warehouse file). Stages after the first need no data_dir; one naming another
    directory is refused, since a study's node metrics must lie beside its snapshots. Reads only:
    a warehouse file that does not exist yet is not created."""
    wanted = Path(requested).resolve() if requested else None
    if not Path(path).exists():
        return wanted
    recorded = Warehouse(path).query("SELECT data_dir FROM studies WHERE study = ?", [study])["data_dir"]
    if recorded.is_empty():
        return wanted
    owned = Path(recorded[0])
    if wanted is not None and wanted != owned:
        raise DataDirConflict(f"study {study} keeps its snapshots and node metrics in {owned} (studies.data_dir "
                              f"of {Path(path).resolve()}); data_dir {wanted} was asked for. Leave --data-dir (and "
                              f"execution.data_dir) out to use the study's, or use another warehouse.")
    return owned


def open_warehouse(path: str | Path | None, execution: ExecutionSpec, study: str) -> Warehouse:
    """The warehouse file, with the data directory the study owns (`owned_data_dir`)."""
    path = path or DEFAULT_PATH
    return Warehouse(path, data_dir=owned_data_dir(path, study, execution.data_dir))
