"""The run lifecycle's state file keeps the format earlier versions wrote, and its divergence rule."""
import math

import pytest
import torch

from pipeline_lib.datasets import load_dataset
from pipeline_lib.layout import DataLayout
from pipeline_lib.run_state import EpochMetrics, RunStore, diverged
from pipeline_lib.snapshots import read_snapshot, write_snapshot
from pipeline_lib.spec import DatasetSpec, RunConfig
from pipeline_lib.stacked import train_group
from pipeline_lib.training import make_model, make_optimizer, train_run

# The keys (in order) and value types of the state dict as train_run wrote it before run_state.
OLD_KEYS = ["status", "epochs_done", "diverged_epoch", "train_seconds", "metrics", "device"]
METRIC_KEYS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", subset=128)


def _config(epochs=2):
    return RunConfig(study="t", dataset=DatasetSpec(name="digits", subset=128), architecture="lenet", width=1.0,
                     depth=1, epochs=epochs, seed=3, config_id="c", lr=0.05, dropout=0.0, weight_decay=0.0,
                     optimizer="sgd", batch_size=64)


def test_a_state_file_in_the_old_dict_format_resumes_in_either_trainer(tmp_path, digits):
    """Epoch 0 written by hand as the old code wrote it (a literal dict, plain strings) resumes to
    the weights of an uninterrupted run of the same trainer, alone and in a stack."""
    torch.set_num_threads(1)
    config = _config()
    for trainer in ("single", "stacked"):
        train = (lambda d: train_run(config, digits, d)) if trainer == "single" else \
            (lambda d: train_group([config], digits, d).results[0])
        straight = train(tmp_path / f"straight_{trainer}")
        data_dir = tmp_path / trainer
        model = make_model(config, digits)
        write_snapshot(model.state_dict(), data_dir, config.run_id, 0)
        path = data_dir / "runs" / config.run_id / "state.pt"
        path.parent.mkdir(parents=True)
        torch.save({"status": "running", "epochs_done": 0, "diverged_epoch": None, "train_seconds": 0.0,
                    "metrics": [{"epoch": 0, "train_loss": 2.5, "train_acc": 0.1, "test_loss": 2.5, "test_acc": 0.1,
                                 "seconds": 0.0}],
                    "device": "cpu", "model": model.state_dict(),
                    "optimizer": make_optimizer(config, model.parameters()).state_dict()}, path)
        resumed = train(data_dir)
        assert (resumed.status, resumed.epochs_done) == ("completed", 2)
        assert resumed.metrics[0] == EpochMetrics(0, 2.5, 0.1, 2.5, 0.1, 0.0)  # read from the old file
        assert [m.test_loss for m in resumed.metrics[1:]] == [m.test_loss for m in straight.metrics[1:]]
        a, b = (read_snapshot(DataLayout(d).snapshot(config.run_id, 2)) for d in (data_dir, tmp_path / f"straight_{trainer}"))
        assert all(torch.equal(a[k], b[k]) for k in b)

        raw = torch.load(path, weights_only=False)  # what is written back is the old format, ended
        assert list(raw) == OLD_KEYS and type(raw["status"]) is str and raw["status"] == "completed"
        assert [list(m) for m in raw["metrics"]] == [METRIC_KEYS] * 3 and raw["epochs_done"] == 2


def test_progress_is_written_in_the_old_format_and_an_old_ended_file_reads_back(tmp_path, digits):
    config = _config()
    train_run(config, digits, tmp_path, until_epoch=1)
    raw = torch.load(RunStore(tmp_path, config.run_id).path, weights_only=False)
    assert list(raw) == OLD_KEYS + ["model", "optimizer"] and type(raw["status"]) is str
    assert raw["status"] == "running" and raw["epochs_done"] == 1 and raw["device"] == "cpu"
    assert set(raw["model"]) == set(make_model(config, digits).state_dict())

    # an ended file without "device" (the key is read as cpu when missing) reads back as it was
    store = RunStore(tmp_path, config.run_id)
    torch.save({"status": "diverged", "epochs_done": 1, "diverged_epoch": 2, "train_seconds": 1.25,
                "metrics": raw["metrics"]}, store.path)
    result = store.finished_result(last_epoch=2)
    assert (result.status, result.epochs_done, result.diverged_epoch, result.train_seconds, result.device) == \
        ("diverged", 1, 2, 1.25, "cpu")
    assert [s.epoch for s in result.snapshots] == [0, 1]


@pytest.mark.parametrize("trained_finite, losses, expected", [
    (True, (0.5, 0.7), False),
    (False, None, True),  # a minibatch loss or a parameter was not finite: not measured
    (True, (math.nan, 0.7), True),
    (True, (0.5, math.inf), True),
    (True, (0.5, -math.inf), True),
])
def test_divergence_rule(trained_finite, losses, expected):
    metrics = None if losses is None else EpochMetrics(1, losses[0], 0.5, losses[1], 0.5, 0.1)
    assert diverged(trained_finite, metrics) is expected
