"""Training a group of runs together as wide models, with per-run results identical to `train_run`.

Runs of one group share architecture, width, depth, optimizer, batch size, epochs, how training
metrics are taken and dataset (`RunConfig.group_key`); seed, learning rate, weight decay and dropout
may differ. The group is cut into lanes of `vector_width` runs; each lane is one wide model
(`layers.widen`) trained with one optimizer (`optim.StackedOptimizer`). Every run keeps its own
initialisation (`make_model`), data order (`epoch_order`) and dropout stream (`DropoutMasks`), so
it follows the path it follows alone. After every epoch each run goes through the same transition
as in `train_run` (`run_state.RunLifecycle`): the epoch-0 and per-epoch snapshots, the state file
after every epoch (resume works per run, and runs may continue alone or in another group), and the
final state that makes a re-run skip it. A run that diverges, completes or pauses leaves its lane;
the others go on.

Snapshot and state files are written by a background thread (bounded queue), so the device keeps
training while Parquet is encoded; the time the trainer waited on a full queue is in the timings.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from ..background_writer import BackgroundWriter
from ..datasets import TensorData
from ..models.dropout import DropoutMasks
from ..run_state import EpochMetrics, RunLifecycle, RunResult, RunState, RunStore, Write
from ..training import EVAL_BATCH, TRAIN_EVAL_LIMIT, epoch_order, last_epoch, make_model, make_optimizer
from .layers import keep_runs, run_state, widen
from .optim import StackedOptimizer

if TYPE_CHECKING:  # configs are read by attribute: training needs torch and pyarrow, not pydantic
    from ..spec import RunConfig

CPU_LANE_BYTES = 256 << 20  # bound on a CPU lane's largest activation (auto vector width)


@dataclass(frozen=True)
class StackOptions:
    """How a group executes; none of these changes which run is trained, only how fast.

    vector_width: runs per wide model; 0 = auto (the whole group on CUDA; on CPU as many as keep
      the largest activation of a training batch within CPU_LANE_BYTES).
    channels_last: NHWC activations for convolutions; None = auto (on).
    bf16: bfloat16 autocast of forward passes (CUDA); changes numerics, so off by default.
    compile: torch.compile the wide models.
    max_pending_writes: bound of the background writer's queue.
    """

    vector_width: int = 0
    channels_last: bool | None = None
    bf16: bool = False
    compile: bool = False
    max_pending_writes: int = 64


@dataclass
class GroupTimings:
    """Where a group's time went; the flow stores one row per group."""

    device: str
    runs: int
    lane_widths: list[int]
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    snapshot_wait_seconds: float = 0.0  # trainer blocked on the writer's full queue
    writer_busy_seconds: float = 0.0  # background thread writing snapshots and states
    model_epochs: int = 0
    gpu_utilization: float | None = None  # mean of torch.cuda.utilization samples, percent
    max_memory_mb: float | None = None  # torch.cuda.max_memory_allocated


@dataclass
class GroupResult:
    results: list[RunResult]
    timings: GroupTimings


class _Run(RunLifecycle):
    """One run of the lane: its lifecycle (state None until epoch 0 is measured), config and the
    torch optimizer layout."""

    def __init__(self, config: RunConfig, store: RunStore, state: RunState | None, data: TensorData, device: str,
                 on_epoch: Callable[[str, EpochMetrics], None] | None, write: Write):
        super().__init__(store, config.epochs, state, on_epoch and partial(on_epoch, config.run_id), write)
        self.config = config
        self.model = make_model(config, data)
        self.optimizer_template = make_optimizer(config, self.model.parameters()).state_dict()
        if state is not None:
            self.model.load_state_dict(state.model)
            state.device = device


class _Lane:
    """Some runs of the group as one wide model on one device, with their optimizer."""

    def __init__(self, runs: list[_Run], data: TensorData, device: str, options: StackOptions):
        self.runs, self.device, self.options = runs, device, options
        self.channels_last = options.channels_last is not False and data.x_train.dim() == 4
        self.wide = wide = widen([r.model for r in runs]).to(device)
        for r in runs:
            r.model = None  # the wide model holds the weights from now on
        self.forward = torch.compile(wide) if options.compile else wide
        cfgs = [r.config for r in runs]
        self.optimizer = StackedOptimizer(cfgs[0].optimizer, dict(wide.named_parameters()),
                                          [c.lr for c in cfgs], [c.weight_decay for c in cfgs])
        for i, r in enumerate(runs):
            if r.state is not None:
                self.optimizer.load_run_state(i, r.state.optimizer)

    def __len__(self) -> int:
        return len(self.runs)

    def _stacked_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, C, H, W) -> (B, n*C, H, W), run r's channels in block r."""
        x = x.flatten(1, 2)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _logits(self, x: torch.Tensor, n: int) -> torch.Tensor:
        if self.options.bf16:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.forward(x).float().view(x.shape[0], n, -1)
        return self.forward(x).view(x.shape[0], n, -1)

    def train_epoch(self, data: TensorData) -> tuple[torch.Tensor, list[tuple[float, float]]]:
        """One epoch for every run (each its own next epoch).

        Per run: whether every loss was finite, and the mean loss and accuracy over its minibatches
        as trained (`training.train_one_epoch`).
        """
        n, cfg = len(self.runs), self.runs[0].config
        size = len(data.y_train)
        orders = torch.stack([epoch_order(r.config.seed, r.next_epoch, size) for r in self.runs], 1).to(self.device)
        masks = DropoutMasks([r.config.seed for r in self.runs], [r.next_epoch for r in self.runs],
                             [r.config.dropout for r in self.runs], self.device)
        params = list(self.optimizer.params.values())
        finite = torch.ones(n, dtype=torch.bool, device=self.device)
        loss_sum = torch.zeros(n, dtype=torch.float64, device=self.device)
        correct = torch.zeros(n, dtype=torch.int64, device=self.device)
        self.wide.train()
        for i in range(0, size, cfg.batch_size):
            idx = orders[i:i + cfg.batch_size]  # (b, n)
            targets = data.y_train[idx]
            with masks.active():
                logits = self._logits(self._stacked_input(data.x_train[idx]), n)
            losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(idx.shape).mean(0)
            finite &= torch.isfinite(losses)
            for p in params:
                p.grad = None
            losses.sum().backward()  # runs do not interact: each gets the gradient of its own mean loss
            self.optimizer.step()
            loss_sum += losses.detach().double() * len(idx)
            correct += (logits.detach().argmax(2) == targets).sum(0)
        train = zip((loss_sum / size).tolist(), (correct.double() / size).tolist())
        return finite.cpu(), list(train)

    @torch.inference_mode()
    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """`training.evaluate` for every run at once: the images are shared, sums stay on the device."""
        n = len(self.runs)
        self.wide.eval()
        # At most a training step's activations: on CPU, larger chunks measured slower (cache).
        chunk = max(EVAL_BATCH // n, self.runs[0].config.batch_size)
        loss_sum = torch.zeros(n, dtype=torch.float64, device=self.device)
        correct = torch.zeros(n, dtype=torch.int64, device=self.device)
        for i in range(0, len(y), chunk):
            xb, yb = x[i:i + chunk], y[i:i + chunk]
            logits = self._logits(self._stacked_input(xb.unsqueeze(1).expand(-1, n, *xb.shape[1:])), n)
            targets = yb.unsqueeze(1).expand(-1, n)
            loss_sum += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(-1, n).sum(0)
            correct += (logits.argmax(2) == targets).sum(0)
        return (loss_sum / len(y)).tolist(), (correct.double() / len(y)).tolist()

    def measure(self, data: TensorData, epochs: list[int], seconds: list[float],
                train: list[tuple[float, float]] | None = None) -> list[EpochMetrics]:
        """`training.measure` for every run of the lane (run i at epochs[i])."""
        if train is None:
            n_train = min(len(data.y_train), TRAIN_EVAL_LIMIT)
            train = list(zip(*self._evaluate(data.x_train[:n_train], data.y_train[:n_train])))
        test_loss, test_acc = self._evaluate(data.x_test, data.y_test)
        return [EpochMetrics(epochs[i], *train[i], test_loss[i], test_acc[i], seconds[i])
                for i in range(len(self.runs))]

    def params_finite(self) -> torch.Tensor:
        flags = [torch.isfinite(p.detach().flatten(1)).all(1) for p in self.wide.parameters()]
        return torch.stack(flags).all(0).cpu()

    def run_payloads(self) -> list[tuple[dict, dict]]:
        """Per run, (model state_dict, torch optimizer state_dict) as CPU tensors it owns."""
        wide_state = {k: v.detach().cpu() for k, v in self.wide.state_dict().items()}
        optimizer_states = self.optimizer.export_runs([r.optimizer_template for r in self.runs])
        return [({k: v.clone() for k, v in run_state(wide_state, i).items()}, optimizer_states[i])
                for i in range(len(self.runs))]

    def keep(self, indices: Sequence[int]) -> None:
        """Drop every run not in `indices` (finished or diverged)."""
        if len(indices) == len(self.runs):
            return
        self.runs = [self.runs[i] for i in indices]
        if not self.runs:
            return
        index = torch.tensor(list(indices), device=self.device)
        keep_runs(self.wide, index)
        self.optimizer.keep_runs(index, dict(self.wide.named_parameters()))
        if self.options.compile:
            self.forward = torch.compile(self.wide)


def auto_vector_width(config: RunConfig, data: TensorData, device: str, group_size: int) -> int:
    """Runs per lane: the whole group on CUDA; on CPU as many as keep memory bounded.

    Measured on 2 CPU cores (benchmarks/train_throughput.py): wider lanes were never slower per run
    than single ones, LeNet on Fashion-MNIST about 2x faster at 4 to 8 runs; a GPU needs many runs.
    """
    if not device.startswith("cpu"):
        return group_size
    model = make_model(config, data)
    largest = 0

    def record(_module, _inputs, output):
        nonlocal largest
        largest = max(largest, output.numel() * output.element_size())

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model.eval()(data.x_train[:1])
    for h in hooks:
        h.remove()
    return max(1, min(group_size, CPU_LANE_BYTES // (largest * config.batch_size)))


def _check_group(configs: Sequence[RunConfig]) -> None:
    keys = {(c.group_key, c.dataset) for c in configs}
    if len(keys) > 1:
        raise ValueError(f"runs of one stacked group must share group_key and dataset, got {len(keys)} kinds")


def _gpu_utilization(device: str) -> float | None:
    try:
        return float(torch.cuda.utilization(torch.device(device)))
    except Exception:  # noqa: BLE001 - needs pynvml / a driver; memory is reported regardless
        return None


def train_group(configs: Sequence[RunConfig], data: TensorData, data_dir: str | Path, device: str = "cpu",
                options: StackOptions = StackOptions(),
                on_epoch: Callable[[str, EpochMetrics], None] | None = None,
                until_epoch: int | None = None) -> GroupResult:
    """Train (or resume, or read back if finished) every run of one group; results in `configs` order.
    `until_epoch` pauses every run there, resumable, as in `train_run`."""
    _check_group(configs)
    data_dir = Path(data_dir)
    wall_start = time.perf_counter()
    timings = GroupTimings(device=device, runs=len(configs), lane_widths=[])
    utilization: list[float] = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)

    finished: dict[str, RunResult] = {}
    pending: list[_Run] = []
    data = data.to(device)
    with BackgroundWriter(options.max_pending_writes) as writer:
        for config in configs:
            store = RunStore(data_dir, config.run_id)
            state = store.load()
            if state is not None and state.done(last_epoch(config, until_epoch)):
                finished[config.run_id] = store.result(state)
            else:
                pending.append(_Run(config, store, state, data, device, on_epoch, writer.submit))
        lanes = []
        if pending:
            width = options.vector_width or auto_vector_width(pending[0].config, data, device, len(pending))
            lanes = [_Lane(pending[i:i + width], data, device, options) for i in range(0, len(pending), width)]
            timings.lane_widths = [len(lane) for lane in lanes]
            for lane in lanes:
                _start_fresh_runs(lane, data, device, timings)
        while lanes:
            for lane in lanes:
                _lane_epoch(lane, data, device, timings, until_epoch)
                if device.startswith("cuda"):
                    sample = _gpu_utilization(device)
                    if sample is not None:
                        utilization.append(sample)
            lanes = [lane for lane in lanes if len(lane)]
    timings.snapshot_wait_seconds = writer.wait_seconds
    timings.writer_busy_seconds = writer.busy_seconds
    timings.wall_seconds = time.perf_counter() - wall_start
    if device.startswith("cuda"):
        timings.max_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
        timings.gpu_utilization = sum(utilization) / len(utilization) if utilization else None
    trained = {r.config.run_id: r for r in pending}
    results = [finished.get(c.run_id) or trained[c.run_id].result() for c in configs]
    return GroupResult(results, timings)


def _start_fresh_runs(lane: _Lane, data: TensorData, device: str, timings: GroupTimings) -> None:
    """Epoch 0 of runs without saved state: their initialisation measured, then `RunLifecycle.start`."""
    fresh = [i for i, r in enumerate(lane.runs) if r.state is None]
    if not fresh:
        return
    start = time.perf_counter()
    metrics = lane.measure(data, [0] * len(lane), [0.0] * len(lane))
    timings.eval_seconds += time.perf_counter() - start
    payloads = lane.run_payloads()
    for i in fresh:
        lane.runs[i].start(metrics[i], device, *payloads[i])


def _lane_epoch(lane: _Lane, data: TensorData, device: str, timings: GroupTimings,
                until_epoch: int | None = None) -> None:
    """Train every run of the lane one epoch, measure them together, then `RunLifecycle.end_epoch`
    per run, as `train_run` does; the runs that end or pause leave the lane."""
    start = time.perf_counter()
    losses_finite, train = lane.train_epoch(data)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    timings.train_seconds += seconds
    timings.model_epochs += len(lane)
    share = seconds / len(lane)  # each run is charged its share of the lane's epoch
    healthy = (losses_finite & lane.params_finite()).tolist()
    epochs = [run.next_epoch for run in lane.runs]
    start = time.perf_counter()
    exact = lane.runs[0].config.train_metrics == "exact"  # one group_key: one kind of train metrics
    metrics = lane.measure(data, epochs, [share] * len(lane), None if exact else train)
    timings.eval_seconds += time.perf_counter() - start
    payloads = lane.run_payloads()
    trains_on = []
    for i, run in enumerate(lane.runs):
        if run.end_epoch(epochs[i], share, healthy[i], metrics[i], *payloads[i], last_epoch(run.config, until_epoch)):
            trains_on.append(i)
    lane.keep(trains_on)
