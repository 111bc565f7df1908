"""The spec knobs lr_schedule and label_noise: values against torch's own schedulers, validation
errors, run ids unchanged when they are at their defaults, and label noise that reruns reproduce."""
import hashlib
from pathlib import Path

import pytest
import torch

from pipeline_lib.datasets import noisy_labels
from pipeline_lib.spec import LrSchedule, SpecError, expand_runs, load_study
from tests.conftest import write_spec

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8


def _torch_factors(make_scheduler) -> list[float]:
    """The learning rate torch's scheduler gives each epoch 1..EPOCHS, stepped once per epoch, base lr 1."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = make_scheduler(optimizer)
    factors = []
    for _ in range(EPOCHS):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return factors


S = torch.optim.lr_scheduler


@pytest.mark.parametrize("written, make_scheduler", [
    ("constant", lambda o: S.ConstantLR(o, factor=1.0)),
    ("cosine", lambda o: S.CosineAnnealingLR(o, T_max=EPOCHS)),
    ({"step": {"step_size": 3}}, lambda o: S.StepLR(o, step_size=3, gamma=0.1)),
    ({"kind": "step", "step_size": 2, "gamma": 0.5}, lambda o: S.StepLR(o, step_size=2, gamma=0.5)),
    ({"warmup_cosine": {"warmup_epochs": 2}}, lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=1 / 3, end_factor=1.0, total_iters=2), S.CosineAnnealingLR(o, T_max=EPOCHS - 2)],
        milestones=[2])),
    ("warmup_cosine", lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=1 / 2, end_factor=1.0, total_iters=1), S.CosineAnnealingLR(o, T_max=EPOCHS - 1)],
        milestones=[1])),
])
def test_schedule_factors_equal_torch_schedulers(written, make_scheduler):
    schedule = LrSchedule.model_validate(written)
    ours = [schedule.factor(epoch, EPOCHS) for epoch in range(1, EPOCHS + 1)]
    assert ours == pytest.approx(_torch_factors(make_scheduler), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("sweep, message", [
    ({"lr_schedule": ["linear"]}, "sweep.lr_schedule.0: lr_schedule kind must be one of constant, cosine, step, "
                                  "warmup_cosine, got 'linear'"),
    ({"lr_schedule": [{"step": {}}]}, "sweep.lr_schedule.0: lr_schedule step needs step_size"),
    ({"lr_schedule": [{"cosine": {"warmup_epochs": 1}}]}, "lr_schedule cosine takes no parameters, not warmup_epochs"),
    ({"lr_schedule": [{"step": {"step_size": 1, "gamma": 2.0}}]}, "sweep.lr_schedule.0.gamma"),
    ({"lr_schedule": [{"warmup_cosine": {"warmup_epochs": 3}}]}, "warmup_epochs must be below epochs=3"),
    ({"lr_schedule": [{"step": {"step_size": 5}}]}, "step_size must be below epochs=3"),
    ({"lr_schedule": [{"warmup_cosine": {"warmup": 1}}]}, "warmup: unknown key"),
    ({"lr_schedule": []}, "sweep.lr_schedule: must list at least one value"),
    ({"label_noise": [1.0]}, "sweep.label_noise: label noise must lie in [0, 1), got 1.0"),
    ({"label_noise": {"uniform": [-0.1, 0.2]}}, "sweep.label_noise: label noise must lie in [0, 1), got -0.1"),
])
def test_bad_schedules_and_noise_name_the_field(tmp_path, sweep, message):
    with pytest.raises(SpecError) as err:
        load_study(write_spec(tmp_path, sweep={"lr": [0.1], **sweep}))
    assert message in str(err.value)


def _ids(path) -> str:
    return hashlib.sha1(",".join(r.run_id for r in expand_runs(load_study(path))).encode()).hexdigest()


def test_run_ids_of_shipped_specs_are_those_before_the_new_knobs():
    """Recorded from the code before lr_schedule and label_noise existed: warehouses keep their runs."""
    assert _ids(ROOT / "specs/digits.yaml") == "1a65797f3416ee95ea2dfc88c847afd3ac4ca795"
    assert _ids(ROOT / "specs/fashion_mnist_cpu.yaml") == "6cfd0aab16124c7ded3213a4aee29b02cc457302"
    assert expand_runs(load_study(ROOT / "specs/digits.yaml"))[0].config_id == "cf6b59c01c"


def test_defaults_written_out_keep_run_ids_and_other_values_change_them(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    plain = write_spec(tmp_path / "a")
    explicit = write_spec(tmp_path / "b", sweep={"lr": {"log_uniform": [0.01, 0.1]}, "batch_size": [64],
                                                 "lr_schedule": "constant", "label_noise": [0.0]})
    noisy = write_spec(tmp_path / "c", sweep={"lr": {"log_uniform": [0.01, 0.1]}, "batch_size": [64],
                                              "lr_schedule": ["cosine"], "label_noise": [0.1]})
    assert _ids(plain) == _ids(explicit)
    a, c = expand_runs(load_study(plain)), expand_runs(load_study(noisy))
    assert [r.lr for r in a] == [r.lr for r in c]  # the first dimensions draw as before
    assert not {r.run_id for r in a} & {r.run_id for r in c}
    assert not {r.config_id for r in a} & {r.config_id for r in c}


def test_label_noise_is_seeded_exact_and_nested():
    labels = torch.arange(1000) % 10
    a = noisy_labels(labels, 0.3, seed=4, num_classes=10)
    assert torch.equal(a, noisy_labels(labels, 0.3, seed=4, num_classes=10))  # a rerun gets the same labels
    changed = a != labels
    assert int(changed.sum()) == 300  # exactly the fraction, each replaced label wrong
    assert int((a[changed] < 10).sum()) == 300 and torch.equal(labels, torch.arange(1000) % 10)  # input untouched
    other_seed = noisy_labels(labels, 0.3, seed=5, num_classes=10) != labels
    assert not torch.equal(changed, other_seed)
    larger = noisy_labels(labels, 0.5, seed=4, num_classes=10) != labels
    assert bool((larger | ~changed).all())  # the 30% are among the 50%
    assert noisy_labels(labels, 0.0, seed=4, num_classes=10) is labels
    # new classes spread over the other nine (not always the next one)
    assert len(set((a[changed] - labels[changed]).remainder(10).tolist())) == 9


def test_a_study_with_schedules_survives_its_stored_json(tmp_path):
    """The warehouse keeps the spec as JSON (studies.spec_json); reading it back gives the same study."""
    study = load_study(write_spec(tmp_path, sweep={"lr": [0.1], "lr_schedule": ["cosine", {"step": {"step_size": 1}}],
                                                   "label_noise": [0.2]}))
    assert type(study).model_validate_json(study.model_dump_json()) == study
