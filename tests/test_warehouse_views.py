"""The SQL surface: views.sql and the example queries, on a real DuckDB file filled with known
values and checked against numpy/scipy; the DuckDB shell reads the same file."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipeline_lib.prediction.evaluation import other_seed_predictions
from pipeline_lib.prediction.metrics import metric_values
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.report.tables import summary_table, verdict
from warehouse.db import Warehouse, upsert
from warehouse.predict import report_tables

QUERIES = sorted((Path(__file__).resolve().parents[1] / "warehouse" / "queries").glob("*.sql"))
DUCKDB_CLI = Path(sys.executable).with_name("duckdb")
EPOCHS = 4


def _fill(wh: Warehouse, rng: np.random.Generator) -> dict:
    """Two studies of runs (configs x seeds), their epoch metrics, snapshots, some graphs and summaries."""
    runs, metrics, snaps, graphs, summaries = [], [], [], [], []
    for study in ("alpha", "beta"):
        for config in range(6):
            for seed in (0, 1):
                run_id = f"{study}-c{config}-s{seed}"
                # two decimals: ties between runs, which rank correlations must average
                acc = np.round(rng.uniform(0.1, 0.9, EPOCHS + 1), 2)
                acc = np.sort(acc) if config else acc
                diverged = study == "beta" and config == 5 and seed == 1
                runs.append({"study": study, "run_id": run_id, "config_id": f"{study}-c{config}", "architecture": "lenet",
                             "width": 1.0, "depth": 1, "dataset": "digits", "lr": 0.01 * (config + 1),
                             "dropout": 0.0, "weight_decay": 0.0, "optimizer": "sgd", "batch_size": 64, "seed": seed,
                             "epochs": EPOCHS, "status": "diverged" if diverged else "completed",
                             "epochs_done": EPOCHS, "diverged_epoch": 2 if diverged else None,
                             "final_test_acc": None if diverged else float(acc[-1]),
                             "train_seconds": float(EPOCHS), "updated_at": datetime(2026, 1, 1)})
                for epoch in range(EPOCHS + 1):
                    metrics.append({"run_id": run_id, "epoch": epoch, "train_loss": 1 - acc[epoch], "train_acc": acc[epoch],
                                    "test_loss": 1 - acc[epoch], "test_acc": acc[epoch],
                                    "seconds": 0.0 if epoch == 0 else float(rng.uniform(0.5, 1.5))})
                    snaps.append({"run_id": run_id, "epoch": epoch, "path": f"/d/{run_id}/{epoch}.parquet",
                                  "bytes": 1000 + epoch, "n_params": 10})
                    if study == "alpha" and epoch <= 2:  # graphs: epoch 2 of config 0 failed, epochs 3.. pending
                        failed = config == 0 and epoch == 2
                        graphs.append({"run_id": run_id, "epoch": epoch, "nodes": None if failed else 20,
                                       "edges": None if failed else 100, "seconds": 0.5,
                                       "error": "boom" if failed else None})
                        for stat in ("mean", "std"):
                            summaries.append({"run_id": run_id, "epoch": epoch, "scope": "graph", "property": "strength",
                                              "statistic": stat, "value": float(rng.normal())})
    frames = {"runs": pl.DataFrame(runs, infer_schema_length=None), "epoch_metrics": pl.DataFrame(metrics),
              "snapshots": pl.DataFrame(snaps), "graphs": pl.DataFrame(graphs, infer_schema_length=None),
              "graph_summaries": pl.DataFrame(summaries)}
    with wh.writer() as con:
        for table, frame in frames.items():
            upsert(con, table, frame)
    return frames


@pytest.fixture
def filled(tmp_path):
    wh = Warehouse(tmp_path / "views.duckdb")
    return wh, _fill(wh, np.random.default_rng(7))


def test_learning_curves_and_run_outcomes(filled):
    wh, frames = filled
    curves = wh.query("SELECT * FROM learning_curves ORDER BY study, run_id, epoch")
    assert curves.height == frames["epoch_metrics"].height
    metrics = frames["epoch_metrics"].sort("run_id", "epoch")
    for run_id, group in metrics.group_by("run_id"):
        got = curves.filter(pl.col("run_id") == run_id[0])
        np.testing.assert_allclose(got["train_seconds_so_far"], np.cumsum(group.sort("epoch")["seconds"]))

    outcomes = wh.query("SELECT * FROM run_outcomes ORDER BY run_id")
    assert outcomes.height == frames["runs"].height
    for row in outcomes.iter_rows(named=True):
        acc = metrics.filter(pl.col("run_id") == row["run_id"])["test_acc"].to_numpy()
        assert row["best_test_acc"] == pytest.approx(acc.max()) and acc[row["best_epoch"]] == acc.max()
        assert row["test_acc_at_1"] == pytest.approx(acc[1]) and row["test_acc_at_3"] == pytest.approx(acc[3])
        assert row["test_acc_at_5"] is None  # EPOCHS = 4

    configs = wh.query("SELECT * FROM config_outcomes WHERE study = 'alpha' ORDER BY config_id")
    runs = frames["runs"].filter(pl.col("study") == "alpha")
    for row in configs.iter_rows(named=True):
        finals = runs.filter(pl.col("config_id") == row["config_id"])["final_test_acc"].to_numpy()
        assert row["mean_final_test_acc"] == pytest.approx(finals.mean())
        assert row["std_final_test_acc"] == pytest.approx(finals.std(ddof=1))
    diverged = wh.query("SELECT config_id, diverged, completed FROM config_outcomes WHERE diverged > 0")
    assert diverged.rows() == [("beta-c5", 1, 1)]


def test_snapshot_index_and_graph_progress(filled):
    wh, frames = filled
    index = wh.query("SELECT graph_state, count(*) AS n FROM snapshot_index GROUP BY ALL ORDER BY graph_state")
    # alpha: 12 runs x epochs 0..2 have graph rows, 2 of them failed (config 0, epoch 2, two seeds)
    assert dict(index.rows()) == {"done": 12 * 3 - 2, "failed": 2, "pending": 24 * (EPOCHS + 1) - 12 * 3}
    progress = wh.query("SELECT * FROM graph_progress ORDER BY study")
    assert progress["snapshots"].to_list() == [12 * (EPOCHS + 1)] * 2
    assert progress["graphs_done"].to_list() == [34, 0] and progress["graphs_failed"].to_list() == [2, 0]
    expected_bytes = frames["snapshots"].filter(pl.col("run_id").str.starts_with("alpha"))["bytes"].sum()
    assert progress["snapshot_bytes"][0] == expected_bytes
    trajectories = wh.query("SELECT count(*) AS n FROM graph_trajectories")["n"][0]
    assert trajectories == frames["graph_summaries"].height


def test_spearman_queries_match_scipy(filled):
    wh, frames = filled
    got = wh.query((QUERIES[0].parent / "early_stopping_proxy.sql").read_text())
    runs = frames["runs"].filter(pl.col("status") == "completed")
    metrics = frames["epoch_metrics"].join(runs.select("run_id", "study", "final_test_acc"), on="run_id")
    assert sorted(set(got["k"])) == list(range(1, EPOCHS))
    for row in got.iter_rows(named=True):
        at_k = metrics.filter((pl.col("study") == row["study"]) & (pl.col("epoch") == row["k"]))
        rho = stats.spearmanr(at_k["test_acc"], at_k["final_test_acc"]).statistic
        assert row["runs"] == at_k.height and row["spearman_rho"] == pytest.approx(rho, abs=1e-4)

    # one definition of seed agreement: the SQL query equals the evaluation's pooled tau of the other seeds
    seeds = wh.query((QUERIES[0].parent / "seed_agreement.sql").read_text())
    assert seeds["study"].to_list() == ["alpha", "beta"]
    all_runs = frames["runs"]
    for row in seeds.iter_rows(named=True):
        targets = run_targets(all_runs.filter(pl.col("study") == row["study"]))
        predicted = other_seed_predictions("regression", targets)
        assert row["runs"] == predicted.height
        assert row["kendall_tau"] == pytest.approx(metric_values("regression", predicted)["kendall_tau"], abs=1e-4)
        assert row["kendall_tau"] == pytest.approx(stats.kendalltau(predicted["y_true"], predicted["y_pred"]).statistic,
                                                   abs=1e-4)


def _fill_predictions(wh: Warehouse) -> None:
    """A few known rows in the prediction stage's tables (schema/004_predict.sql)."""
    with wh.writer() as con:
        con.execute("""
            INSERT INTO features (study, run_id, k, feature_set, feature, value)
                VALUES ('alpha', 'alpha-c1-s0', 1, 'graph', 'strength_std', 0.5);
            INSERT INTO evaluations (study, task, predictor, feature_set, k, split, metric, value, low, high, n, folds,
                                     configs) VALUES
                ('alpha', 'regression', 'linear', 'graph', 1, 'cv', 'kendall_tau', 0.40, 0.2, 0.6, 24, 2, 6),
                ('alpha', 'regression', 'hgb', 'graph', 1, 'cv', 'kendall_tau', 0.55, 0.3, 0.7, 24, 2, 6),
                ('alpha', 'regression', 'linear', 'early_acc', 1, 'cv', 'kendall_tau', 0.50, 0.3, 0.7, 24, 2, 6),
                ('alpha', 'regression', 'other_seeds', 'seed_agreement', 1, 'cv', 'kendall_tau', 0.80, 0.7, 0.9, 24, 2, 6),
                ('alpha', 'regression', 'linear', 'graph', 1, 'cv', 'mae', 0.05, 0.04, 0.06, 24, 2, 6),
                ('alpha', 'regression', 'hgb', 'graph', 1, 'cv', 'mae', 0.03, 0.02, 0.04, 24, 2, 6),
                ('alpha', 'regression', 'hgb', 'graph', 1, 'width_transfer', 'kendall_tau', 0.3, 0.1, 0.5, 12, 1, 6),
                ('alpha', 'regression', 'hgb', 'graph', 1, 'width_transfer_reverse', 'kendall_tau', 0.2, 0.0, 0.4, 12, 1, 6),
                ('alpha', 'regression', 'hgb', 'graph', 1, 'leave_out:lenet', 'kendall_tau', 0.1, -0.1, 0.3, 12, 1, 6);
            INSERT INTO predictions VALUES
                ('alpha', 'regression', 'hgb', 'graph', 1, 'cv', 'alpha-c1-s0', 0, 0.8, 0.75, NULL);
            INSERT INTO costs (study, strategy, k, feature_set, predictor, seconds, fraction, runs_to_end,
                               best_final_acc, detail)
                        VALUES ('alpha', 'train_all', NULL, NULL, NULL, 48.0, 1.0, 24, 0.9, NULL),
                               ('alpha', 'predict_then_finish', 1, 'graph', 'hgb', 20.0, 0.4167, 6, 0.9, NULL);
        """)


def test_prediction_views(filled):
    wh, _ = filled
    _fill_predictions(wh)
    best = wh.query("SELECT metric, predictor, feature_set, value, low, seed_agreement, seed_agreement_low FROM best_per_k "
                    "WHERE split = 'cv' ORDER BY metric")
    # the noise ceiling is shown beside, never ranked; mae: lowest wins
    assert best.rows() == [("kendall_tau", "hgb", "graph", 0.55, 0.3, 0.80, 0.7), ("mae", "hgb", "graph", 0.03, 0.02, None, None)]
    board = wh.query("SELECT predictor, feature_set, rank FROM leaderboard WHERE metric = 'kendall_tau' AND split = 'cv' "
                     "ORDER BY rank")
    assert board.rows() == [("hgb", "graph", 1), ("linear", "early_acc", 2), ("linear", "graph", 3)]
    assert sorted(wh.query("SELECT split FROM width_transfer_results")["split"]) == [
        "leave_out:lenet", "width_transfer", "width_transfer_reverse"]
    cost = wh.query("SELECT strategy, fraction, runs, train_seconds_total FROM cost_per_study ORDER BY fraction")
    assert cost.rows() == [("predict_then_finish", 0.4167, 12, 12 * EPOCHS), ("train_all", 1.0, 12, 12 * EPOCHS)]
    assert wh.query("SELECT error FROM predicted_vs_true")["error"][0] == pytest.approx(-0.05)
    features = wh.query("SELECT width, final_test_acc FROM feature_table")
    assert features.height == 1 and features["final_test_acc"][0] is not None

    lead = wh.query((QUERIES[0].parent / "leaderboard.sql").read_text())
    assert lead.select("k", "predictor", "kendall_tau", "low", "high", "early_acc_tau", "seed_agreement_tau").rows() == \
        [(1, "hgb", 0.55, 0.3, 0.7, 0.5, 0.8)]


def test_the_report_reads_the_leaderboard_view(filled):
    wh, _ = filled
    _fill_predictions(wh)
    tables = report_tables(wh, "alpha")
    assert tables["predictor"] == "hgb"  # mean pooled tau 0.55, linear's (0.40 + 0.50) / 2
    board = tables["leaderboard"]
    assert verdict(board, tables["comparisons"], "linear", []) == [
        "k=1, Kendall tau: best signal `early_acc` 0.500 [0.300, 0.700]; seed agreement 0.800 [0.700, 0.900]. "
        "Best graph set vs best non-graph set: `graph` and `early_acc` were not compared."]
    summary = summary_table(board, "hgb")
    assert summary.select("feature_set", "k", "kendall_tau", "kendall_tau_low", "seed_kendall_tau").rows() == [
        ("graph", 1, 0.55, 0.3, 0.80)]
    assert summary_table(board, "hgb", "width_transfer")["kendall_tau"].to_list() == [0.3]


def test_every_example_query_runs_in_python_and_the_duckdb_shell(filled):
    wh, _ = filled
    _fill_predictions(wh)
    for query in QUERIES:
        frame = wh.query(query.read_text())
        assert frame.height > 0, f"{query.name} returned no rows"
        shell = subprocess.run([str(DUCKDB_CLI), "-readonly", "-csv", str(wh.path)], input=query.read_text(),
                               capture_output=True, text=True, timeout=60)
        assert shell.returncode == 0, f"{query.name}: {shell.stderr}"
        assert len(shell.stdout.strip().splitlines()) == frame.height + 1, query.name  # header + rows
