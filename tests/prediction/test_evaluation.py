import itertools

import numpy as np
import polars as pl
import pytest
from scipy.stats import kendalltau

from pipeline_lib.features import base_set_features
from pipeline_lib.prediction.costs import compute_costs, early_stopping_epochs
from pipeline_lib.prediction.evaluation import (cross_validated_predictions, feature_matrix, grouped_folds,
                                                other_seed_predictions, transfer_predictions)
from pipeline_lib.prediction.targets import run_targets
from warehouse.predict import epoch_metrics, study_runs


@pytest.fixture(scope="module")
def targets(small_study):
    runs = study_runs(small_study.warehouse, small_study.study.name)
    return grouped_folds(run_targets(runs), small_study.study.predict.n_folds)


@pytest.fixture(scope="module")
def design(small_study, targets):
    wh, name = small_study.warehouse, small_study.study.name
    rows = pl.concat([base_set_features(fs, 3, study_runs(wh, name), epoch_metrics(wh, name))
                      for fs in ("learning_curve", "hparams")])
    return feature_matrix(rows, targets["run_id"].to_list())[0]


def test_targets_count_diverged_runs_as_chance(small_study, targets):
    runs = study_runs(small_study.warehouse, small_study.study.name)
    joined = targets.join(runs, on="run_id")
    diverged = joined.filter(pl.col("status") == "diverged")
    assert diverged.height and (diverged["final_acc"] == 0.1).all() and (diverged["good"] == 0).all()
    done = joined.filter(pl.col("status") == "completed")
    assert (done["final_acc"] == done["final_test_acc"]).all()
    threshold = np.quantile(joined["final_acc"].to_numpy(), 0.5)
    assert (joined["good"].to_numpy() == (joined["final_acc"].to_numpy() > threshold)).all()


def test_grouped_folds_never_split_a_configuration(small_study, targets):
    folds_per_config = targets.group_by("config_id").agg(pl.col("fold").n_unique())
    assert (folds_per_config["fold"] == 1).all()
    assert targets["fold"].n_unique() == small_study.study.predict.n_folds
    # every seed and width of a configuration is in one fold: all runs of the spec are there
    assert targets.group_by("config_id").len()["len"].min() == 4  # 2 widths x 2 seeds


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("predictor", ["linear", "hgb"])
def test_test_fold_outcomes_never_reach_the_model(targets, design, task, predictor):
    """Scrambling the targets of one fold leaves that fold's predictions unchanged: no fit, no
    feature selection and no inner choice of a penalty ever saw them."""
    before = cross_validated_predictions(task, predictor, design, targets)
    held_out = pl.col("fold") == 0
    rng = np.random.default_rng(3)
    scrambled = targets.with_columns(
        pl.when(held_out).then(pl.Series(rng.uniform(0, 1, targets.height))).otherwise(pl.col("final_acc")).alias("final_acc"),
        pl.when(held_out).then(1 - pl.col("good")).otherwise(pl.col("good")).alias("good"))
    after = cross_validated_predictions(task, predictor, design, scrambled)
    fold0 = lambda p: p.filter(pl.col("fold") == 0).sort("run_id").select("run_id", "y_pred", "score")  # noqa: E731
    assert fold0(before).height == targets.filter(held_out).height
    assert fold0(after).equals(fold0(before))
    # control: the other folds were trained on the scrambled rows and move (a classifier's P(good))
    moved = "y_pred" if task == "regression" else "score"
    assert not after.filter(pl.col("fold") != 0).sort("run_id")[moved].equals(
        before.filter(pl.col("fold") != 0).sort("run_id")[moved])


def test_transfer_predicts_only_the_test_widths(targets, design):
    train, test = (targets["width"] == 0.5).to_numpy(), (targets["width"] == 1.0).to_numpy()
    preds = transfer_predictions("regression", "linear", design, targets, train, test)
    assert set(preds["run_id"]) == set(targets.filter(pl.col("width") == 1.0)["run_id"])


def test_seed_agreement_is_the_other_seed(targets):
    preds = other_seed_predictions("regression", targets).join(targets, on="run_id")
    by_config = targets.pivot(on="seed", index=["config_id", "width"], values="final_acc")
    for row in preds.iter_rows(named=True):
        other = by_config.filter((pl.col("config_id") == row["config_id"]) & (pl.col("width") == row["width"]))
        assert row["y_pred"] == pytest.approx(other[str(1 - row["seed"])][0])
    # with two seeds, tau over runs equals tau of the pairs counted twice: compare with scipy on pairs
    pairs = by_config.select("0", "1").to_numpy()
    both = np.concatenate([pairs, pairs[:, ::-1]])
    assert kendalltau(preds["y_true"], preds["y_pred"]).statistic == pytest.approx(
        kendalltau(both[:, 0], both[:, 1]).statistic)


def test_early_stopping_and_costs_match_a_direct_walk(small_study, targets):
    em = epoch_metrics(small_study.warehouse, small_study.study.name)
    patience = 1
    stops = dict(early_stopping_epochs(em, patience).select("run_id", "stop_epoch").iter_rows())
    for run_id, rows in em.sort("epoch").group_by("run_id"):
        best, best_epoch, stop = -1.0, 0, int(rows["epoch"].max())
        for epoch, acc in rows.select("epoch", "test_acc").iter_rows():
            if acc >= best:
                best, best_epoch = acc, epoch
            elif epoch - best_epoch >= patience:
                stop = epoch
                break
        assert stops[run_id[0]] == stop, run_id
    picks = targets.select("run_id", pl.lit(3).alias("k"), pl.lit("x").alias("feature_set"),
                           pl.lit("p").alias("predictor"), pl.col("good").cast(pl.Float64).alias("y_pred"))
    graph_seconds = em.select("run_id", "epoch", pl.lit(0.25).alias("seconds"))
    costs = compute_costs(em, graph_seconds, targets, picks, 4, patience, {"x"})
    full = costs.filter(pl.col("strategy") == "train_all")
    assert full["seconds"][0] == pytest.approx(em["seconds"].sum())
    predicted = costs.filter(pl.col("strategy") == "predict_then_finish")
    good = set(targets.filter(pl.col("good") == 1)["run_id"])
    expected = (em.filter(pl.col("epoch") <= 3)["seconds"].sum() + 0.25 * em.filter(pl.col("epoch") <= 3).height
                + em.filter((pl.col("epoch") > 3) & pl.col("run_id").is_in(list(good)))["seconds"].sum())
    assert predicted["seconds"][0] == pytest.approx(expected)
    assert predicted["best_final_acc"][0] == targets["final_acc"].max()
    assert predicted["fraction"][0] == pytest.approx(expected / full["seconds"][0])


def test_every_pair_of_folds_is_disjoint(targets):
    for a, b in itertools.combinations(range(targets["fold"].n_unique()), 2):
        ca = set(targets.filter(pl.col("fold") == a)["config_id"])
        assert not ca & set(targets.filter(pl.col("fold") == b)["config_id"])


def test_a_study_whose_finished_runs_hold_one_configuration_is_skipped_not_failed(tmp_path):
    """What a triage by P(good) can leave: one configuration finished. Evaluate failed with a raw
    cross-validation error on every re-run, and register fitted predictors on it; both now say why they
    skip and what to do."""
    from stages import evaluate, register
    from stages.local import local_context
    from tests.conftest import train_in_process, write_spec
    from warehouse.db import Warehouse

    spec = write_spec(tmp_path, samples=1, sweep={"lr": [0.05], "batch_size": [64]}, widths=[0.5], width_transfer={})
    wh = Warehouse(tmp_path / "w.duckdb")
    train_in_process(spec, wh)
    reason = "1 configuration(s) finished; grouped cross-validation needs at least 2"
    with local_context(spec, wh.path) as ctx:
        assert evaluate.run(ctx) == {"skipped": reason}
        assert register.run(ctx) == {"skipped": reason}
    assert wh.query("SELECT count(*) AS n FROM predictors")["n"][0] == 0
