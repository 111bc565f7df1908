"""The shipped corpus predictor on studies it never saw: each study is scored by it at every k it was
fitted at (stages.score, as `flows.score --predictor corpus` does), and its ranking compared with
the ranking by test accuracy at epoch k (the i-Epoch score), paired, with intervals from resampling
configurations (pipeline_lib/prediction/metrics.py). Prints the table of docs/results/corpus.md.

    .venv/bin/python scripts/corpus_heldout.py WAREHOUSE.duckdb[:DATA_DIR] [...] [--k 1 2 3 5]

Writes the scores into each warehouse (as flows.score does); reads nothing else but the corpus card.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.prediction.metrics import comparison_table, evaluation_table  # noqa: E402
from pipeline_lib.prediction.targets import run_targets  # noqa: E402
from pipeline_lib.vocabulary import Task  # noqa: E402
from stages.score import score_study  # noqa: E402
from warehouse.db import Warehouse  # noqa: E402
from warehouse.predict import epoch_metrics, study_runs  # noqa: E402

CORPUS, ACCURACY = "corpus predictor", "accuracy at k"


def predictions(wh: Warehouse, study: str, ks: list[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(prediction rows of both rankers at every k, targets) for the study's finished runs; a run
    with no accuracy at k (diverged before it) is ranked last by accuracy, as the scorer ranks it."""
    targets = run_targets(study_runs(wh, study)).select("run_id", "config_id", "final_acc")
    metrics = epoch_metrics(wh, study)
    frames = []
    for k in ks:
        scores, _ = score_study(wh, study, "corpus", k)
        at_k = metrics.filter(pl.col("epoch") == k).select("run_id", pl.col("test_acc").alias("acc"))
        both = (targets.join(scores.select("run_id", "predicted"), on="run_id").join(at_k, on="run_id", how="left")
                .with_columns(pl.col("acc").fill_null(0.0)))
        for name, column in ((CORPUS, "predicted"), (ACCURACY, "acc")):
            frames.append(both.select(
                "run_id", pl.lit(0, pl.Int64).alias("fold"), pl.col("final_acc").alias("y_true"),
                pl.col(column).alias("y_pred"), pl.lit(None, pl.Float64).alias("score"),
                pl.lit(Task.REGRESSION.value).alias("task"), pl.lit("-").alias("predictor"),
                pl.lit(name).alias("feature_set"), pl.lit(k, pl.Int64).alias("k"), pl.lit(study).alias("split")))
    return pl.concat(frames), targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouses", nargs="+", help="FILE.duckdb, or FILE.duckdb:DATA_DIR for a copied warehouse")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5])
    args = parser.parse_args()
    print("| study | k | tau, corpus predictor [95% CI] | tau, accuracy at k [95% CI] | difference [95% CI] | verdict |")
    print("|---|---|---|---|---|---|")
    for spec in args.warehouses:
        path, _, data_dir = spec.partition(":")
        wh = Warehouse(path, data_dir or None)
        study = wh.query("SELECT DISTINCT study FROM runs")["study"][0]
        made, targets = predictions(wh, study, args.k)
        tau = evaluation_table(made, targets).filter(pl.col("metric") == "kendall_tau")
        diff = comparison_table(made, targets).filter((pl.col("metric") == "kendall_tau")
                                                      & (pl.col("feature_set") == CORPUS))
        for k in args.k:
            cells = []
            for name in (CORPUS, ACCURACY):
                r = tau.filter((pl.col("k") == k) & (pl.col("feature_set") == name)).row(0, named=True)
                cells.append(f"{r['value']:.2f} [{r['low']:.2f}, {r['high']:.2f}]")
            d = diff.filter(pl.col("k") == k).row(0, named=True)
            print(f"| {study.removeprefix('corpus-')} | {k} | {cells[0]} | {cells[1]} | "
                  f"{d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] | {d['verdict']} |")


if __name__ == "__main__":
    main()
