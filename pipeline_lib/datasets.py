"""Datasets held as tensors: decoded once, normalised, ready to move to the training device.

- digits: scikit-learn's bundled 8x8 digits (the embedded default), a fixed stratified split.
- fashion_mnist: the IDX files of Debian's `dataset-fashion-mnist` (or a user-given root).
- cifar10, svhn: torchvision datasets read from a user-given root; never downloaded at run time.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .vocabulary import DATASETS

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"


class DatasetUnavailable(FileNotFoundError):
    """The dataset's files are not where the spec says; the message says what to put where."""


@dataclass(frozen=True)
class TensorData:
    """Train and test images (N, C, H, W float32, standardised) with int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def to(self, device: str | torch.device) -> "TensorData":
        return TensorData(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                          self.y_test.to(device), self.num_classes)


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale with the training set's per-channel mean and std."""
    axes = (0, 2, 3)
    mean = x_train.mean(axis=axes, keepdims=True)
    std = x_train.std(axis=axes, keepdims=True) + 1e-8
    return (torch.from_numpy(((x_train - mean) / std).astype(np.float32)),
            torch.from_numpy(((x_test - mean) / std).astype(np.float32)))


def _tensor_data(x_train, y_train, x_test, y_test, num_classes) -> TensorData:
    xtr, xte = _standardise(x_train.astype(np.float32), x_test.astype(np.float32))
    # labels are copied: IDX labels are read-only views of the decompressed bytes
    return TensorData(xtr, torch.tensor(y_train, dtype=torch.int64), xte,
                      torch.tensor(y_test, dtype=torch.int64), num_classes)


def _digits() -> TensorData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=0.25, random_state=0, stratify=bunch.target
    )
    return _tensor_data(x_train, y_train, x_test, y_test, DATASETS["digits"].classes)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


FASHION_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# what each dataset's root must hold (a folder or files), checked before anything trains
ROOT_ENTRIES = {"fashion_mnist": FASHION_MNIST_FILES, "cifar10": ("cifar-10-batches-py",),
                "svhn": ("train_32x32.mat", "test_32x32.mat")}


def check_files(name: str, root: str | None) -> None:
    """DatasetUnavailable, naming what is missing and where, unless the dataset's files are there (a
    root that exists but is empty fails here, not in every training task)."""
    if name not in ROOT_ENTRIES:
        return
    if name == "fashion_mnist":
        root = root or str(FASHION_MNIST_ROOT)
    if root is None:
        raise DatasetUnavailable(f"{name} needs dataset.root: a folder holding {', '.join(ROOT_ENTRIES[name])}. "
                                 "Nothing is downloaded at run time.")
    missing = [entry for entry in ROOT_ENTRIES[name] if not (Path(root) / entry).exists()]
    if missing:
        advice = (" Install Debian's package (apt-get install dataset-fashion-mnist) or set dataset.root to a folder "
                  "holding the four IDX .gz files." if name == "fashion_mnist" else " Nothing is downloaded at run time.")
        raise DatasetUnavailable(f"{name} files missing in {root}: {missing}.{advice}")


def _fashion_mnist(root: str | None) -> TensorData:
    check_files("fashion_mnist", root)
    root_path = Path(root or FASHION_MNIST_ROOT)
    xtr, ytr, xte, yte = (_read_idx(root_path / n) for n in FASHION_MNIST_FILES)
    return _tensor_data(xtr[:, None] / 255.0, ytr, xte[:, None] / 255.0, yte, DATASETS["fashion_mnist"].classes)


def _torchvision(name: str, root: str | None) -> TensorData:
    import torchvision

    hint = {"cifar10": "the extracted 'cifar-10-batches-py' folder",
            "svhn": "train_32x32.mat and test_32x32.mat"}[name]
    if root is None or not Path(root).is_dir():
        raise DatasetUnavailable(
            f"{name} needs dataset.root: a folder holding {hint}. Nothing is downloaded at run time."
        )
    try:
        if name == "cifar10":
            train = torchvision.datasets.CIFAR10(root, train=True, download=False)
            test = torchvision.datasets.CIFAR10(root, train=False, download=False)
            arrays = (train.data.transpose(0, 3, 1, 2), train.targets, test.data.transpose(0, 3, 1, 2), test.targets)
        else:
            train = torchvision.datasets.SVHN(root, split="train", download=False)
            test = torchvision.datasets.SVHN(root, split="test", download=False)
            arrays = (train.data, train.labels, test.data, test.labels)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise DatasetUnavailable(f"{name} not readable under {root} (expected {hint}): {e}") from None
    xtr, ytr, xte, yte = arrays
    return _tensor_data(np.asarray(xtr) / 255.0, np.asarray(ytr), np.asarray(xte) / 255.0, np.asarray(yte),
                        DATASETS[name].classes)


@lru_cache(maxsize=4)
def _load_full(name: str, root: str | None) -> TensorData:
    if name == "digits":
        return _digits()
    if name == "fashion_mnist":
        return _fashion_mnist(root)
    if name in ("cifar10", "svhn"):
        return _torchvision(name, root)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


LABEL_NOISE_STREAM = 7_919  # offsets the label-noise generator from the seeds of data order and dropout


def noisy_labels(labels: torch.Tensor, fraction: float, seed: int, num_classes: int) -> torch.Tensor:
    """The labels with round(fraction x N) of them replaced by another class, drawn from `seed` (on CPU).

    Which labels and their new classes depend only on (seed, N): a rerun gets the same noise, the
    single and stacked trainers the same labels, and for one seed a larger fraction corrupts a
    superset of a smaller one's labels. Every replaced label is wrong (a class other than its own).
    """
    if fraction == 0:
        return labels
    generator = torch.Generator().manual_seed(LABEL_NOISE_STREAM + seed)
    n = len(labels)
    chosen = torch.randperm(n, generator=generator)[:round(fraction * n)]
    shift = torch.randint(1, num_classes, (n,), generator=generator)[:len(chosen)]
    noisy = labels.cpu().clone()
    noisy[chosen] = (noisy[chosen] + shift) % num_classes
    return noisy.to(labels.device)


def load_dataset(name: str, root: str | None = None, subset: int | None = None,
                 test_subset: int | None = None) -> TensorData:
    """Load (and cache in-process) a dataset; `subset` and `test_subset` keep the first N images."""
    data = _load_full(name, root)
    return TensorData(data.x_train[:subset], data.y_train[:subset], data.x_test[:test_subset],
                      data.y_test[:test_subset], data.num_classes)
