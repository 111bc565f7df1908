import pytest
import torch

from pipeline_lib.datasets import load_dataset
from pipeline_lib.layout import DataLayout
from pipeline_lib.snapshots import read_snapshot
from pipeline_lib.spec import expand_runs, load_study
from pipeline_lib.training import evaluate, make_model, train_run
from pipeline_lib.vocabulary import RunStatus
from tests.conftest import write_spec


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", subset=300)


def _config(tmp_path, **sweep):
    spec = write_spec(tmp_path, sweep={"lr": [0.05], "batch_size": [64], "dropout": [0.25], **sweep},
                      widths=[1.0], seeds=[0], samples=1, width_transfer={})
    return expand_runs(load_study(spec))[0]


def test_run_records_every_epoch_and_snapshot(tmp_path, digits):
    config = _config(tmp_path)
    result = train_run(config, digits, tmp_path)
    assert result.status == RunStatus.COMPLETED and result.epochs_done == config.epochs
    assert [m.epoch for m in result.metrics] == list(range(config.epochs + 1))
    assert [s.epoch for s in result.snapshots] == list(range(config.epochs + 1))
    assert result.metrics[0].seconds == 0 and all(m.seconds > 0 for m in result.metrics[1:])
    assert result.metrics[-1].train_loss < result.metrics[0].train_loss
    # epoch-0 snapshot is the seeded initialisation
    init = make_model(config, digits).state_dict()
    snap0 = read_snapshot(DataLayout(tmp_path).snapshot(config.run_id, 0))
    assert all(torch.equal(snap0[k], v.float()) for k, v in init.items())


def test_finished_run_is_not_trained_again(tmp_path, digits):
    config = _config(tmp_path)
    first = train_run(config, digits, tmp_path)
    mtime = DataLayout(tmp_path).snapshot(config.run_id, config.epochs).stat().st_mtime_ns
    again = train_run(config, digits, tmp_path)
    assert again.metrics == first.metrics
    assert DataLayout(tmp_path).snapshot(config.run_id, config.epochs).stat().st_mtime_ns == mtime


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, digits):
    torch.set_num_threads(1)
    config = _config(tmp_path)
    reference = train_run(config, digits, tmp_path / "straight")

    def crash_after_epoch_2(m):
        if m.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_run(config, digits, tmp_path / "resumed", on_epoch=crash_after_epoch_2)
    assert not DataLayout(tmp_path / "resumed").snapshot(config.run_id, 3).exists()
    resumed = train_run(config, digits, tmp_path / "resumed")
    assert resumed.status == RunStatus.COMPLETED
    assert [m.test_acc for m in resumed.metrics] == [m.test_acc for m in reference.metrics]
    final_a = read_snapshot(DataLayout(tmp_path / "straight").snapshot(config.run_id, config.epochs))
    final_b = read_snapshot(DataLayout(tmp_path / "resumed").snapshot(config.run_id, config.epochs))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_divergence_is_recorded_with_its_epoch(tmp_path, digits):
    config = _config(tmp_path, lr=[1e6], dropout=[0.0])
    result = train_run(config, digits, tmp_path)
    assert result.status == RunStatus.DIVERGED
    assert result.diverged_epoch == 1 and result.epochs_done == 0
    assert len(result.snapshots) == 1  # only the initialisation


def test_train_metrics_come_from_the_epochs_minibatches(tmp_path, digits):
    """With lr 0 and no dropout the weights stay put: the minibatch means are the exact pass over all images."""
    config = _config(tmp_path, dropout=[0.0]).model_copy(update={"lr": 0.0})  # specs refuse lr 0
    result = train_run(config, digits, tmp_path)
    model = make_model(config, digits)
    exact = evaluate(model, digits.x_train, digits.y_train)
    for m in result.metrics:
        assert m.train_acc == exact[1] and m.train_loss == pytest.approx(exact[0], rel=1e-6)


def test_exact_train_metrics_are_a_pass_after_the_epoch(tmp_path, digits):
    """`exact` measures the same weights after the epoch; `epoch` differs from it except at epoch 0."""
    by_epoch = _config(tmp_path)
    exact = by_epoch.model_copy(update={"train_metrics": "exact"})
    assert exact.run_id != by_epoch.run_id
    a, b = train_run(by_epoch, digits, tmp_path / "a"), train_run(exact, digits, tmp_path / "b")
    assert [m.test_acc for m in a.metrics] == [m.test_acc for m in b.metrics]  # same weights
    assert (a.metrics[0].train_loss, a.metrics[0].train_acc) == (b.metrics[0].train_loss, b.metrics[0].train_acc)
    model = make_model(exact, digits)
    for epoch in range(1, exact.epochs + 1):
        model.load_state_dict(read_snapshot(DataLayout(tmp_path / "b").snapshot(exact.run_id, epoch)))
        assert (b.metrics[epoch].train_loss, b.metrics[epoch].train_acc) == evaluate(model, digits.x_train,
                                                                                      digits.y_train)
        assert a.metrics[epoch].train_loss != b.metrics[epoch].train_loss
