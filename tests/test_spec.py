import math
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.spec import SpecError, draw_configurations, expand_runs, load_study
from tests.conftest import write_spec

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_specs_validate():
    for path in (ROOT / "specs").rglob("*.yaml"):
        study = load_study(path)
        assert expand_runs(study), path


def test_triage_keep_rules_parse_to_their_policy(tmp_path):
    policies = [load_study(write_spec(tmp_path, triage={"at_epoch": 1, "keep": keep})).triage.policy
                for keep in (0.3, 5, {"p_good": 0.6})]
    assert policies == ["fraction 0.3", "top 5", "p_good>=0.6"]
    assert load_study(write_spec(tmp_path, triage={"rungs": [1, 2], "reduction_factor": 3})).triage.policy == "reduction 3"


def test_expansion_counts_and_stable_ids(tiny_spec):
    study = load_study(tiny_spec)
    runs = expand_runs(study)
    assert len(runs) == 2 * 2 * 2  # samples x widths x seeds
    again = expand_runs(load_study(tiny_spec))
    assert [r.run_id for r in runs] == [r.run_id for r in again]
    assert len({r.run_id for r in runs}) == len(runs)
    # seeds of one configuration share the config_id, nothing else does
    by_config = {}
    for r in runs:
        by_config.setdefault(r.config_id, set()).add((r.width, r.seed))
    assert len(by_config) == 2 and all(len(v) == 4 for v in by_config.values())
    assert all(0.01 <= r.lr <= 0.1 for r in runs)


def test_run_id_ignores_dataset_root_but_not_subset(tmp_path):
    a = expand_runs(load_study(write_spec(tmp_path, dataset={"name": "digits", "subset": 400})))
    b = expand_runs(load_study(write_spec(tmp_path, dataset={"name": "digits", "subset": 400, "root": str(tmp_path)})))
    c = expand_runs(load_study(write_spec(tmp_path, dataset={"name": "digits", "subset": 300})))
    assert [r.run_id for r in a] == [r.run_id for r in b]
    assert not {r.run_id for r in a} & {r.run_id for r in c}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs_typo": 3}, "epochs_typo: unknown key"),
        ({"architectures": ["lenet", "transformer"]}, "architectures.1"),
        ({"dataset": {"name": "imagenet"}}, "'digits', 'fashion_mnist', 'cifar10' or 'svhn'"),
        ({"sweep": {"lr": {"log_uniform": [0.1, 0.01]}}}, "0 < low <= high"),
        ({"widths": [0.0]}, "positive"),
        ({"execution": {"device": "tpu"}}, "execution.device"),
        ({"predict": {"k_epochs": [5]}}, "must be below epochs"),
        ({"width_transfer": {"train_widths": [4.0], "test_widths": [1.0]}}, "not in widths"),
        ({"sweep": {"lr": [0.1, 0.0]}}, "sweep.lr: learning rates must be > 0"),
        ({"sweep": {"lr": {"log_uniform": [0.0, 0.1]}}}, "sweep.lr"),
        ({"sweep": {"dropout": {"uniform": [0.0, 1.0]}}}, "sweep.dropout: dropout rates must lie in [0, 1)"),
        ({"sweep": {"dropout": [-0.1]}}, "sweep.dropout"),
        ({"sweep": {"weight_decay": {"uniform": [-0.1, 0.1]}}}, "sweep.weight_decay: weight decay must be >= 0"),
        ({"widths": [0.5, 1.0, 0.5]}, "widths: lists [0.5] more than once"),
        ({"architectures": ["lenet", "lenet"]}, "architectures: lists ['lenet'] more than once"),
        ({"dataset": {"name": "svhn"}}, "svhn needs dataset.root"),
        ({"triage": {"at_epoch": 3, "keep": 0.5}}, "triage.rungs [3] must be below epochs=3"),
        ({"triage": {"at_epoch": 0, "keep": 0.5}}, "triage.rungs: rungs must be epochs >= 1 in increasing order, got [0]"),
        ({"triage": {"at_epoch": 1}}, "triage: give one keep rule"),
        ({"triage": {"at_epoch": 1, "keep": 1.0}}, "triage.keep: keep as a fraction must lie strictly between 0 and 1"),
        ({"triage": {"at_epoch": 1, "keep": 0}}, "triage.keep: keep as a number of runs must be >= 1, got 0"),
        ({"triage": {"at_epoch": 1, "keep": {"p_good": 1.5}}}, "triage.keep: keep as a mapping must be {p_good: t}"),
        ({"triage": {"at_epoch": 1, "keep": {"top": 3}}}, "triage.keep: keep as a mapping must be {p_good: t}"),
        ({"triage": {"at_epoch": 1, "keep": "half"}}, "triage.keep: keep must be a fraction 0 < x < 1, a number"),
        ({"triage": {"at_epoch": 1, "keep": 2, "predicter": "best"}}, "triage.predicter: unknown key"),
        ({"name": ".."}, "name: String should match pattern"),
        ({"name": ".hidden"}, "name: String should match pattern"),
        ({"samples": 100000}, "= 400000 runs, more than the 20000 one study may hold"),
    ],
)
def test_bad_specs_name_the_field(tmp_path, overrides, message):
    with pytest.raises(SpecError) as err:
        load_study(write_spec(tmp_path, **overrides))
    assert message in str(err.value)


def test_cli_reports_bad_spec_without_traceback(tmp_path):
    spec = write_spec(tmp_path, optimizer_typo="sgd")
    proc = subprocess.run([sys.executable, "-m", "flows.train_sweep", "--spec", str(spec),
                           "--warehouse", str(tmp_path / "w.duckdb")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "optimizer_typo: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_small_sweeps_cover_every_stratum(tmp_path):
    """Latin hypercube: n configurations put one learning rate in each of n equal log-range strata,
    and list dimensions use every value about equally."""
    study = load_study(write_spec(tmp_path, samples=4, sweep={"lr": {"log_uniform": [0.003, 0.5]},
                                                              "weight_decay": [0.0, 0.0005, 0.005, 0.05]}))
    configs = draw_configurations(study)
    strata = sorted(int(4 * (math.log(c["lr"]) - math.log(0.003)) / (math.log(0.5) - math.log(0.003)))
                    for c in configs)
    assert strata == [0, 1, 2, 3]
    assert sorted(c["weight_decay"] for c in configs) == [0.0, 0.0005, 0.005, 0.05]
    assert draw_configurations(study) == configs  # seeded from the study


# The specs that used to validate and then fail inside the flows (issue 13): each must now stop
# before Prefect starts, with exit status 2, the field named, no traceback and no warehouse file.
UNRUNNABLE = [
    ({"sweep": {"lr": [-0.1]}}, "sweep.lr: learning rates must be > 0"),
    ({"sweep": {"lr": {"uniform": [-1, 0.1]}}}, "sweep.lr: learning rates must be > 0"),
    ({"sweep": {"dropout": [1.5]}}, "sweep.dropout: dropout rates must lie in [0, 1)"),
    ({"sweep": {"weight_decay": [-0.01]}}, "sweep.weight_decay: weight decay must be >= 0"),
    ({"dataset": {"name": "fashion_mnist", "root": "/nonexistent"}}, "dataset.root: folder /nonexistent does not exist"),
    ({"dataset": {"name": "cifar10"}}, "cifar10 needs dataset.root"),
    ({"samples": 1}, "samples: grouped cross-validation needs at least 2 distinct configurations"),
    ({"seeds": [0, 0]}, "seeds: lists [0] more than once"),
    ({"execution": {"device": "cuda:3"}}, "execution.device: device 'cuda:3' requested but"),
    ({"dataset": {"name": "fashion_mnist", "root": "EMPTY"}}, "fashion_mnist files missing in"),
]


@pytest.mark.parametrize("overrides, message", UNRUNNABLE)
def test_unrunnable_specs_stop_before_anything_starts(tmp_path, monkeypatch, capsys, overrides, message):
    from flows._cli import run_cli
    from flows.study import main

    warehouse = tmp_path / "w.duckdb"
    if overrides.get("dataset", {}).get("root") == "EMPTY":  # a folder that exists but holds no dataset
        (tmp_path / "empty").mkdir()
        overrides = {"dataset": {**overrides["dataset"], "root": str(tmp_path / "empty")}}
    monkeypatch.setattr(sys, "argv", ["study", "--spec", str(write_spec(tmp_path, **overrides)),
                                      "--warehouse", str(warehouse)])
    with pytest.raises(SystemExit) as exit_:
        run_cli(main)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert message in err
    assert "Traceback" not in err
    assert not warehouse.exists() and not (tmp_path / "data").exists()


def test_duplicated_yaml_key_is_an_error(tmp_path):
    spec = write_spec(tmp_path)
    spec.write_text(spec.read_text() + "epochs: 5\n")  # TINY_STUDY already sets epochs
    with pytest.raises(SpecError, match="key 'epochs' is given twice"):
        load_study(spec)
    spec.write_text("name: x\nsweep:\n  lr: [0.1]\n  dropout: [0.0]\n  lr: [0.2]\n")
    with pytest.raises(SpecError, match="key 'lr' is given twice"):
        load_study(spec)


def test_cross_validation_needs_two_distinct_configurations(tmp_path):
    """Checked only by the stages that cross-validate: a study that only trains may have one."""
    study = load_study(write_spec(tmp_path, samples=4, sweep={"lr": [0.1]}))  # four draws, one configuration
    with pytest.raises(SpecError, match="samples: grouped cross-validation needs at least 2 distinct "
                                        "configurations; samples=4 with this sweep gives 1"):
        study.check_cross_validation()
    load_study(write_spec(tmp_path, samples=2)).check_cross_validation()


@pytest.mark.parametrize("triage, finishing", [({"rungs": [1], "keep": 1}, 1),
                                               ({"rungs": [1, 2], "keep": 0.25}, 1)])  # 8 runs -> 2 -> 1
def test_a_triage_that_lets_one_run_finish_is_refused_before_training(tmp_path, triage, finishing):
    """A triage keeping one run trained and decided, then the evaluation failed on one configuration
    (and every re-run the same way); the 8 runs of this spec are cut to one by the keep rule."""
    study = load_study(write_spec(tmp_path, triage=triage))
    with pytest.raises(SpecError, match=rf"triage: keep .* lets {finishing} run finish; .* need at least 2 "
                                        r"configurations: keep more runs, or train with python -m flows.train_sweep"):
        study.check_cross_validation()
    load_study(write_spec(tmp_path, triage={"rungs": [1], "keep": 0.5})).check_cross_validation()  # 4 finish
    load_study(write_spec(tmp_path, triage={"rungs": [1], "keep": {"p_good": 0.5}})).check_cross_validation()


def test_unavailable_device_fails_before_prefect_in_a_real_process(tmp_path):
    spec = write_spec(tmp_path, execution={"device": "cuda:3"})
    proc = subprocess.run([sys.executable, "-m", "flows.study", "--spec", str(spec),
                           "--warehouse", str(tmp_path / "w.duckdb")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "execution.device: device 'cuda:3' requested but" in proc.stderr
    assert "Traceback" not in proc.stderr and "prefect" not in proc.stderr.lower()
    assert not (tmp_path / "w.duckdb").exists()


def test_execution_keys_at_the_top_level_still_work_for_one_release(tmp_path, caplog):
    """The old places of device, stacked, stack_size, ...: read into execution:, with a warning naming the
    spec; run ids do not depend on where they are written. Both places at once is an error."""
    (tmp_path / "new").mkdir()
    new = write_spec(tmp_path / "new", execution={"device": "cpu", "stacked": False, "stack_size": 8})
    old = write_spec(tmp_path, execution=None, device="cpu", stacked=False, stack_size=8)  # as specs were written
    with caplog.at_level("WARNING", logger="pipeline_lib.spec"):
        moved = load_study(old)
    assert f"spec {old}: device, stacked, stack_size moved under execution:" in caplog.text
    assert moved.execution == load_study(new).execution
    assert [r.run_id for r in expand_runs(moved)] == [r.run_id for r in expand_runs(load_study(new))]
    both = write_spec(tmp_path, stacked=False, execution={"stacked": True})
    with pytest.raises(SpecError, match="stacked given both at the top level and under execution:"):
        load_study(both)


def test_a_binary_or_too_deep_spec_is_one_error_line(tmp_path):
    """No raw UnicodeDecodeError or RecursionError: the file is named and the command exits 2."""
    binary, deep = tmp_path / "bin.yaml", tmp_path / "deep.yaml"
    binary.write_bytes(bytes(range(256)) * 8)
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    for path, message in ((binary, "is not a text file"), (deep, "nests too deeply")):
        with pytest.raises(SpecError, match=message):
            load_study(path)
        proc = subprocess.run([sys.executable, "-m", "flows.score", "--spec", str(path), "--predictor", "best",
                               "--at-epoch", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: spec ")
        assert "Traceback" not in proc.stderr
