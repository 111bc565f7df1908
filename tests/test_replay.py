"""Replay v2: the asynchronous simulation, its policies, the synchronous triage (`simulate_rungs`, on
curves of its own below) and what the report reads, every number worked out by hand on five
hand-built curves (or an independent reference).

    run  acc e1..e3        seconds/epoch  final
    a    .50 .60 .90       1              .90   <- top
    b    .70 .75 .80       1              .80
    c    .65 .70 .86       2              .86   <- top
    d    .20 .30 .40       1              .40
    e    .30 diverged at epoch 2 (NaN)    1, 1  .10 (chance)
Train-all: 3 + 3 + 6 + 3 + 2 = 17 s. Top 40% (share 0.4 of 5 runs) = {a, c}.
"""
from __future__ import annotations

import math

import numpy as np
import optuna
import polars as pl
import pytest

from pipeline_lib.decisions import corpus, policies, replay, rung_scores
from pipeline_lib.decisions.sources import SCORES_SCHEMA, AccuracySource
from pipeline_lib.report.decisions import replay_section
from pipeline_lib.spec import TriageSpec

NAN = math.nan
ORDER = ["a", "b", "c", "d", "e"]
ACC = {"a": [0.5, 0.6, 0.9], "b": [0.7, 0.75, 0.8], "c": [0.65, 0.7, 0.86], "d": [0.2, 0.3, 0.4], "e": [0.3, NAN]}
SECONDS = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 1.0, "e": 1.0}
FINAL = {"a": 0.9, "b": 0.8, "c": 0.86, "d": 0.4, "e": 0.1}
SHARE = 0.4
IN_ORDER = np.arange(5)


@pytest.fixture(scope="module")
def curves() -> replay.Curves:
    rows = []
    for run in reversed(ORDER):  # stored order must not matter
        rows.append({"run_id": run, "epoch": 0, "test_acc": 0.1, "seconds": 0.0})
        for epoch, acc in enumerate(ACC[run], start=1):
            rows.append({"run_id": run, "epoch": epoch, "test_acc": acc, "seconds": SECONDS[run]})
    final = pl.DataFrame({"run_id": ["d", "a", "e", "c", "b"], "final_acc": [FINAL[r] for r in "daecb"]})
    return replay.Curves.from_frames(pl.DataFrame(rows), final, ORDER)


def test_curves_follow_launch_order_and_stop_at_divergence(curves):
    assert curves.run_ids == tuple(ORDER)
    assert curves.epochs_done.tolist() == [3, 3, 3, 3, 2]
    assert curves.total_seconds == 17.0
    assert curves.seconds[4].tolist() == [1.0, 1.0, 0.0]
    assert curves.final.tolist() == [0.9, 0.8, 0.86, 0.4, 0.1]


@pytest.mark.parametrize("workers, wall", [(1, 17.0), (2, 9.0), (5, 6.0)])
def test_train_all_wall_time_with_w_workers(curves, workers, wall):
    # W=2: a, b on [0, 3]; then c on [3, 9] and d on [3, 6]; e on [6, 8]: 9. W=5: the longest run, c: 6.
    out = replay.simulate(curves, IN_ORDER, policies.TrainAll(), workers)
    assert out.wall_seconds - out.decision_seconds == pytest.approx(wall)
    row = replay.judge(curves, out, SHARE)
    assert row["epochs"] == 14 and row["train_seconds"] == 17.0 and row["regret"] == 0.0 and row["best_kept"]


def test_i_epoch_asynchronous_rung_by_hand(curves):
    # W=2, rung 1, keep fraction 0.5 of the runs seen at the rung so far (at least 1):
    # t=1 a (.5) first: on; b (.7) 1 of 2 seen, best: on. t=3 a, b end; c and d start.
    # t=4 d (.2): 1 of 3 seen may go on, 2 better: stop; e starts. t=5 c (.65): 2 of 4, only b better: on;
    # e (.3): 2 of 5, a, b, c better: stop. c ends at 3 + 6 = 9.
    out = replay.simulate(curves, IN_ORDER, policies.IEpoch(1, fraction=0.5), 2)
    assert out.epochs.tolist() == [3, 3, 3, 1, 1]
    assert out.kept.tolist() == [True, True, True, False, False]
    assert out.train_seconds == 3 + 3 + 6 + 1 + 1
    assert out.wall_seconds - out.decision_seconds == pytest.approx(9.0)
    row = replay.judge(curves, out, SHARE)
    assert row["recall_top"] == 1.0 and row["top_missed"] == 0 and row["epochs_fraction"] == 11 / 14


def test_graph_seconds_are_charged_on_the_timeline(curves):
    # every run's snapshots 0 and 1 need a graph (0.5 s each), computed after epoch 1: +1 s per run
    graphs = np.full((5, 4), 0.5)
    rule = policies.IEpoch(1, fraction=1.0, graph_epochs=1)
    out = replay.simulate(curves, IN_ORDER, rule, 1, graphs)
    assert out.graph_seconds == 5.0
    assert out.wall_seconds - out.decision_seconds == pytest.approx(17.0 + 5.0)


def test_median_pruner_through_optuna_one_worker(curves):
    # Two startup trials (a, b) complete. c: step 1 best .65 vs median(.5, .7) = .6, not below;
    # step 2 .7 vs median(.6, .75) = .675; step 3 .86 vs median(.9, .8) = .85: completes.
    # d: .2 < median(.5, .7, .65) = .65 -> pruned at epoch 1; e: .3 < .65 -> pruned at epoch 1.
    policy = policies.OptunaPolicy(lambda: optuna.pruners.MedianPruner(n_startup_trials=2), "t")
    out = replay.simulate(curves, IN_ORDER, policy, 1)
    assert out.epochs.tolist() == [3, 3, 3, 1, 1]
    states = [t.state for t in policy.study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == 2 and states.count(optuna.trial.TrialState.COMPLETE) == 3


def test_every_pruner_setting_stops_runs_within_their_curves(curves):
    grid = replay.pruner_grid(curves.epochs)
    assert set(grid) == {"MedianPruner", "PercentilePruner", "SuccessiveHalvingPruner", "HyperbandPruner"}
    for name, settings in grid.items():
        for _, make in settings:
            out = replay.simulate(curves, IN_ORDER, policies.OptunaPolicy(make, name), 2)
            assert (out.epochs >= 1).all() and (out.epochs <= curves.epochs_done).all()
            assert (out.epochs[out.kept] == curves.epochs_done[out.kept]).all()


def test_promotes_keeps_what_the_shipped_pruner_keeps():
    """The replay's asynchronous rung rule decides each arrival exactly as `TriagePruner` decides a trial
    at its rung (real Optuna study, min_trials 1): ceil(f x n) of the n seen so far, ties to the earlier."""
    import optuna

    from pipeline_lib.pruning.optuna_pruner import TriagePruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(3)
    for fraction in (1 / 3, 0.25, 0.5, 1 / 8):
        scores = np.round(rng.random(17), 1)  # rounded: ties happen
        study = optuna.create_study(direction="maximize", pruner=TriagePruner(keep=fraction, rungs=[1], min_trials=1))
        for i, score in enumerate(scores):
            trial = study.ask()
            trial.report(float(score), 1)
            assert policies.promotes(score, scores[:i + 1], fraction) == (not trial.should_prune()), (fraction, i)
            study.tell(trial, float(score))
    assert policies.promotes(0.5, np.array([0.5]), 1 / 3)  # the first at a rung goes on
    assert not policies.promotes(0.5, np.array([0.5, 0.5, 0.2]), 1 / 3)  # the earlier 0.5 takes the one place
    assert not policies.promotes(NAN, np.array([NAN]), 0.99)


# online sees no label from the future ----------------------------------------------------------------

def _anti_sweep(final: np.ndarray) -> replay.Curves:
    """12 runs, 3 epochs of 1 s; accuracy at epoch 1 ranks them in reverse of their final accuracy."""
    n = len(final)
    acc = np.column_stack([1 - final, 1 - final, final])
    return replay.Curves(tuple(f"r{i}" for i in range(n)), acc, np.ones((n, 3)), np.full(n, 3), final)


def _online(final_as_feature: np.ndarray, **rule) -> policies.Online:
    n = len(final_as_feature)
    return policies.Online(1, features=final_as_feature.reshape(-1, 1), config_ids=np.arange(n),
                           fit=policies.refit_linear, bins=np.array(["lenet"] * n), **rule)


def test_online_cannot_use_labels_before_those_runs_end():
    # The feature IS the final accuracy: in-study labels would score perfectly (the oracle does). The best
    # run r3 reaches its rung at t=2 (W=2), when no run has ended: online can only rank by accuracy at
    # epoch 1, which puts r3 last, and stops it, as i-Epoch does; the oracle keeps it.
    final = np.array([0.6, 0.62, 0.64, 0.95, 0.5, 0.52, 0.54, 0.56, 0.58, 0.7, 0.72, 0.74])
    curves = _anti_sweep(final)
    order = np.arange(12)
    online = replay.simulate(curves, order, _online(final, fraction=0.5), 2)
    i_epoch = replay.simulate(curves, order, policies.IEpoch(1, fraction=0.5), 2)
    oracle = replay.simulate(curves, order, policies.Fixed(1, fraction=0.5, predictions=final), 2)
    assert oracle.kept[3] and not online.kept[3] and online.epochs[3] == 1
    # the runs decided before 5 configurations ended (r0..r5 reach their rung by t=4, ends start at t=3)
    assert online.epochs[:6].tolist() == i_epoch.epochs[:6].tolist()


def test_among_seen_ranks_only_the_runs_that_reached_the_rung(curves):
    # One worker, sweep order a..e: run r is decided at epoch 1 when runs a..r have reached it. Feature
    # of run i: 10 i. Below min_runs = 2 seen (run a) accuracy decides; from b on, the model gets the
    # features of the seen runs only, as mid-rank percentiles among them ((rank - 1/2) / n).
    seen = []

    class Recorder:
        def predict(self, X):
            seen.append(X[:, 0].tolist())
            return X[:, 0]

    policy = policies.AmongSeen(1, fraction=0.5, model=Recorder(), features=10.0 * np.arange(5)[:, None],
                                prepare=corpus.normalize, min_runs=2)
    out = replay.simulate(curves, IN_ORDER, policy, 1)
    assert seen == [[(i + 0.5) / n for i in range(n)] for n in (2, 3, 4, 5)]
    assert out.decision_seconds > 0  # the predict calls are timed and charged
    # every run after a is the best of the runs seen so far (its feature is the largest): all continue
    assert out.epochs.tolist() == [3, 3, 3, 3, 2]


@pytest.mark.parametrize("rule", [{"fraction": 0.3}, {"alpha": 0.2}])
def test_online_decisions_do_not_change_with_labels_that_arrive_later(rule):
    # The last run ends last (it starts last and takes 3 s per epoch): changing its final accuracy (and
    # its feature with it) must not change any decision made before it ended, nor its own at its rung.
    rng = np.random.default_rng(3)
    final = rng.uniform(0.4, 0.9, 30)
    curves = _anti_sweep(final)
    curves.seconds[-1] = 3.0
    other = final.copy()
    other[-1] = 0.99
    moved = replay.Curves(curves.run_ids, curves.acc, curves.seconds, curves.epochs_done, other)
    labelled = frozenset(range(0, 30, 4))  # trained to the end whatever their score: labels arrive early
    first, second = _online(final, always=labelled, **rule), _online(final, always=labelled, **rule)
    first_out = replay.simulate(curves, np.arange(30), first, 3)
    second_out = replay.simulate(moved, np.arange(30), second, 3)
    assert first.fitted_on >= 5 and (first_out.epochs == 1).sum() >= 5  # it refit and stopped runs
    assert first_out.epochs.tolist() == second_out.epochs.tolist()


def test_labelled_runs_are_seeded_and_sized():
    assert policies.labelled_runs(72, 0.1, 4) == policies.labelled_runs(72, 0.1, 4)
    assert len(policies.labelled_runs(72, 0.1, 4)) == 7 and policies.labelled_runs(72, 0.1, 4) != \
        policies.labelled_runs(72, 0.1, 5)


# what the report reads -------------------------------------------------------------------------------

def replay_rows() -> pl.DataFrame:
    """Two orders of: i-Epoch at two settings, an online policy at two, the oracle at one."""
    base = {"family": "", "source": None, "alpha": None, "workers": 2, "train_seconds": 1.0, "graph_seconds": 0.0,
            "decision_seconds": 0.0, "seconds": 1.0, "fraction": 0.5, "wall_seconds": 1.0, "runs_kept": 3,
            "recall_top": 1.0, "top_missed": 0}
    table = [  # policy, setting, deployable, rung, feature_set, keep_fraction, (epochs_fraction, regret, best_kept) x 2
        ("i_epoch", "fraction=0.2", True, 1, None, 0.2, (0.40, 0.01, False), (0.40, 0.03, False)),
        ("i_epoch", "fraction=0.5", True, 1, None, 0.5, (0.60, 0.00, True), (0.80, 0.00, True)),
        ("online", "fraction=0.2", True, 1, "all", 0.2, (0.40, 0.00, True), (0.50, 0.00, True)),
        ("online", "fraction=0.5", True, 1, "all", 0.5, (0.70, 0.00, True), (0.70, 0.00, True)),
        ("oracle", "fraction=0.2", False, 1, "all", 0.2, (0.10, 0.00, True), (0.10, 0.00, True)),
    ]
    rows = []
    for policy, setting, deployable, rung, feature_set, keep, *per_order in table:
        for index, (epochs, regret, kept) in enumerate(per_order):
            rows.append({**base, "policy": policy, "setting": setting, "deployable": deployable, "rung": rung,
                         "feature_set": feature_set, "keep_fraction": keep, "order_index": index, "epochs": 1,
                         "epochs_fraction": epochs, "regret": regret, "best_kept": kept})
    return pl.DataFrame(rows, schema_overrides={"source": pl.Utf8, "alpha": pl.Float64, "feature_set": pl.Utf8})


def test_matching_and_the_headline_by_hand(tmp_path):
    # best i-Epoch: fraction=0.5 (mean regret 0, mean epochs 0.7). online reaches regret 0 at fraction=0.2
    # with mean epochs 0.45: 0.45 / 0.7 = 64% <= 75%, best kept in 2 of 2 orders: meets the goal.
    summary = replay.summarise(replay_rows())
    assert replay.best_i_epoch(summary)["setting"] == "fraction=0.5"
    match = replay.matching(summary)
    assert match.height == 1  # the oracle is not deployable, i-Epoch is the reference
    row = match.row(0, named=True)
    assert row["setting"] == "fraction=0.2" and row["epochs_vs_i_epoch"] == pytest.approx(0.45 / 0.7)
    assert row["meets_goal"]
    # against each point of the i-Epoch front, (0.40, 0.02) and (0.70, 0): 0.45 / 0.40 and 0.45 / 0.70
    front = replay.front_matching(summary).row(0)
    assert front[0] == "online all @1" and front[1:] == pytest.approx((0.45 / 0.40, 0.45 / 0.70))
    lines, headline = replay_section(replay_rows(), tmp_path)
    assert "mean regret 0.0000, 70% of train-all's epochs, best run kept in 100% of 2 orders" in headline[0]
    assert headline[1].startswith("A deployable policy reaches it") and "64% of the epochs" in headline[1]
    assert (tmp_path / "replay_pareto.png").stat().st_size > 10_000


def test_the_pareto_plot_takes_a_mean_an_ulp_outside_its_range(tmp_path):
    # A setting equal in every order (a synchronous triage trains the same epochs in each) can have a mean an
    # ulp above its 97.5% quantile (Polars' grouped mean of three equal 0.2175...: flows.replay_optuna raised
    # "'xerr' must not contain negative values"): the bar is clipped at 0.
    from pipeline_lib.report.decisions import pareto_plot

    summary = replay.summarise(replay_rows()).with_columns(
        (pl.col("epochs_fraction") - 1e-16).alias("epochs_fraction_high"),
        (pl.col("regret") + 1e-16).alias("regret_low"))
    assert pareto_plot(summary, tmp_path / "p.png").stat().st_size > 10_000


def test_study_verdict_by_hand():
    # To the rows above: transfer from the corpus at 0.5 mean epochs (0.5 / 0.7 of i-Epoch's, best kept in
    # 1 of 2 orders), transfer from a registered study never reaching regret 0, and a stop rule whose
    # stopped runs held a top run in one order of two (1 of 2 stopped in all: 0.5 > alpha 0.1).
    transfer = [("transfer", "corpus without s (linear)", "fraction=0.2", 0.2, None, (0.5, 0.0, True), (0.5, 0.0, False)),
                ("transfer", "study other", "fraction=0.2", 0.2, None, (0.3, 0.01, True), (0.3, 0.01, True)),
                ("online", None, "alpha=0.1", None, 0.1, (0.9, 0.0, True), (0.9, 0.0, True))]
    extra = []
    for policy, source, setting, keep, alpha, *per_order in transfer:
        for index, (epochs, regret, kept) in enumerate(per_order):
            missed = int(alpha is not None and index == 0)
            extra.append({**replay_rows().row(0, named=True), "policy": policy, "source": source, "setting": setting,
                          "keep_fraction": keep, "alpha": alpha, "feature_set": "all", "order_index": index,
                          "epochs_fraction": epochs, "regret": regret, "best_kept": kept, "runs_kept": 2,
                          "top_missed": missed, "recall_top": 1.0 - missed})
    summary = replay.summarise(pl.concat([replay_rows(), pl.DataFrame(extra, schema=replay_rows().schema)]))
    verdict = replay.study_verdict(summary)
    assert verdict["best i-Epoch"] == "rung 1, fraction=0.5" and verdict["i-Epoch epochs"] == pytest.approx(0.7)
    assert verdict["online all"] == pytest.approx((0.45 / 0.7, 1.0))  # its cheaper keep-fraction setting
    assert verdict["transfer (corpus) all"] == pytest.approx((0.5 / 0.7, 0.5))
    assert "transfer (registered) all" not in verdict  # never reaches i-Epoch's regret
    assert verdict["meets goal"]  # online: 64% of the epochs, best kept in every order
    assert verdict["stop rule within alpha"] == (0, 1)
    assert verdict["stop rule miss rate / alpha"] == pytest.approx((0.5 / 0.1, 0.5 / 0.1))
    # against the i-Epoch front, (0.40, 0.02) and (0.70, 0), the two transfers are two rows, not their best
    front = {row[0]: row[1:] for row in replay.front_matching(summary).iter_rows()}
    assert front["transfer (corpus) all @1"] == pytest.approx((0.5 / 0.40, 0.5 / 0.70))
    assert front["transfer (registered) all @1"][0] == pytest.approx(0.3 / 0.40)
    assert front["transfer (registered) all @1"][1] is None  # never reaches regret 0


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.random((40, 2)).round(2)]
    front = set(replay.pareto_front(points))
    brute = {a for a in points if not any(b != a and b[0] <= a[0] and b[1] <= a[1] for b in points)}
    assert front == brute


# the synchronous triage of flows.train_sweep -----------------------------------------------------------

def _rung_curves() -> replay.Curves:
    """Four epochs, five runs (rows in launch order a..e):

        run  acc e1..e4            seconds/epoch   final
        a    .50 .60 .70 .80       1 1 1 1         .80
        b    .70 .72 diverged at epoch 3: ends at 2   2 1           .10 (chance)
        c    .65 .70 .75 .85       3 1 1 1         .85   <- best
        d    .20 .30 .40 .50       1 1 1 1         .50
        e    diverged at epoch 1: no epoch recorded               .10"""
    acc = np.array([[0.5, 0.6, 0.7, 0.8], [0.7, 0.72, NAN, NAN], [0.65, 0.7, 0.75, 0.85], [0.2, 0.3, 0.4, 0.5],
                    [NAN] * 4])
    seconds = np.array([[1, 1, 1, 1], [2, 1, 0, 0], [3, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=float)
    return replay.Curves(tuple("abcde"), acc, seconds, np.array([4, 2, 4, 4, 0]), np.array([0.8, 0.1, 0.85, 0.5, 0.1]))


def _triage(**rule) -> TriageSpec:
    return TriageSpec(rungs=[1, 3], **rule)


@pytest.mark.parametrize("order, workers, wall", [
    # rung 1: e ended before it (no decision); a .50, b .70, c .65, d .20 ready: 1/3 of 4 keeps ceil(4/3) = 2,
    # b and c. Phase 1 (epoch 1 of every run, seconds a 1, b 2, c 3, d 1, e 0), W=2 in order a..e: a [0, 1],
    # b [0, 2], c [1, 4], d [2, 3], e [3, 3]: 4 s. Phase 2 (to rung 3): b trains epoch 2 (1 s) and ends,
    # c epochs 2-3 (2 s): 2 s. Rung 3: b ended before it (no decision), c alone ready: ceil(1/3) = 1 keeps it.
    # Phase 3: c's epoch 4, 1 s. Wall 4 + 2 + 1 = 7.
    ([0, 1, 2, 3, 4], 2, 7.0),
    # order b, a, d, c, e: b [0, 2], a [0, 1], d [1, 2], c [2, 5], e: phase 1 takes 5 s: 5 + 2 + 1 = 8
    ([1, 0, 3, 2, 4], 2, 8.0),
    # one worker: every second trained in turn, 1 + 3 + 6 + 1 = 11
    ([0, 1, 2, 3, 4], 1, 11.0),
])
def test_synchronous_triage_phases_by_hand(order, workers, wall):
    curves = _rung_curves()
    out = replay.simulate_rungs(curves, np.array(order), _triage(keep=1 / 3), rung_scores.accuracy_scorer(curves),
                                workers)
    assert out.epochs.tolist() == [1, 2, 4, 1, 0]
    # a and d stopped at rung 1; b (diverged, never stopped), c (to its end) and e (diverged) ended
    assert out.kept.tolist() == [False, True, True, False, True]
    assert out.train_seconds == 1 + 3 + 6 + 1 + 0 and out.graph_seconds == 0.0
    assert 0 < out.decision_seconds < 1  # two decisions, timed
    assert out.wall_seconds - out.decision_seconds == pytest.approx(wall)
    row = replay.judge(curves, out, SHARE)
    assert row["epochs"] == 8 and row["epochs_fraction"] == 8 / 14 and row["regret"] == 0.0 and row["best_kept"]


def test_synchronous_triage_charges_graph_seconds_and_ahead_of_time_scores():
    # Snapshots 0 and 1 of every run that trains epoch 1 (a-d) need a graph, 0.5 s each: +1 s in phase 1
    # (a 2, b 3, c 4, d 2, e 0; W=2: a [0, 2], b [0, 3], c [2, 6], d [3, 5], e: 6 s), then 2 + 1: wall 9.
    # Fixed predictions: at rung 1 d .9, a .8 best (reduction factor 2: 2 of 4 ready), at rung 3 a .7 over
    # d .6 (1 of 2), charged 0.25 s per run scored: 4 + 2 runs = 1.5 s.
    curves = _rung_curves()
    graphs = np.full((5, 5), 0.5)
    scores = rung_scores.FixedScores(1, curves.run_ids, np.array([0.8, 0.1, 0.2, 0.9, 0.0]), 0.25)
    with pytest.raises(ValueError, match="cannot score rung 3"):
        replay.simulate_rungs(curves, np.arange(5), _triage(keep=0.5), scores, 2, graphs, graph_epochs=1)
    scores = _PerRung({1: np.array([0.8, 0.1, 0.2, 0.9, 0.0]), 3: np.array([0.7, 0.1, 0.2, 0.6, 0.0])})
    out = replay.simulate_rungs(curves, np.arange(5), _triage(reduction_factor=2), scores, 2, graphs, graph_epochs=1)
    assert out.epochs.tolist() == [4, 1, 1, 3, 0] and out.kept.tolist() == [True, False, False, False, True]
    assert out.graph_seconds == 4.0
    # phase 2: a epochs 2-3 (2 s), d epochs 2-3 (2 s): 2 s; phase 3: a's epoch 4, 1 s
    assert out.decision_seconds >= 1.5 and out.wall_seconds - out.decision_seconds == pytest.approx(6 + 2 + 1)


class _PerRung:
    """Fixed predictions per rung, charged 0.25 s per run scored (as `FixedScores` is)."""

    def __init__(self, values: dict[int, np.ndarray]):
        self.scorers = {k: rung_scores.FixedScores(k, tuple("abcde"), v, 0.25) for k, v in values.items()}

    def __call__(self, rung: int, run_ids: list[str]) -> pl.DataFrame:
        return self.scorers[rung](rung, run_ids)

    @property
    def charged_seconds(self) -> float:
        return sum(s.charged_seconds for s in self.scorers.values())


def test_accuracy_scores_are_the_accuracy_source_s():
    # the scorer's frame is AccuracySource.score's of the test_acc@k feature
    curves = _rung_curves()
    got = rung_scores.accuracy_scorer(curves)(1, ["c", "a", "d"])
    assert got.columns == list(SCORES_SCHEMA) and got["run_id"].to_list() == ["c", "a", "d"]
    assert got["predicted"].to_list() == [0.65, 0.5, 0.2] and got["p_good"].null_count() == 3
    rows = pl.DataFrame({"run_id": list("abcd"), "feature": "test_acc@k", "value": [0.5, 0.7, 0.65, 0.2]})
    assert AccuracySource(1).score(rows, ["c", "a", "d"], 0.9).equals(got)


def test_the_triage_family_is_raced_and_reported(curves, tmp_path):
    # the five runs of three epochs above: rung lists below 3 only, 4 fractions + 3 reduction factors each
    sweep = replay.Sweep(curves, np.zeros((5, 4)), np.arange(5), np.array(["lenet"] * 5))
    settings = replay.Settings(workers=2, random_orders=1, share=SHARE)
    triage = [labels for labels, _ in replay.policy_grid(sweep, settings) if labels["family"] == "triage"]
    assert len(triage) == 3 * 7 and {t["source"] for t in triage} == {"accuracy"}
    assert {t["setting"].split(" ")[0] for t in triage} == {"rungs=1", "rungs=2", "rungs=1,2"}
    assert {"rungs=1,2 keep=0.5", "rungs=2 reduction_factor=3"} <= {t["setting"] for t in triage}
    rows = replay.replay_sweep(sweep, settings)
    # rung 1, keep 0.5: b .70, c .65, a .50 of 5 ready (e .30, d .20): ceil(2.5) = 3 go on, in every order
    row = rows.filter(pl.col("setting") == "rungs=1 keep=0.5")
    assert row["epochs"].to_list() == [3 + 3 + 3 + 1 + 1] * 2 and row["keep_fraction"].to_list() == [0.5] * 2
    assert row["rung"].to_list() == [1, 1] and row["regret"].to_list() == [0.0, 0.0]
    summary = replay.summarise(rows)
    assert "triage" in set(replay.matching(summary)["policy"])
    assert replay.study_verdict(summary)["best i-Epoch"].startswith("rung ")
    assert any(label.startswith("triage @") for label in replay.front_matching(summary)["policy"])
    lines, _ = replay_section(rows, tmp_path)
    assert "rungs=1,2 keep=0.5" in "\n".join(lines)
