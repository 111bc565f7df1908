"""Replay of a user's own Optuna study (flows.replay_optuna): a study that examples/optuna_pytorch.py
records is raced under the curve-only policies; i-Epoch's keep decisions are checked against the rule
written out here from the stored intermediate values."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import optuna
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def _kept_by_i_epoch(values: list[float], fraction: float) -> int:
    """Runs one worker keeps at the rung, in trial order: a run goes on when fewer of the runs seen so
    far (itself included) than ceil(fraction x seen) scored at least as well before it."""
    kept = 0
    for i, v in enumerate(values):
        ahead = sum(1 for earlier in values[:i] if earlier >= v)
        kept += ahead < math.ceil(round(fraction * (i + 1), 9))
    return kept


def test_a_recorded_optuna_study_is_replayed_from_its_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    recorded = _run("examples/optuna_pytorch.py", "--seeds", "0", "--trials", "8", "--pruners", "none",
                    "--storage", storage)
    assert recorded.returncode == 0, recorded.stderr
    out = tmp_path / "replay"
    done = _run("-m", "flows.replay_optuna", "--storage", storage, "--workers", "1", "--orders", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "8 complete trials of up to 10 steps replayed" in done.stderr
    assert (out / "replay.md").is_file() and (out / "replay_pareto.png").is_file()

    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    rows = pl.read_parquet(out / "replays.parquet").filter(pl.col("order_index") == 0)
    assert set(rows["policy"]) >= {"train_all", "i_epoch", "MedianPruner", "SuccessiveHalvingPruner"}
    train_all = rows.filter(pl.col("policy") == "train_all").row(0, named=True)
    assert (train_all["runs_kept"], train_all["epochs"], train_all["regret"]) == (8, 80, 0.0)
    for rung in (1, 2):
        for fraction in (0.2, 0.5):
            row = rows.filter((pl.col("policy") == "i_epoch") & (pl.col("rung") == rung)
                              & (pl.col("keep_fraction") == fraction)).row(0, named=True)
            expected = _kept_by_i_epoch([t.intermediate_values[rung] for t in trials], fraction)
            assert row["runs_kept"] == expected, (rung, fraction)
            assert row["epochs"] == expected * 10 + (8 - expected) * rung
    best = max(t.value for t in trials)
    assert all(r["regret"] >= 0 for r in rows.iter_rows(named=True))
    assert rows.filter(pl.col("best_kept"))["regret"].max() == pytest.approx(0.0) and best > 0.5


def test_a_storage_with_two_studies_needs_a_name(tmp_path):
    storage = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=storage)
    done = _run("-m", "flows.replay_optuna", "--storage", storage)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"error: storage {storage!r} holds 2 studies; name one with --study: a, b"
    done = _run("-m", "flows.replay_optuna", "--storage", storage, "--study", "a")
    assert done.returncode == 2 and "has 0 complete trial(s)" in done.stderr
