"""Training throughput: a plain per-run PyTorch loop against this project's stacked path, same process.

    python benchmarks/train_throughput.py                # CPU: Fashion-MNIST subset, few runs (~1-2 min)
    python benchmarks/train_throughput.py --mode gpu     # GPU: 256 LeNet runs on the full training set

Both sides train the same runs (LeNet, and the VGG family at width 1) on the same data, and report
model-epochs per second (runs x epochs / wall seconds):
  plain    one run after another: torch.optim.SGD, a DataLoader over the training tensors (shuffled),
           and the metrics the pipeline records (loss and accuracy on <=10k training and all test
           images, at initialisation and after every epoch, `training.measure`), no snapshots;
           measured on the first `--plain-runs` runs.
  stacked  `pipeline_lib.stacked.train_group` with everything the pipeline does: per-run data order
           and dropout masks, train-subset and test metrics every epoch, Parquet snapshots and
           state files (background writer), divergence checks.
  vmap     (--vmap) torch.func stack_module_state + vmap(grad) + functional SGD, training only: the
           textbook stacking, as a reference for the stacked path's own design.
Needs only torch, numpy and pyarrow. Prints the ratios; with --write, also writes
benchmarks/results/train_throughput_<mode>_<n>threads.json.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._output import add_write_argument, save  # noqa: E402
from pipeline_lib.datasets import TensorData, load_dataset  # noqa: E402
from pipeline_lib.stacked import StackOptions, train_group  # noqa: E402
from pipeline_lib.training import make_model, measure  # noqa: E402

MODES = {  # per mode: runs, training images, test images, epochs, runs timed for the plain loop
    "cpu": dict(runs=4, subset=1536, test_subset=500, epochs=2, plain_runs=4),
    "gpu": dict(runs=256, subset=None, test_subset=None, epochs=2, plain_runs=2),
}
VGG_SCALE = {"cpu": dict(runs=2, subset=512), "gpu": dict(runs=64)}


@dataclass(frozen=True)
class BenchDataset:
    name: str
    subset: int | None


class ConstantRate:
    """`spec.LrSchedule`'s constant rate, as training reads it."""

    def factor(self, epoch: int, epochs: int) -> float:
        return 1.0


@dataclass(frozen=True)
class BenchRun:
    """The attributes of `spec.RunConfig` that training reads (no pydantic on the GPU machine);
    tests/test_benchmarks.py checks that it has every field of RunConfig but the study's bookkeeping."""

    architecture: str
    seed: int
    lr: float
    dropout: float
    weight_decay: float
    epochs: int
    dataset: BenchDataset
    width: float = 1.0
    depth: int = 1
    optimizer: str = "sgd"
    batch_size: int = 128
    train_metrics: str = "exact"  # the metrics the plain loop measures (`training.measure`)
    lr_schedule: ConstantRate = ConstantRate()
    label_noise: float = 0.0

    @property
    def run_id(self) -> str:
        return hashlib.sha1(repr(self).encode()).hexdigest()[:16]

    @property
    def group_key(self) -> tuple:
        return (self.architecture, self.width, self.depth, self.optimizer, self.batch_size, self.epochs,
                self.train_metrics)


def sweep(architecture: str, runs: int, epochs: int, subset: int | None) -> list[BenchRun]:
    """The paper's kind of sweep: lr log-uniform 3e-4..0.1, dropout and weight decay mixed, SGD(0.9), batch 128."""
    rng = random.Random(0)
    return [BenchRun(architecture, seed=i, lr=math.exp(rng.uniform(math.log(3e-4), math.log(0.1))),
                     dropout=rng.choice([0.0, 0.25, 0.5]), weight_decay=rng.choice([0.0, 5e-4, 5e-3]),
                     epochs=epochs, dataset=BenchDataset("fashion_mnist", subset)) for i in range(runs)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def plain_loop(configs: list[BenchRun], data: TensorData, device: str) -> float:
    """The usual loop, one run after another; returns wall seconds."""
    start = time.perf_counter()
    dataset = torch.utils.data.TensorDataset(data.x_train, data.y_train)
    on_device = data.to(device)
    for config in configs:
        model = make_model(config, data).to(device)
        metrics = [measure(model, on_device, 0, 0.0)]
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(config.seed))
        for _ in range(config.epochs):
            model.train()
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            metrics.append(measure(model, on_device, len(metrics), 0.0))
        assert all(0 <= m.test_acc <= 1 for m in metrics)
    _sync(device)
    return time.perf_counter() - start


def vmap_loop(configs: list[BenchRun], data: TensorData, device: str) -> float:
    """torch.func stacking (training only, shared lr, no dropout masks): the reference design."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    models = [make_model(c, data).to(device) for c in configs]
    params, buffers = stack_module_state(models)
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}

    def loss_fn(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    step = vmap(grad(loss_fn), randomness="different")
    x_train, y_train = data.x_train.to(device), data.y_train.to(device)
    n, size, batch = len(configs), len(y_train), configs[0].batch_size
    start = time.perf_counter()
    for epoch in range(configs[0].epochs):
        orders = torch.stack([torch.randperm(size, device=device) for _ in range(n)])
        for i in range(0, size, batch):
            idx = orders[:, i:i + batch]
            grads = step(params, buffers, x_train[idx], y_train[idx])
            keys = list(params)
            torch._foreach_mul_([momentum[k] for k in keys], 0.9)
            torch._foreach_add_([momentum[k] for k in keys], [grads[k] for k in keys])
            torch._foreach_add_([params[k] for k in keys], [momentum[k] for k in keys], alpha=-configs[0].lr)
    _sync(device)
    return time.perf_counter() - start


def stacked(configs: list[BenchRun], data: TensorData, device: str, options: StackOptions) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        group = train_group(configs, data, tmp, device=device, options=options)
        _sync(device)
        seconds = time.perf_counter() - start
    statuses = [r.status for r in group.results]
    return seconds, {"timings": group.timings.__dict__, "statuses": {s: statuses.count(s) for s in set(statuses)}}


def compare(architecture: str, mode: str, args, data_all: TensorData, device: str) -> dict:
    scale = {**MODES[mode], **(VGG_SCALE[mode] if architecture == "vgg" else {})}
    runs = args.runs or scale["runs"]
    subset = args.subset or scale["subset"]
    epochs = args.epochs or scale["epochs"]
    test_subset = scale["test_subset"]
    data = TensorData(data_all.x_train[:subset], data_all.y_train[:subset], data_all.x_test[:test_subset],
                      data_all.y_test[:test_subset], data_all.num_classes)
    configs = sweep(architecture, runs, epochs, subset)
    plain_configs = configs[:min(args.plain_runs or scale["plain_runs"], runs)]
    row = {"architecture": architecture, "runs": runs, "train_images": len(data.y_train),
           "test_images": len(data.y_test), "epochs": epochs, "plain_runs_timed": len(plain_configs)}
    # warm-up: first-call costs (library loading, kernel selection) are not throughput
    plain_loop(plain_configs[:1], TensorData(data.x_train[:256], data.y_train[:256], data.x_test[:256],
                                             data.y_test[:256], data.num_classes), device)
    # Alternate the methods and keep each one's best: other load on the machine hits both alike.
    plain_s, stacked_s = math.inf, {}
    for _ in range(args.repeats):
        plain_s = min(plain_s, plain_loop(plain_configs, data, device))
        for width in args.vector_widths:
            options = StackOptions(vector_width=width, channels_last=args.channels_last, bf16=args.bf16,
                                   compile=args.compile)
            seconds, info = stacked(configs, data, device, options)
            if seconds < stacked_s.get(width, (math.inf,))[0]:
                stacked_s[width] = (seconds, info)
    row["plain_model_epochs_per_s"] = len(plain_configs) * epochs / plain_s
    for width, (seconds, info) in stacked_s.items():
        key = f"stacked_w{width or 'auto'}"
        row[f"{key}_model_epochs_per_s"] = runs * epochs / seconds
        row[f"{key}_ratio"] = row[f"{key}_model_epochs_per_s"] / row["plain_model_epochs_per_s"]
        row[f"{key}_info"] = info
    if args.vmap:
        seconds = vmap_loop(configs, data, device)
        row["vmap_train_only_model_epochs_per_s"] = runs * epochs / seconds
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="cpu")
    parser.add_argument("--architectures", default="lenet,vgg")
    parser.add_argument("--runs", type=int, help="runs per architecture (default: per mode)")
    parser.add_argument("--subset", type=int, help="training images (default: per mode)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--plain-runs", type=int, help="runs timed with the plain loop (it is slow on GPU)")
    parser.add_argument("--vector-widths", default="0", help="comma list of StackOptions.vector_width; 0 = auto")
    parser.add_argument("--channels-last", type=lambda s: s == "on", default=None, help="on|off (default auto)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--vmap", action="store_true", help="also time torch.func vmap stacking (training only)")
    parser.add_argument("--root", help="folder with Fashion-MNIST's IDX .gz files")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repetitions; the best of each is kept")
    add_write_argument(parser)
    args = parser.parse_args()
    args.vector_widths = [int(w) for w in args.vector_widths.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.mode == "gpu" else "cpu"
    data_all = load_dataset("fashion_mnist", root=args.root)
    report = {"mode": args.mode, "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
              or "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
              "options": {"channels_last": args.channels_last, "bf16": args.bf16, "compile": args.compile},
              "repeats": args.repeats,
              "results": []}
    for architecture in args.architectures.split(","):
        row = compare(architecture, args.mode, args, data_all, device)
        report["results"].append(row)
        ratios = "  ".join(f"{k.removesuffix('_ratio')}: {row[k]:.2f}x" for k in row if k.endswith("_ratio"))
        speeds = "  ".join(f"{k.removesuffix('_model_epochs_per_s')} {v:.2f}" for k, v in row.items()
                           if k.endswith("_model_epochs_per_s"))
        print(f"{architecture}: {row['runs']} runs x {row['epochs']} epochs on {row['train_images']} images; "
              f"model-epochs/s: {speeds}; ratio vs plain: {ratios}", flush=True)
    save(args.write, {f"train_throughput_{args.mode}_{torch.get_num_threads()}threads.json":
                      lambda p: p.write_text(json.dumps(report, indent=2, default=str))})


if __name__ == "__main__":
    main()
