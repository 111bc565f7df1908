"""A run's lifecycle, the one both trainers (`training.train_run`, `stacked.train_group`) follow:
its state and store, the divergence rule, and the epoch transition (`RunLifecycle`).

    {data_dir}/runs/{run_id}/state.pt

A run starts (epoch 0 measured), saves its progress after every epoch (state + model + optimizer,
so it resumes), and ends completed, diverged or stopped; an ended run keeps only its result (its
snapshots hold its weights). The file is `torch.save` of a plain dict with the keys of `RunState`
and plain-string statuses, so files written by either trainer, and by earlier versions, load in
both: a run paused or interrupted in a stack can finish alone, and the reverse.

Needs only torch and pyarrow.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import torch

from .layout import DataLayout
from .files import DamagedFile, atomic_write, quarantine, read_or_quarantine
from .snapshots import Snapshot, read_snapshot_info, write_snapshot
from .vocabulary import ENDED, RunStatus


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float  # training time of this epoch (0 for epoch 0), evaluation excluded


@dataclass
class RunResult:
    """What a run produced; the flow loads it into the warehouse."""

    run_id: str
    status: str
    epochs_done: int
    diverged_epoch: int | None
    train_seconds: float
    metrics: list[EpochMetrics] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    device: str = "cpu"

    @property
    def final_test_acc(self) -> float | None:
        return self.metrics[-1].test_acc if self.metrics else None


def diverged(trained_finite: bool, metrics: EpochMetrics | None) -> bool:
    """The divergence rule: an epoch diverged when one of its minibatch losses or, after it, a
    parameter was not finite (`trained_finite` False; then it is not measured, `metrics` None), or
    when its measured training or test loss is not finite."""
    return not (trained_finite and metrics is not None
                and math.isfinite(metrics.train_loss) and math.isfinite(metrics.test_loss))


@dataclass
class RunState:
    """Where a run stands after its last finished epoch. `model` and `optimizer` are the state
    dicts to resume from: present in a loaded running state, never in an ended one."""

    status: RunStatus
    epochs_done: int
    diverged_epoch: int | None
    train_seconds: float
    metrics: list[EpochMetrics]
    device: str = "cpu"  # the device that trained it last (files of the first versions lack it)
    model: dict | None = field(default=None, repr=False)
    optimizer: dict | None = field(default=None, repr=False)

    @classmethod
    def start(cls, initial: EpochMetrics, device: str) -> RunState:
        """A run measured at its initialisation (epoch 0)."""
        return cls(RunStatus.RUNNING, 0, None, 0.0, [initial], device)

    def done(self, last_epoch: int) -> bool:
        """Whether a training call to `last_epoch` has nothing to train: ended, or trained that far."""
        return self.status in ENDED or self.epochs_done >= last_epoch

    def record(self, metrics: EpochMetrics) -> None:
        """An epoch trained and measured."""
        self.metrics.append(metrics)
        self.epochs_done = metrics.epoch

    def diverge(self, epoch: int) -> None:
        """`epoch` diverged: the run ends at the epoch before it."""
        self.status, self.diverged_epoch, self.epochs_done = RunStatus.DIVERGED, epoch, epoch - 1

    def copy(self) -> RunState:
        """A copy later epochs do not change (for a write queued behind training)."""
        return replace(self, metrics=list(self.metrics))

    def to_dict(self) -> dict:
        """The state file's dict, without the resume payload."""
        return {"status": RunStatus(self.status).value, "epochs_done": self.epochs_done,
                "diverged_epoch": self.diverged_epoch, "train_seconds": self.train_seconds,
                "metrics": [asdict(m) for m in self.metrics], "device": self.device}

    @classmethod
    def from_dict(cls, saved: dict) -> RunState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known} | {
            "status": RunStatus(saved["status"]), "metrics": [EpochMetrics(**m) for m in saved["metrics"]]})


class RunStore:
    """One run's state file: load it, save progress, finish, and read the run's result back."""

    def __init__(self, data_dir: str | Path, run_id: str):
        self.data_dir, self.run_id = Path(data_dir), run_id
        self.path = DataLayout(data_dir).run_state(run_id)

    def load(self) -> RunState | None:
        """The run's saved state; None when there is none. A damaged state file is quarantined and
        the run starts over (None): one run redone, not a study stopped."""
        return read_or_quarantine(self.path, self.data_dir,
                                  lambda p: RunState.from_dict(torch.load(p, map_location="cpu", weights_only=False)))

    def save_progress(self, state: RunState, model: dict, optimizer: dict) -> None:
        """A running state with what resumes it: the model's and the optimizer's state dicts."""
        self._write(state.to_dict() | {"model": model, "optimizer": optimizer})

    def finish(self, state: RunState) -> None:
        """An ended run keeps only its result: its snapshots hold its weights."""
        if state.status not in ENDED:
            raise ValueError(f"run {self.run_id} cannot be finished with status {state.status!r}")
        self._write(state.to_dict())

    def stop(self) -> RunResult:
        """End a paused run as stopped (triage), so no later training call continues it. An ended
        run is returned as it is."""
        state = self.load()
        if state is None:
            raise FileNotFoundError(f"run {self.run_id} has no state file {self.path} to stop")
        if state.status not in ENDED:
            state.status = RunStatus.STOPPED
            self.finish(state)
        return self.result(state)

    def result(self, state: RunState) -> RunResult:
        """The run's result: its state and the snapshots of its epochs (each checked)."""
        snapshots = [read_snapshot_info(DataLayout(self.data_dir).snapshot(self.run_id, e), self.run_id, e)
                     for e in range(state.epochs_done + 1)]
        return RunResult(run_id=self.run_id, status=RunStatus(state.status).value, epochs_done=state.epochs_done,
                         diverged_epoch=state.diverged_epoch, train_seconds=state.train_seconds,
                         metrics=list(state.metrics), snapshots=snapshots, device=state.device)

    def finished_result(self, last_epoch: int) -> RunResult | None:
        """The stored result of a run with nothing to train up to `last_epoch` (`RunState.done`);
        None while it has epochs to train, or when a snapshot of it is unusable (both files are
        quarantined: an ended state holds no weights, so the run trains again)."""
        state = self.load()
        if state is None or not state.done(last_epoch):
            return None
        try:
            return self.result(state)
        except (DamagedFile, FileNotFoundError) as e:
            if isinstance(e, DamagedFile):
                quarantine(e.path, self.data_dir, str(e))
            quarantine(self.path, self.data_dir, f"run set to train again: its snapshot is unusable ({e})")
            return None

    def _write(self, payload: dict) -> None:
        atomic_write(self.path, lambda tmp: torch.save(payload, tmp))


Write = Callable[[Callable[[], object]], None]  # runs a write job: now, or queued (BackgroundWriter.submit)


def write_now(job: Callable[[], object]) -> None:
    job()


class RunLifecycle:
    """The epoch transition, written once for both trainers: what happens to one run after its
    initialisation is measured (`start`) and after each trained epoch (`end_epoch`): the divergence
    rule, the metrics recorded, the epoch's snapshot, the progress that resumes the run, the final
    state that ends it, the `on_epoch` callback. A trainer only trains and measures.

    Files are written through `write` (now, or queued behind training in submission order: the
    snapshot always before the state that refers to it); a queued state is a copy later epochs do
    not change. A per-epoch step that the saved progress must include (a learning-rate scheduler's
    step) is taken by the trainer before it hands `end_epoch` the optimizer's state dict.
    """

    def __init__(self, store: RunStore, epochs: int, state: RunState | None = None,
                 on_epoch: Callable[[EpochMetrics], None] | None = None, write: Write = write_now):
        self.store, self.epochs, self.state = store, epochs, state
        self.on_epoch, self.write = on_epoch, write

    @property
    def next_epoch(self) -> int:
        return self.state.epochs_done + 1 if self.state else 1

    def start(self, initial: EpochMetrics, device: str, model: dict, optimizer: dict) -> None:
        """Epoch 0: the initialisation measured, its snapshot and the first progress written."""
        self.state = RunState.start(initial, device)
        self._write_epoch(model, optimizer)
        if self.on_epoch:
            self.on_epoch(initial)

    def end_epoch(self, epoch: int, seconds: float, trained_finite: bool, metrics: EpochMetrics | None,
                  model: dict, optimizer: dict, last_epoch: int) -> bool:
        """After `epoch` was trained (in `seconds`) and, unless `trained_finite` is False, measured:
        whether the run trains on (False once it diverged, completed, or reached `last_epoch`, where
        it pauses resumable)."""
        state = self.state
        state.train_seconds += seconds
        if diverged(trained_finite, metrics):
            state.diverge(epoch)
            self._write_state(None, None)
            return False
        state.record(metrics)
        if epoch == self.epochs:
            state.status = RunStatus.COMPLETED
        self._write_epoch(model, optimizer)
        if self.on_epoch:
            self.on_epoch(metrics)
        return epoch < last_epoch

    def result(self) -> RunResult:
        return self.store.result(self.state)

    def _write_epoch(self, model: dict, optimizer: dict) -> None:
        data_dir, run_id, epoch = self.store.data_dir, self.store.run_id, self.state.epochs_done
        self.write(lambda: write_snapshot(model, data_dir, run_id, epoch))
        self._write_state(model, optimizer)

    def _write_state(self, model: dict | None, optimizer: dict | None) -> None:
        """The progress of a running run (with what resumes it), or the final state of an ended one."""
        store, state = self.store, self.state.copy()
        if state.status in ENDED:
            self.write(lambda: store.finish(state))
        else:
            self.write(lambda: store.save_progress(state, model, optimizer))
