import math
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.spec import SpecError, draw_configurations, expand_runs, load_study
from tests.conftest import write_spec

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_specs_validate():
    for path in (ROOT / "specs").glob("*.yaml"):
        study = load_study(path)
        assert expand_runs(study), path


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
    b = expand_runs(load_study(write_spec(tmp_path, dataset={"name": "digits", "subset": 400, "root": "/x"})))
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
        ({"device": "tpu"}, "device"),
        ({"predict": {"k_epochs": [5]}}, "must be below epochs"),
        ({"width_transfer": {"train_widths": [4.0], "test_widths": [1.0]}}, "not in widths"),
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
