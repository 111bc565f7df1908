"""Replay of stopping policies on a hand-built set of five curves, every number worked out by hand.

    run  acc e1..e3        train loss e1..e3   seconds/epoch  final
    a    .50 .60 .90       1.0 0.8 0.3         1              .90   <- top
    b    .70 .75 .80       0.6 0.5 0.45        1              .80
    c    .65 .70 .86       0.9 0.6 0.4         2              .86   <- top
    d    .20 .30 .40       2.0 1.8 1.7         1              .40
    e    .30 diverged at epoch 2 (NaN)         1, 1           .10 (chance)
Train-all: 3 + 3 + 6 + 3 + 2 = 17 s. Top 40% (share 0.4 of 5 runs) = {a, c}.
"""
from __future__ import annotations

import math

import numpy as np
import optuna
import polars as pl
import pytest

from pipeline_lib.decisions import replay

NAN = math.nan
ORDER = ["a", "b", "c", "d", "e"]
ACC = {"a": [0.5, 0.6, 0.9], "b": [0.7, 0.75, 0.8], "c": [0.65, 0.7, 0.86], "d": [0.2, 0.3, 0.4], "e": [0.3, NAN]}
LOSS = {"a": [1.0, 0.8, 0.3], "b": [0.6, 0.5, 0.45], "c": [0.9, 0.6, 0.4], "d": [2.0, 1.8, 1.7], "e": [1.5, NAN]}
SECONDS = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 1.0, "e": 1.0}
FINAL = {"a": 0.9, "b": 0.8, "c": 0.86, "d": 0.4, "e": 0.1}
SHARE = 0.4


@pytest.fixture(scope="module")
def curves() -> replay.Curves:
    rows = []
    for run in reversed(ORDER):  # stored order must not matter
        rows.append({"run_id": run, "epoch": 0, "test_acc": 0.1, "train_loss": 2.3, "seconds": 0.0})
        for epoch, (acc, loss) in enumerate(zip(ACC[run], LOSS[run]), start=1):
            rows.append({"run_id": run, "epoch": epoch, "test_acc": acc, "train_loss": loss, "seconds": SECONDS[run]})
    final = pl.DataFrame({"run_id": ["d", "a", "e", "c", "b"], "final_acc": [FINAL[r] for r in "daecb"]})
    return replay.Curves.from_frames(pl.DataFrame(rows), final, ORDER)


def test_curves_follow_launch_order_and_stop_at_divergence(curves):
    assert curves.run_ids == tuple(ORDER)
    assert curves.epochs == 3
    assert curves.epochs_done.tolist() == [3, 3, 3, 3, 2]
    assert curves.total_seconds == 17.0
    assert curves.seconds[4].tolist() == [1.0, 1.0, 0.0]
    assert np.isnan(curves.acc[4, 1:]).all()
    assert curves.final.tolist() == [0.9, 0.8, 0.86, 0.4, 0.1]


def test_top_runs_breaks_ties_by_launch_order():
    assert replay.top_runs(np.array([0.5, 0.9, 0.9, 0.1]), 0.25).tolist() == [False, True, False, False]
    assert replay.top_runs(np.array([0.5, 0.9, 0.9, 0.1]), 0.5).tolist() == [False, True, True, False]


def test_train_all_spends_everything_and_keeps_the_best(curves):
    out = replay.outcome(curves, replay.train_all(curves), SHARE)
    assert out["seconds"] == 17.0 and out["fraction"] == 1.0
    assert out["recall_top"] == 1.0 and out["best_kept"] == 0.9 and out["regret"] == 0.0


def test_early_accuracy_keep_two(curves):
    # scores at k=1: a .5, b .7, c .65, d .2, e .3 -> keep b, c; a, d, e stop after epoch 1
    decision = replay.keep_top(curves, replay.early_accuracy(curves, 1), k=1, n_keep=2, extra_seconds=1.0)
    assert decision.epochs.tolist() == [1, 3, 3, 1, 1]
    out = replay.outcome(curves, decision, SHARE)
    assert out["train_seconds"] == 1 + 3 + 6 + 1 + 1
    assert out["seconds"] == 13.0 and out["fraction"] == pytest.approx(13 / 17)
    assert out["recall_top"] == 0.5  # c kept, a lost
    assert out["best_kept"] == 0.86 and out["regret"] == pytest.approx(0.04)


def test_tse_ranks_by_summed_training_loss_and_puts_diverged_last(curves):
    # TSE at k=2: a 1.8, b 1.1, c 1.5, d 3.8, e NaN -> ranks b, c, a, d, e
    scores = replay.training_loss_sum(curves, 2)
    assert scores[:4] == pytest.approx([-1.8, -1.1, -1.5, -3.8])
    decision = replay.keep_top(curves, scores, k=2, n_keep=4)
    assert decision.kept.tolist() == [True, True, True, True, False]
    assert decision.epochs.tolist() == [3, 3, 3, 3, 2]
    out = replay.outcome(curves, replay.keep_top(curves, scores, k=2, n_keep=2), SHARE)
    assert out["train_seconds"] == 2 + 3 + 6 + 2 + 2


def test_sweep_finds_the_cheapest_point_reaching_the_recall(curves):
    points = replay.keep_sweep(curves, replay.early_accuracy(curves, 1), k=1, share=SHARE)
    assert [pt["n_keep"] for pt in points] == [1, 2, 3, 4, 5]
    assert [pt["recall_top"] for pt in points] == [0.0, 0.5, 1.0, 1.0, 1.0]
    # keep b, c, a: 3 + 6 + 3 + 1 + 1 = 14 s
    cheapest = replay.cheapest_at_recall(points, 0.9)
    assert cheapest["n_keep"] == 3 and cheapest["fraction"] == pytest.approx(14 / 17)
    # within 13/17 of train-all: keep 1 (8 s, recall 0) or keep 2 (12 s, recall .5, best kept c)
    within = replay.best_within(points, 13 / 17)
    assert within["n_keep"] == 2 and within["recall_top"] == 0.5 and within["regret"] == pytest.approx(0.04)
    assert replay.best_within(points, 0.1) is None
    front = replay.pareto_front(points)
    assert [pt["n_keep"] for pt in front] == [1, 2, 3]


def test_median_pruner_through_optuna(curves):
    # Two startup trials (a, b) complete. c: step 1 best .65 vs median(.5, .7) = .6, not below;
    # step 2 .7 vs median(.6, .75) = .675; step 3 .86 vs median(.9, .8) = .85: completes.
    # d: .2 < median(.5, .7, .65) = .65 -> pruned at epoch 1; e: .3 < .65 -> pruned at epoch 1.
    decision = replay.optuna_decision(curves, lambda: optuna.pruners.MedianPruner(n_startup_trials=2))
    assert decision.epochs.tolist() == [3, 3, 3, 1, 1]
    assert decision.kept.tolist() == [True, True, True, False, False]
    out = replay.outcome(curves, decision, SHARE)
    assert out["seconds"] == 3 + 3 + 6 + 1 + 1 and out["recall_top"] == 1.0


def test_no_pruning_replays_train_all_and_a_diverged_run_stops_at_its_end(curves):
    decision = replay.optuna_decision(curves, optuna.pruners.NopPruner)
    assert decision.epochs.tolist() == [3, 3, 3, 3, 2]
    assert replay.outcome(curves, decision, SHARE)["seconds"] == 17.0


def test_every_pruner_setting_stops_runs_within_their_curves(curves):
    grid = replay.pruner_grid(curves.epochs)
    assert set(grid) == {"MedianPruner", "PercentilePruner", "SuccessiveHalvingPruner", "HyperbandPruner",
                         "WilcoxonPruner"}
    for settings in grid.values():
        for _, make in settings:
            d = replay.optuna_decision(curves, make)
            assert (d.epochs >= 1).all() and (d.epochs <= curves.epochs_done).all()
            assert (d.epochs[d.kept] == curves.epochs_done[d.kept]).all()


def test_scores_from_predictions_leave_missing_runs_unscored(curves):
    preds = pl.DataFrame({"run_id": ["c", "a"], "y_pred": [0.7, 0.2]})
    scores = replay.scores_from_predictions(curves, preds)
    assert scores[[0, 2]].tolist() == [0.2, 0.7] and np.isnan(scores[[1, 3, 4]]).all()
