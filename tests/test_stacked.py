"""Stacked training must give every run what `train_run` gives it alone: weights, metrics, files."""
import threading

import pytest
import torch

from pipeline_lib.background_writer import BackgroundWriter
from pipeline_lib.datasets import TensorData, load_dataset
from pipeline_lib.layout import DataLayout
from pipeline_lib.models.dropout import DropoutMasks
from pipeline_lib.snapshots import read_snapshot
from pipeline_lib.spec import DatasetSpec, LrSchedule, RunConfig
from pipeline_lib.stacked import StackOptions, auto_vector_width, train_group
from pipeline_lib.stacked.optim import StackedOptimizer
from pipeline_lib.run_state import RunStore
from pipeline_lib.training import finished_result, make_model, train_run
from pipeline_lib.vocabulary import RunStatus

DIGITS = DatasetSpec(name="digits", subset=256)
# (seed, lr, dropout, weight decay); the last run diverges in its first epoch (overflow, float32).
MIXED = [(0, 0.05, 0.0, 0.0), (1, 0.02, 0.25, 5e-4), (2, 0.1, 0.5, 5e-3), (3, 0.01, 0.1, 0.0), (4, 1e30, 0.0, 0.0)]
OVERFLOW_LR = {"float32": 1e30, "float64": 1e300}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", subset=256)


def _configs(architecture="lenet", optimizer="sgd", epochs=3, runs=MIXED, train_metrics="epoch"):
    scale = 0.1 if optimizer == "adam" else 1.0
    return [RunConfig(study="t", dataset=DIGITS, architecture=architecture, width=1.0, depth=1, epochs=epochs,
                      seed=seed, config_id=f"c{seed}", lr=min(lr * scale, lr), dropout=dropout, weight_decay=wd,
                      optimizer=optimizer, batch_size=64, train_metrics=train_metrics)
            for seed, lr, dropout, wd in runs]


@pytest.fixture
def float64():
    """Train in float64: the stack then agrees with single runs far below any real difference."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _as_double(data: TensorData) -> TensorData:
    return TensorData(data.x_train.double(), data.y_train, data.x_test.double(), data.y_test, data.num_classes)


def _assert_same_run(stacked, single, data_dir_a, data_dir_b, weights_atol, loss_rtol):
    assert (stacked.status, stacked.epochs_done, stacked.diverged_epoch) == \
        (single.status, single.epochs_done, single.diverged_epoch)
    assert [m.epoch for m in stacked.metrics] == [m.epoch for m in single.metrics]
    for a, b in zip(stacked.metrics, single.metrics):
        assert a.train_loss == pytest.approx(b.train_loss, rel=loss_rtol)
        assert a.test_loss == pytest.approx(b.test_loss, rel=loss_rtol)
        assert abs(a.test_acc - b.test_acc) <= 1 / 400 and abs(a.train_acc - b.train_acc) <= 1 / 200
    assert [s.epoch for s in stacked.snapshots] == [s.epoch for s in single.snapshots]
    for epoch in range(single.epochs_done + 1):
        a = read_snapshot(DataLayout(data_dir_a).snapshot(single.run_id, epoch))
        b = read_snapshot(DataLayout(data_dir_b).snapshot(single.run_id, epoch))
        assert list(a) == list(b)  # same tensors, same order: downstream stages cannot tell
        for name in a:
            torch.testing.assert_close(a[name], b[name], atol=weights_atol, rtol=0, msg=f"{name} epoch {epoch}")


@pytest.mark.parametrize("architecture, optimizer, vector_width, dtype, train_metrics", [
    ("lenet", "sgd", 0, "float32", "epoch"),
    # Adam in float64: in float32 it turns the summation-order noise of near-zero gradients into
    # lr-sized steps (weights 1.3e-4 apart after one epoch on an AVX2 EPYC, within 1e-5 elsewhere)
    ("lenet", "adam", 2, "float64", "epoch"),
    ("lenet", "sgd", 2, "float32", "exact"),
    ("resnet", "sgd", 0, "float64", "epoch"),  # BatchNorm: per-run batch statistics and running stats
    ("resnet", "adam", 2, "float64", "exact"),
])
def test_group_equals_runs_trained_alone(tmp_path, digits, request, architecture, optimizer, vector_width, dtype,
                                         train_metrics):
    torch.set_num_threads(1)
    if dtype == "float64":
        request.getfixturevalue("float64")
        digits = _as_double(digits)
    runs = MIXED[:4] + [(4, OVERFLOW_LR[dtype], 0.0, 0.0)]
    configs = _configs(architecture, optimizer, epochs=3 if architecture == "lenet" else 2, runs=runs,
                       train_metrics=train_metrics)
    group = train_group(configs, digits, tmp_path / "stacked", options=StackOptions(vector_width=vector_width))
    assert group.timings.lane_widths == ([5] if vector_width == 0 else [2, 2, 1])
    singles = [train_run(c, digits, tmp_path / "single") for c in configs]
    assert [r.status for r in singles] == [RunStatus.COMPLETED] * 4 + [RunStatus.DIVERGED]
    tolerance = dict(weights_atol=1e-5, loss_rtol=1e-4) if dtype == "float32" else dict(weights_atol=1e-7,
                                                                                        loss_rtol=1e-7)
    for stacked, single in zip(group.results, singles):
        _assert_same_run(stacked, single, tmp_path / "stacked", tmp_path / "single", **tolerance)


@torch.no_grad()
def _todays_evaluate(model, x, y):
    """The evaluation pass before issue 14 (per-batch host sums under no_grad): the reference."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), 512):
        logits = model(x[i:i + 512])
        loss_sum += float(torch.nn.functional.cross_entropy(logits, y[i:i + 512], reduction="sum"))
        correct += int((logits.argmax(1) == y[i:i + 512]).sum())
    return loss_sum / len(y), correct / len(y)


def test_test_metrics_equal_todays_evaluation(tmp_path, digits):
    """Every epoch's test loss and accuracy, alone and stacked, are what today's pass gives on its weights.

    float32, so the snapshots hold the exact weights; the stack sums its convolutions in another order.
    """
    torch.set_num_threads(1)
    configs = _configs(runs=MIXED[:3], epochs=2)
    single = [train_run(c, digits, tmp_path / "single") for c in configs]
    stacked = train_group(configs, digits, tmp_path / "stacked").results
    for config, alone, together in zip(configs, single, stacked):
        model = make_model(config, digits)
        for epoch in range(config.epochs + 1):
            model.load_state_dict(read_snapshot(DataLayout(tmp_path / "single").snapshot(config.run_id, epoch)))
            loss, acc = _todays_evaluate(model, digits.x_test, digits.y_test)
            assert (alone.metrics[epoch].test_loss, alone.metrics[epoch].test_acc) == (loss, acc)
            assert together.metrics[epoch].test_acc == acc
            assert together.metrics[epoch].test_loss == pytest.approx(loss, rel=1e-5)


def test_runs_differ_from_each_other(tmp_path, digits):
    """Guard against a stack that trains every run alike: own init, order, masks, hyper-parameters."""
    configs = _configs(runs=[(0, 0.05, 0.5, 0.0), (0, 0.05, 0.5, 5e-3), (1, 0.05, 0.5, 0.0)], epochs=1)
    group = train_group(configs, digits, tmp_path)
    finals = [read_snapshot(DataLayout(tmp_path).snapshot(c.run_id, 1))["classifier.2.weight"] for c in configs]
    inits = [read_snapshot(DataLayout(tmp_path).snapshot(c.run_id, 0))["classifier.2.weight"] for c in configs]
    assert torch.equal(inits[0], inits[1]) and not torch.equal(inits[0], inits[2])
    assert not torch.allclose(finals[0], finals[1], atol=1e-6)  # weight decay
    assert all(r.status == RunStatus.COMPLETED for r in group.results)


class Interrupt(Exception):
    pass


def test_interrupted_group_resumes_per_run_alone_or_stacked(tmp_path, digits):
    torch.set_num_threads(1)
    configs = _configs(runs=MIXED[:3], epochs=3)
    straight = train_group(configs, digits, tmp_path / "straight").results

    def crash_in_epoch_2(run_id, metrics):
        if metrics.epoch == 2 and run_id == configs[1].run_id:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_group(configs, digits, tmp_path / "resumed", on_epoch=crash_in_epoch_2)
    assert not DataLayout(tmp_path / "resumed").snapshot(configs[0].run_id, 3).exists()
    alone = train_run(configs[0], digits, tmp_path / "resumed")  # its state file is train_run's format
    rest = train_group(configs[1:], digits, tmp_path / "resumed").results
    for a, b in zip([alone, *rest], straight):
        _assert_same_run(a, b, tmp_path / "resumed", tmp_path / "straight", weights_atol=1e-5, loss_rtol=1e-4)


def test_capped_runs_pause_resumable_alone_or_stacked_and_stopped_runs_stay_stopped(tmp_path, digits):
    """Triage's cap: runs paused at until_epoch keep model and optimizer and finish like uninterrupted
    runs, whichever trainer continues them; a stopped run keeps only its result and is never trained on."""
    torch.set_num_threads(1)
    configs = _configs(runs=MIXED[:3], epochs=3)
    straight = train_group(configs, digits, tmp_path / "straight").results
    paused = train_group(configs, digits, tmp_path / "capped", until_epoch=1).results
    assert [(r.status, r.epochs_done, len(r.snapshots)) for r in paused] == [("running", 1, 2)] * 3
    assert not DataLayout(tmp_path / "capped").snapshot(configs[0].run_id, 2).exists()
    paused_state = RunStore(tmp_path / "capped", configs[0].run_id).load()
    assert paused_state.model is not None and paused_state.optimizer is not None
    assert finished_result(configs[0], tmp_path / "capped") is None  # paused, not finished
    assert finished_result(configs[0], tmp_path / "capped", until_epoch=1).epochs_done == 1
    again = train_run(configs[1], digits, tmp_path / "capped", until_epoch=1)  # at the cap already: nothing trained
    assert again.epochs_done == 1 and not DataLayout(tmp_path / "capped").snapshot(configs[1].run_id, 2).exists()

    stopped = RunStore(tmp_path / "capped", configs[2].run_id).stop()
    state = RunStore(tmp_path / "capped", configs[2].run_id).load()
    assert stopped.status == state.status == RunStatus.STOPPED and state.model is None and stopped.epochs_done == 1
    alone = train_run(configs[0], digits, tmp_path / "capped")  # one paused run continued alone, one stacked
    stacked = train_group(configs[1:], digits, tmp_path / "capped").results
    for a, b in zip([alone, stacked[0]], straight[:2]):
        _assert_same_run(a, b, tmp_path / "capped", tmp_path / "straight", weights_atol=1e-5, loss_rtol=1e-4)
    assert stacked[1].status == RunStatus.STOPPED and stacked[1].epochs_done == 1  # the stopped run was not trained
    assert not DataLayout(tmp_path / "capped").snapshot(configs[2].run_id, 2).exists()
    assert finished_result(configs[2], tmp_path / "capped").status == RunStatus.STOPPED


def test_finished_group_is_read_back_not_trained(tmp_path, digits):
    configs = _configs(runs=MIXED[:2], epochs=2)
    first = train_group(configs, digits, tmp_path)
    final = DataLayout(tmp_path).snapshot(configs[0].run_id, 2)
    mtime = final.stat().st_mtime_ns
    again = train_group(configs, digits, tmp_path)
    assert [r.metrics for r in again.results] == [r.metrics for r in first.results]
    assert again.timings.model_epochs == 0 and final.stat().st_mtime_ns == mtime


def test_group_must_share_its_key(digits, tmp_path):
    a, b = _configs(runs=MIXED[:2])
    with pytest.raises(ValueError, match="group_key"):
        train_group([a, b.model_copy(update={"batch_size": 32})], digits, tmp_path)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_stacked_optimizer_is_torch_optim_per_run(kind):
    torch.manual_seed(0)
    lrs, wds = [0.1, 0.01, 0.3], [0.0, 5e-4, 5e-3]
    start = {"w": torch.randn(3, 4, 5), "b": torch.randn(3, 4)}
    stacked = {k: v.clone().requires_grad_() for k, v in start.items()}
    optimizer = StackedOptimizer(kind, stacked, lrs, wds)
    singles = [{k: v[r].clone().requires_grad_() for k, v in start.items()} for r in range(3)]
    torch_optimizers = [
        torch.optim.SGD(s.values(), lr=lr, momentum=0.9, weight_decay=wd) if kind == "sgd"
        else torch.optim.Adam(s.values(), lr=lr, weight_decay=wd) for s, lr, wd in zip(singles, lrs, wds)]
    for _ in range(10):
        grads = {k: torch.randn_like(v) for k, v in start.items()}
        for k, p in stacked.items():
            p.grad = grads[k].clone()
        optimizer.step()
        for r, (single, opt) in enumerate(zip(singles, torch_optimizers)):
            for k, p in single.items():
                p.grad = grads[k][r].clone()
            opt.step()
    for r in range(3):
        for k in start:
            assert torch.equal(stacked[k][r], singles[r][k]), (kind, r, k)
    # each run's exported state loads into torch's optimizer and equals its own state
    templates = [opt.state_dict() for opt in torch_optimizers]
    for exported, opt in zip(optimizer.export_runs(templates), torch_optimizers):
        own = opt.state_dict()
        assert exported["param_groups"] == own["param_groups"]
        for i, entry in own["state"].items():
            assert all(torch.equal(exported["state"][i][name], value) for name, value in entry.items())


def test_dropout_masks_are_per_run_streams():
    x = torch.ones(64, 3 * 50)
    stacked = DropoutMasks(seeds=[0, 1, 0], epochs=[1, 1, 2], rates=[0.5, 0.0, 0.25], device="cpu")
    mask = stacked.mask(x)
    blocks = mask.split(50, dim=1)
    alone = [DropoutMasks([s], [e], [p], "cpu").mask(torch.ones(64, 50)) for s, e, p in [(0, 1, .5), (1, 1, 0.), (0, 2, .25)]]
    for block, single in zip(blocks, alone):
        assert torch.equal(block, single)
    assert torch.equal(blocks[1], torch.ones(64, 50))
    assert set(blocks[0].unique().tolist()) == {0.0, 2.0} and set(blocks[2].unique().tolist()) == {0.0, torch.tensor(4 / 3).item()}
    assert abs(float((blocks[0] == 0).float().mean()) - 0.5) < 0.05
    assert abs(float((blocks[2] == 0).float().mean()) - 0.25) < 0.05
    again = DropoutMasks([0], [1], [0.5], "cpu").mask(torch.ones(64, 50))
    assert torch.equal(again, alone[0])  # a resumed epoch draws the same masks


def test_background_writer_keeps_order_and_reports_errors():
    done, release = [], threading.Event()
    threading.Timer(0.2, release.set).start()
    with BackgroundWriter(max_pending=1) as writer:
        writer.submit(release.wait)  # the thread is busy until the timer fires
        for i in range(3):
            writer.submit(lambda i=i: done.append(i))  # the second of these waits for room in the queue
    assert done == [0, 1, 2] and writer.jobs == 4
    assert writer.wait_seconds > 0.1
    failing = BackgroundWriter()
    failing.submit(lambda: 1 / 0)
    with pytest.raises(RuntimeError, match="background write failed"):
        failing.close()


def test_auto_vector_width_bounds_cpu_memory(digits):
    small = _configs()[0]
    assert auto_vector_width(small, digits, "cpu", 64) == 64  # 8x8 digits: the whole group
    big = TensorData(torch.zeros(4, 3, 64, 64), torch.zeros(4, dtype=torch.int64), torch.zeros(4, 3, 64, 64),
                     torch.zeros(4, dtype=torch.int64), 10)
    vgg = small.model_copy(update={"architecture": "vgg"})  # first activation: 64 images x 32 x 64 x 64 floats
    assert auto_vector_width(vgg, big, "cpu", 64) == (256 << 20) // (64 * 32 * 64 * 64 * 4) == 8
    assert auto_vector_width(vgg, big, "cuda", 64) == 64


@pytest.mark.parametrize("optimizer, train_metrics", [("sgd", "exact"), ("adam", "epoch")])
def test_group_with_schedules_and_label_noise_equals_runs_alone(tmp_path, digits, optimizer, train_metrics):
    """Members of one stack follow different schedules and train on different noisy labels."""
    torch.set_num_threads(1)
    schedules = [LrSchedule(), LrSchedule(kind="cosine"), LrSchedule(kind="step", step_size=1, gamma=0.2),
                 LrSchedule(kind="warmup_cosine", warmup_epochs=1)]
    configs = [c.model_copy(update={"lr_schedule": s, "label_noise": noise})
               for c, s, noise in zip(_configs(optimizer=optimizer, runs=MIXED[:4], train_metrics=train_metrics),
                                      schedules, [0.0, 0.3, 0.5, 0.3])]
    group = train_group(configs, digits, tmp_path / "stacked", options=StackOptions(vector_width=2))
    singles = [train_run(c, digits, tmp_path / "single") for c in configs]
    for stacked, single in zip(group.results, singles):
        _assert_same_run(stacked, single, tmp_path / "stacked", tmp_path / "single", weights_atol=1e-5,
                         loss_rtol=1e-4)
    clean = train_run(configs[1].model_copy(update={"label_noise": 0.0}), digits, tmp_path / "clean")
    assert clean.metrics[1].train_loss != singles[1].metrics[1].train_loss  # the noise reached training
