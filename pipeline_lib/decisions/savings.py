"""What a triage saved, in seconds: the training it did plus its decisions' graph and scoring work,
against the estimated seconds of training every run to the end.

A stopped run never trains its remaining epochs, so training all is estimated: each stopped run's
remaining epochs at that run's own mean seconds per epoch (epochs >= 1; epoch 0 is the evaluation
at initialisation). Runs that completed, diverged or failed count as recorded: triage changed
nothing for them.
"""
from __future__ import annotations

import polars as pl

from pipeline_lib.vocabulary import CostStrategy, RunStatus

STRATEGY = CostStrategy.TRIAGE  # its row of `costs`


def triage_savings(runs: pl.DataFrame, epoch_seconds: pl.DataFrame, decision_seconds: float) -> dict:
    """The `costs` row of a triaged study from its runs (run_id, status, epochs, epochs_done,
    final_test_acc) and their recorded epochs (run_id, epoch, seconds)."""
    per_run = (epoch_seconds.group_by("run_id")
               .agg(pl.col("seconds").sum().alias("trained"),
                    pl.col("seconds").filter(pl.col("epoch") >= 1).mean().alias("per_epoch")))
    both = runs.join(per_run, on="run_id", how="left").with_columns(pl.col("trained").fill_null(0.0))
    remaining = pl.when(pl.col("status") == RunStatus.STOPPED).then(
        (pl.col("epochs") - pl.col("epochs_done")) * pl.col("per_epoch").fill_null(0.0)).otherwise(0.0)
    trained = float(both["trained"].sum())
    train_all = trained + float(both.select(remaining.sum()).item())
    seconds = trained + decision_seconds
    completed = both.filter(pl.col("status") == RunStatus.COMPLETED)
    return {"strategy": STRATEGY, "seconds": seconds, "fraction": seconds / train_all if train_all else None,
            "runs_to_end": completed.height, "best_final_acc": completed["final_test_acc"].max(),
            "epoch_seconds": float(both["per_epoch"].mean()) if both["per_epoch"].is_not_null().any() else None,
            "train_all_seconds": train_all, "decision_seconds": decision_seconds,
            "detail": f"trained {trained:.1f} s of an estimated {train_all:.1f} s to train every run to the end; "
                      f"decisions {decision_seconds:.1f} s (graphs and scoring); saved {train_all - seconds:.1f} s"}
