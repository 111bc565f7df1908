"""PASHA (`policies.Pasha`) in the asynchronous replay, on hand-made curves with one worker, every
decision worked out by hand below (1 s per epoch, so the wall time is the epochs trained)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.decisions import policies, replay


def curves(acc: dict[str, list[float]]) -> replay.Curves:
    a = np.array(list(acc.values()), dtype=np.float64)
    return replay.Curves(tuple(acc), a, np.ones_like(a), np.full(len(a), a.shape[1]), a[:, -1].copy())


# E = 4, r_min 1, eta 2: rungs at epochs 1, 2, 4; the maximum starts at epoch 2.
FLIP = {"a": [.50, .60, .70, .80], "b": [.40, .70, .75, .85], "c": [.30, .40, .50, .60], "d": [.20, .30, .40, .50]}
STEADY = {**FLIP, "b": [.40, .55, .75, .85]}


def test_the_maximum_grows_when_the_top_two_rungs_disagree():
    # a@1 (rung 1: {a}, floor(1/2) = 0 to promote) -> b@1 (floor(2/2) = 1: a, the best, goes on) -> a@2 (rung 2:
    # {a}) -> nothing to promote -> c@1 (floor(3/2) = 1: a, done) -> d@1 (floor(4/2) = 2: b) -> b@2 = .70: at epoch 2
    # b > a, at epoch 1 a > b: the rankings disagree (epsilon 0: no curve crossed back yet), the maximum grows to 4
    # -> from rung 2 {b .70, a .60}, floor(2/2) = 1: b trains to 4 and ends. Nothing left: no pick needed.
    pasha = policies.Pasha(4, r_min=1, eta=2)
    out = replay.simulate(curves(FLIP), np.arange(4), pasha, workers=1)
    assert pasha.levels == [1, 2, 4] and pasha.levels[pasha.top] == 4 and len(pasha.growths) == 1
    assert out.epochs.tolist() == [2, 4, 1, 1] and out.kept.tolist() == [False, True, False, False]
    assert out.wall_seconds - out.decision_seconds == pytest.approx(8.0)
    row = replay.judge(curves(FLIP), out)
    assert row["regret"] == 0 and row["best_kept"] and row["top5_kept"] == 0.25  # 4 runs: the top 5 is all 4


def test_a_stable_ranking_keeps_the_maximum_and_its_pick_trains_to_the_end():
    # As above until b@2 = .55 < a@2 = .60: the same order as at epoch 1, the maximum stays at epoch 2; nothing
    # left to promote (a and b both went on from rung 1), the sweep drains: PASHA's answer, the best at its top
    # rung (epoch 2: a), trains on to its end. b, the best run, waits at epoch 2: regret .85 - .80.
    pasha = policies.Pasha(4, r_min=1, eta=2)
    out = replay.simulate(curves(STEADY), np.arange(4), pasha, workers=1)
    assert pasha.levels[pasha.top] == 2 and pasha.growths == [] and pasha.picked == 0
    assert out.epochs.tolist() == [4, 2, 1, 1] and out.kept.tolist() == [True, False, False, False]
    row = replay.judge(curves(STEADY), out)
    assert row["regret"] == pytest.approx(0.05) and not row["best_kept"]


# E = 9, r_min 1, eta 3: rungs at 1, 3, 9, the maximum at 3. p, q, s, then six runs at .10-.15 at epoch 1.
SOFT = {"p": [.50, .55, .70], "q": [.45, .60, .68], "s": [.44, .50, .69],
        **{f"f{i}": [.10 + i / 100, .12, .13] for i in range(6)}}
SOFT = {run: acc + [acc[-1]] * 6 for run, acc in SOFT.items()}


@pytest.mark.parametrize("soft", [True, False])
def test_soft_ranking_tolerates_a_swap_within_epsilon(soft):
    # p@1, q@1, s@1: floor(3/3) = 1 -> p to 3. f0, f1, f2 -> floor(6/3) = 2 -> q to 3: at epoch 3 p .70 > q .68, as at
    # epoch 1: stable. f3, f4, f5 -> floor(9/3) = 3 -> s to 3: at epoch 3 [p .70, s .69, q .68], at epoch 1
    # [p .50, q .45, s .44]: s and q swapped. Epsilon: of the pairs that reached epoch 3, p and q crossed
    # (p > q at 1, p < q at 2, p > q at 3): gap .02 at 3; p-s never swapped, q-s never came back: epsilon = .02.
    # |s@1 - q@1| = .01 <= .02: soft ranking calls it stable (maximum stays at 3, the pick p trains to 9); exact
    # ranking grows the maximum to 9 and promotes floor(3/3) = 1 from rung 3: p. Either way p ends, 21 epochs.
    pasha = policies.Pasha(9, r_min=1, eta=3, soft=soft)
    out = replay.simulate(curves(SOFT), np.arange(9), pasha, workers=1)
    assert pasha.levels == [1, 3, 9]
    if soft:
        assert pasha.epsilon == pytest.approx(0.02) and pasha.levels[pasha.top] == 3 and pasha.picked == 0
    else:
        assert pasha.epsilon == 0 and pasha.levels[pasha.top] == 9 and pasha.picked is None
    assert out.epochs.tolist() == [9, 3, 3, 1, 1, 1, 1, 1, 1] and out.kept.tolist() == [True] + [False] * 8


def test_two_workers_promote_as_rung_results_arrive():
    # FLIP on two workers. t=1: a@1 (first: earlier in the order) -> floor(1/2) = 0, c starts; b@1 -> floor(2/2) = 1:
    # a goes on. t=2: a@2 (rung 2: {a}) -> nothing to promote, d starts; c@1 -> floor(3/2) = 1, a done; the order is
    # empty: that worker idles. t=3: d@1 -> floor(4/2) = 2: b goes on (the idle worker finds nothing more). t=4:
    # b@2 = .70 > a@2: the rankings disagree, the maximum grows to 4, b (the better at epoch 2) trains to its end
    # at t=6. Epochs as with one worker, wall 6 s.
    pasha = policies.Pasha(4, r_min=1, eta=2)
    out = replay.simulate(curves(FLIP), np.arange(4), pasha, workers=2)
    assert out.epochs.tolist() == [2, 4, 1, 1] and out.kept.tolist() == [False, True, False, False]
    assert out.wall_seconds - out.decision_seconds == pytest.approx(6.0)


def test_a_single_run_at_the_top_rung_decides_nothing_and_is_the_pick():
    # Three runs, eta 2, W=1: x@1 -> y@1: floor(2/2) = 1: x to 2; z@1 -> floor(3/2) = 1, x already went on. Nothing
    # to promote or start: the sweep drains with x alone at epoch 2 (no ranking to compare, the maximum stays),
    # and x, PASHA's pick, trains on to 4, though y would have been better at 2. 6 epochs.
    acc = {"x": [.5, .6, .7, .8], "y": [.4, .9, .9, .9], "z": [.3, .3, .3, .3]}
    pasha = policies.Pasha(4, r_min=1, eta=2)
    out = replay.simulate(curves(acc), np.arange(3), pasha, workers=1)
    assert out.epochs.tolist() == [4, 1, 1] and pasha.picked == 0 and pasha.growths == []
