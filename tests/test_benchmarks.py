"""Every benchmark runs on a tiny input, so that a new spec field or a renamed library call cannot break
`make bench` silently (it did: a run stand-in lacked `label_noise`). Speed is not checked here."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "train_throughput.py": ["--mode", "cpu", "--architectures", "lenet", "--runs", "2", "--subset", "64",
                            "--epochs", "1", "--plain-runs", "1", "--repeats", "1", "--vmap"],
    "graph_metrics.py": ["--graphs", "lenet", "--quick"],
    "command_wall.py": ["--repeats", "1"],
    "metanetwork.py": ["--k", "1", "--studies", "3", "--steps", "5", "--ablate", "--within", "corpus-digits-alexnet-mixed"],
    "decision_race.py": ["--studies", "2", "--orders", "1"],
    "study_wall.py": ["--samples", "2", "--subset", "64", "--test-subset", "64", "--epochs", "2", "--repeats", "1"],
}


def test_every_benchmark_has_a_tiny_input():
    assert set(TINY) == {p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_on_a_tiny_input(script, tmp_path):
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *TINY[script], "--write", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(tmp_path.iterdir()), "the benchmark wrote no result"


def test_the_throughput_run_stand_in_has_every_field_training_reads():
    sys.path.insert(0, str(ROOT))
    from benchmarks.train_throughput import BenchRun
    from pipeline_lib.spec import RunConfig

    bookkeeping = {"study", "config_id"}
    assert set(RunConfig.model_fields) - bookkeeping <= {f.name for f in dataclasses.fields(BenchRun)}
