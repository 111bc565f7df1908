"""The corpus pipeline (`stages.corpus`, `python -m flows.corpus`) on two tiny corpus studies and one
held-out study: it trains them with the real stages, exports, fits leave-one-study-out, compares the
predictor with test accuracy on the held-out study, and a second run changes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from scipy.stats import kendalltau

from pipeline_lib.corpus import CORPUS_ENV, read_corpus
from stages.corpus import CorpusPlan, run
from tests.conftest import TINY_STUDY
from tests.prediction.test_corpus import STUDIES, TINY
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _specs(root: Path) -> CorpusPlan:
    for folder, name, overrides in (("corpus", "corpus-a", STUDIES["corpus-a"]), ("corpus", "corpus-b", STUDIES["corpus-b"]),
                                    ("heldout", "heldout-c", {})):
        (root / folder).mkdir(exist_ok=True)
        spec = {**TINY_STUDY, "name": name, "dataset": {"name": "digits", "subset": 400}, **TINY,
                "width_transfer": {}, "graphs": {"exact_limit": 0, "pivots": 8}, **overrides}
        (root / folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return CorpusPlan(root / "corpus", root / "heldout", root / "warehouses", root / "out", jobs=1,
                      predictors=("linear",))


def test_the_corpus_pipeline_trains_exports_fits_compares_and_then_changes_nothing(tmp_path, monkeypatch):
    plan = _specs(tmp_path)
    monkeypatch.setenv(CORPUS_ENV, str(plan.out))  # scoring the held-out study reads this corpus' predictor
    first = run(plan)
    assert first == {"trained": ["corpus-a", "corpus-b", "heldout-c"], "exported": True, "graphs": True,
                     "fitted": True, "heldout_studies": 1}
    corpus = read_corpus(plan.out)
    assert set(corpus.runs["study"]) == {"corpus-a", "corpus-b"} and corpus.runs.height == 32
    card = json.loads((plan.out / "predictor" / "card.json").read_text())
    heldout = pl.read_parquet(plan.out / "heldout.parquet")
    assert set(heldout["k"]) == {int(k) for k in card["predictors"]}

    # the held-out taus, recomputed here from the warehouse: scipy's tau of the stored corpus scores and of
    # the raw test accuracy at k (a run without one ranks last), each against the final test accuracy
    wh = Warehouse(plan.warehouse(plan.heldout_specs / "heldout-c.yaml"))
    for row in heldout.iter_rows(named=True):
        frame = wh.query("SELECT r.run_id, r.final_test_acc, s.predicted, m.test_acc FROM runs r "
                         "JOIN scores s ON s.run_id = r.run_id AND s.predictor_id = ? "
                         "LEFT JOIN epoch_metrics m ON m.run_id = r.run_id AND m.epoch = ? "
                         "WHERE r.study = 'heldout-c' AND r.final_test_acc IS NOT NULL",
                         [f"corpus-k{row['k']}", row["k"]])
        assert row["tau"] == pytest.approx(kendalltau(frame["predicted"], frame["final_test_acc"]).statistic)
        accuracy = frame["test_acc"].fill_null(0.0)
        assert row["accuracy_tau"] == pytest.approx(kendalltau(accuracy, frame["final_test_acc"]).statistic)
        gate = card["predictors"][str(row["k"])]["accuracy_gate"]
        assert gate["studies"]["heldout:heldout-c"]["tau"] == pytest.approx([row["tau"], row["accuracy_tau"]])
        assert set(gate["studies"]) == {"corpus-a", "corpus-b", "heldout:heldout-c"}

    before = {p: p.stat().st_mtime_ns for p in plan.out.rglob("*") if p.is_file()}
    second = run(plan)
    assert second == {"trained": ["corpus-a", "corpus-b", "heldout-c"], "exported": False, "graphs": False,
                      "fitted": False, "heldout_studies": 1}
    assert {p: p.stat().st_mtime_ns for p in plan.out.rglob("*") if p.is_file()} == before

    done = subprocess.run([sys.executable, "-m", "flows.corpus", "--no-train", "--corpus-specs", str(plan.corpus_specs),
                           "--heldout-specs", str(plan.heldout_specs), "--warehouses", str(plan.warehouses),
                           "--out", str(plan.out), "--predictors", "linear"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "corpus tables up to date" in done.stderr and "corpus predictor up to date" in done.stderr
    assert "held-out comparison up to date" in done.stderr and "compact graphs up to date" in done.stderr

    # a fresh clone: no warehouse at all; the committed tables and comparison stand, nothing is written
    done = subprocess.run([sys.executable, "-m", "flows.corpus", "--no-train", "--corpus-specs", str(plan.corpus_specs),
                           "--heldout-specs", str(plan.heldout_specs), "--warehouses", str(tmp_path / "none"),
                           "--out", str(plan.out), "--predictors", "linear"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held-out comparison up to date (1 studies)" in done.stderr
    assert {p: p.stat().st_mtime_ns for p in plan.out.rglob("*") if p.is_file()} == before
