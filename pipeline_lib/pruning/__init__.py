"""Triage's keep rules (`decisions.triage.decide`) as early stopping for other tuners' sweeps: an
Optuna pruner (`optuna_pruner.TriagePruner`) and a Ray Tune scheduler (`ray_scheduler.TriageScheduler`).

At each rung (an epoch), a trial's score is compared with the scores of every trial of the study
that reached that rung before it (and itself): kept if the keep rule keeps it among them, stopped
otherwise; scores of later trials cannot revive an earlier decision (as in asynchronous successive
halving). The score is a registered predictor's prediction (`pipeline_lib.api`) when one is given,
else the accuracy reported at the rung: "keep the best fraction by accuracy at epoch i", the
i-Epoch rule, a strong baseline in the early-stopping replay (docs/prediction.md).
"""
from __future__ import annotations

import math

import polars as pl

from ..decisions.triage import decide
from ..spec import KeepPGood, TriageSpec

SCORE_KEYS = ("predicted", "low", "high", "p_good")
# The default keep rule of `TriagePruner` and `TriageScheduler`: keep the best half by accuracy at epoch 3,
# the rule the decision race picks for the asynchronous i-Epoch (their rule: each trial decided as it
# reaches the rung, against the trials seen there) on the 16 corpus studies (docs/results/race.md;
# benchmarks/results/decision_race.json, "default" -> "pruner"; tests/test_pruning.py checks the two agree).
DEFAULT_RUNGS = (3,)
DEFAULT_KEEP = 0.5


def keep_rule(keep: float | int | dict | KeepPGood) -> TriageSpec:
    """The keep rule validated as a triage spec's (a fraction, top N, or {p_good: t}); ValueError if not.
    Its rung is a placeholder: hosts decide at their own rungs (epochs, seconds, iterations)."""
    return TriageSpec(at_epoch=1, keep=keep)


def lost(score: dict) -> bool:
    """A diverged run (the API's `Prediction.diverged`) or a non-finite score: stopped at once, as
    Optuna's pruners stop a NaN intermediate value."""
    predicted = score.get("predicted")
    return bool(score.get("diverged")) or predicted is None or not math.isfinite(predicted)


def keeps(scores: dict[str, dict], this: str, rule: TriageSpec) -> bool:
    """Whether the keep rule keeps `this` among the scored trials (id -> predicted, low, high, p_good;
    a missing or NaN predicted score ranks last)."""
    frame = pl.DataFrame(
        [{"run_id": key, **{name: row.get(name) for name in SCORE_KEYS}} for key, row in scores.items()],
        schema={"run_id": pl.Utf8, **{name: pl.Float64 for name in SCORE_KEYS}})
    decision = decide(frame, rule).filter(pl.col("run_id") == this)["decision"]
    return decision[0] == "keep"
