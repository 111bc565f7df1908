"""Training one run: metrics at epoch 0 and after every epoch, snapshot weights, resume, detect divergence.

Needs only torch and pyarrow. Everything a run produces lives under its run directory and its
snapshot partition, so a run can be resumed after a crash and re-running a finished run is free:

    {data_dir}/runs/{run_id}/state.pt       model + optimizer + metrics after the last finished epoch
    {data_dir}/snapshots/run_id=.../epoch=.../snapshot.parquet

The state file and what happens after each epoch (divergence, metrics, snapshot, progress, an
ended run keeping only its result) are `run_state`'s (`RunLifecycle`), shared with the stacked
trainer: this module trains and measures.

Randomness is keyed by (seed, epoch): initialisation by the seed, data order and dropout masks by
(seed, epoch), dropout through the run's own explicit mask stream (`models.dropout`), never torch's
global RNG. A resumed run therefore follows exactly the path it would have followed, and a run
trained inside a stack (`pipeline_lib.stacked`) follows the path it follows alone.

Metrics per epoch: test loss and accuracy from an eval-mode pass over the test images. Training
loss and accuracy, by default (`train_metrics: epoch`), are accumulated over the epoch's own
minibatches as they were trained (train mode, weights moving during the epoch): what training
speed estimators (TSE) sum and what Keras and Lightning report, at no extra cost. `exact` instead
measures them like the test metrics, on the first TRAIN_EVAL_LIMIT training images after the
epoch, a second pass that costs as much as the test pass. Epoch 0 (the initialisation) has no
minibatches and is always measured that way.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .datasets import TensorData
from .models import build_model
from .models.dropout import DropoutMasks
from .run_state import EpochMetrics, RunLifecycle, RunResult, RunStore

if TYPE_CHECKING:  # configs are read by attribute: training needs torch and pyarrow, not pydantic
    from .spec import RunConfig

EVAL_BATCH = 512  # measured on CPU: 1.7x the images/s of 2048 (activations stay in cache)
TRAIN_EVAL_LIMIT = 10_000  # exact train metrics are measured on at most this many (fixed) training images


def make_model(config: RunConfig, data: TensorData) -> nn.Module:
    """The run's model, initialised from its seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return build_model(config.architecture, in_channels=data.in_channels, image_size=data.image_size,
                           num_classes=data.num_classes, width=config.width, dropout=config.dropout,
                           depth=config.depth)


def make_optimizer(config: RunConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed for the data order of one epoch of one run."""
    return seed * 1_000_003 + epoch


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The permutation of training examples used in one epoch (drawn on CPU, so devices agree)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode; sums stay on the device (one sync at the end)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(y), EVAL_BATCH):
        logits = model(x[i:i + EVAL_BATCH])
        loss_sum += F.cross_entropy(logits, y[i:i + EVAL_BATCH], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + EVAL_BATCH]).sum()
    return float(loss_sum) / len(y), int(correct) / len(y)


def measure(model: nn.Module, data: TensorData, epoch: int, seconds: float,
            train: tuple[float, float] | None = None) -> EpochMetrics:
    """Test metrics, and training metrics `train` (the epoch's minibatches) or, if None, the exact pass."""
    if train is None:
        n = min(len(data.y_train), TRAIN_EVAL_LIMIT)
        train = evaluate(model, data.x_train[:n], data.y_train[:n])
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    return EpochMetrics(epoch, train[0], train[1], test_loss, test_acc, seconds)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData, config: RunConfig,
                    epoch: int) -> tuple[float, float] | None:
    """One pass over the training data: mean loss and accuracy over its minibatches as trained.

    None as soon as a loss is not finite.
    """
    model.train()
    order = epoch_order(config.seed, epoch, len(data.y_train)).to(data.x_train.device)
    masks = DropoutMasks([config.seed], [epoch], [config.dropout], data.x_train.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=data.x_train.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.x_train.device)
    for i in range(0, len(order), config.batch_size):
        idx = order[i:i + config.batch_size]
        with masks.active():
            logits = model(data.x_train[idx])
        loss = F.cross_entropy(logits, data.y_train[idx])
        if not torch.isfinite(loss):
            return None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().double() * len(idx)
        correct += (logits.detach().argmax(1) == data.y_train[idx]).sum()
    return float(loss_sum) / len(order), int(correct) / len(order)


def finished_result(config: RunConfig, data_dir: str | Path, until_epoch: int | None = None) -> RunResult | None:
    """The stored result of a finished (completed, diverged or stopped) run, or of one trained to
    `until_epoch` already; None while it has epochs to train (`RunStore.finished_result`)."""
    return RunStore(data_dir, config.run_id).finished_result(last_epoch(config, until_epoch))


def last_epoch(config: RunConfig, until_epoch: int | None) -> int:
    """The epoch a training call stops at: the run's last, or the cap `until_epoch` below it."""
    return config.epochs if until_epoch is None else min(until_epoch, config.epochs)


def train_run(config: RunConfig, data: TensorData, data_dir: str | Path, device: str = "cpu",
              on_epoch: Callable[[EpochMetrics], None] | None = None, until_epoch: int | None = None) -> RunResult:
    """Train one run to its last epoch (or divergence), resuming from its saved state if any.

    A finished run is not trained again: its stored result is returned. With `until_epoch` below
    the run's epochs, training pauses there with model and optimizer in the state file (status
    still running), so a later call resumes it.
    """
    store = RunStore(data_dir, config.run_id)
    state = store.load()
    last = last_epoch(config, until_epoch)
    if state is not None and state.done(last):
        return store.result(state)

    data = data.to(device)
    model = make_model(config, data).to(device)
    optimizer = make_optimizer(config, model.parameters())
    run = RunLifecycle(store, config.epochs, state, on_epoch)
    if state is None:
        run.start(measure(model, data, 0, 0.0), device, model.state_dict(), optimizer.state_dict())
    else:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        state.device = device

    trains_on = run.next_epoch <= last
    while trains_on:
        epoch = run.next_epoch
        start = time.perf_counter()
        train = train_one_epoch(model, optimizer, data, config, epoch)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        finite = train is not None and all(torch.isfinite(p).all() for p in model.parameters())
        m = measure(model, data, epoch, seconds, train if config.train_metrics == "epoch" else None) if finite else None
        trains_on = run.end_epoch(epoch, seconds, finite, m, model.state_dict(), optimizer.state_dict(), last)
    return run.result()
