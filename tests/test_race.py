"""The decision race (`decisions.race`): the top-5 measure and the rule by hand, and leave one study
out on three tiny hand-made studies with two orders: the setting chosen for a study never depends on
that study's curves."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline_lib.decisions import race, replay
from pipeline_lib.decisions.replay import Settings

TINY = Settings(random_orders=1, rungs=(1, 2), fractions=(0.25, 0.5), triage_rungs=((1,), (1, 2)), reduction_factors=(2,))
PASHA = ((1, 2),)


def curves(acc: np.ndarray) -> replay.Curves:
    return replay.Curves(tuple(f"r{i:02d}" for i in range(len(acc))), acc, np.ones_like(acc),
                         np.full(len(acc), acc.shape[1]), acc[:, -1].copy())


def outcome(kept: list[bool]) -> replay.Outcome:
    n = len(kept)
    return replay.Outcome(np.ones(n, dtype=np.int64), np.array(kept), 1.0, 0.0, 0.0, 1.0)


def test_the_top_5_share_by_hand():
    # finals a .9, b .85, c .85, d .8, e .7, f .7, g .1: the top 5 is a, b, c, d, e (e ties f, earlier in the
    # sweep). Kept a, c, f, g: 2 of the top 5. With 3 runs the top 5 is all 3.
    final = np.array([.9, .85, .85, .8, .7, .7, .1])
    c = curves(np.repeat(final[:, None], 2, axis=1))
    assert replay.top_n_runs(final).tolist() == [True] * 5 + [False] * 2
    assert replay.judge(c, outcome([True, False, True, False, False, True, True]))["top5_kept"] == pytest.approx(0.4)
    assert replay.judge(curves(np.array([[.5], [.6], [.7]])), outcome([True, True, False]))["top5_kept"] == \
        pytest.approx(2 / 3)


def summary_rows(rows: list[tuple[str, str, float, float, float]]) -> pl.DataFrame:
    return pl.DataFrame([{"study": s, "label": label, "epochs_fraction": e, "top5_kept": t, "best_kept_rate": b,
                          "fraction": e, "regret": 0.0} for s, label, e, t, b in rows])


def test_the_rule_by_hand():
    # Means over s1, s2: A (.3 epochs, top-5 .9, best 1), B (.2, .7, 1: top-5 too low), C (.25, .85, .85: best
    # kept too rarely), D (.1, .95, 1) on s1 only: not raced on every study read. A qualifies alone.
    rows = [("s1", "A", .3, .9, 1), ("s2", "A", .3, .9, 1), ("s1", "B", .2, .7, 1), ("s2", "B", .2, .7, 1),
            ("s1", "C", .2, .8, .9), ("s2", "C", .3, .9, .8), ("s1", "D", .1, .95, 1)]
    chosen = race.choose(summary_rows(rows))
    assert chosen["label"] == "A" and chosen["qualified"] and chosen["epochs_fraction"] == pytest.approx(.3)
    # none qualifies: the highest top-5 share, C (.85 > .7)
    chosen = race.choose(summary_rows(rows[2:6]))
    assert chosen["label"] == "C" and not chosen["qualified"]


def tiny_studies(seed: int) -> dict[str, replay.Curves]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, epochs in (("s0", 4), ("s1", 4), ("s2", 3)):  # s2: MedianPruner's n_warmup_steps=2 cannot run
        final = rng.uniform(0.3, 0.9, 12)
        noise = rng.normal(0, 0.05, (12, epochs)) * np.arange(epochs)[::-1]
        out[name] = curves(np.clip(final[:, None] * np.linspace(0.6, 1.0, epochs) + noise, 0, 1))
    return out


def chosen(studies: dict[str, replay.Curves]) -> tuple[pl.DataFrame, pl.DataFrame]:
    summary = race.summarise(race.race(studies, TINY, PASHA))
    return summary, race.loso(summary)


def test_leave_one_study_out_never_reads_the_held_out_study():
    studies = tiny_studies(0)
    summary, held_out = chosen(studies)
    assert summary["orders"].unique().to_list() == [2]  # the sweep's order and one seeded order
    assert set(held_out["family"]) == {*race.FAMILIES, race.ORACLE, "train_all"}
    assert held_out.height == 3 * 8  # every family on every study, s2 too (a setting it can run)
    # s0's curves turned upside down: its runs' ranks reversed at every epoch and at the end
    garbled = {**studies, "s0": curves(1.0 - studies["s0"].acc)}
    summary2, held_out2 = chosen(garbled)
    deployable = pl.col("family").is_in(race.FAMILIES)
    picks = held_out.filter(deployable & (pl.col("study") == "s0")).select("family", "label")
    assert picks.equals(held_out2.filter(deployable & (pl.col("study") == "s0")).select("family", "label"))
    # ... though s0's own numbers changed, and so may the choices that read s0
    assert not summary.filter(pl.col("study") == "s0")["top5_kept"].equals(
        summary2.filter(pl.col("study") == "s0")["top5_kept"])


def test_the_tables_and_the_default():
    summary, held_out = chosen(tiny_studies(1))
    families = race.family_table(held_out, summary)
    row = families.filter(pl.col("family") == race.SHIPPED).row(0, named=True)
    per_study = held_out.filter(pl.col("family") == race.SHIPPED)["top5_kept"]
    assert row["top5_kept"] == pytest.approx(per_study.mean())
    assert row["top5_kept_low"] <= row["top5_kept"] <= row["top5_kept_high"]
    default = race.defaults(summary)
    assert default["setting"] == row["on_all_studies"] and default["rungs"] in ([1], [1, 2])
    assert race.triage_default("rungs=1,3 reduction_factor=4") == {
        "setting": "rungs=1,3 reduction_factor=4", "rungs": [1, 3], "keep": 0.25,
        "spec": {"rungs": [1, 3], "reduction_factor": 4}}
    paired = race.paired(held_out)
    assert set(paired["family"]) == set(race.FAMILIES) - {race.SHIPPED}
    points = race.front(summary)
    assert points["on_front"].any() and not points.filter(pl.col("policy") == race.ORACLE).height
