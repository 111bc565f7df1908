"""RQ3: compute spent before the study knows which runs are worth finishing.

All strategies are priced from the recorded per-epoch training seconds (evaluation excluded)
and, for predictions that use graph features, the recorded graph seconds of epochs 0..k:
- train_all: every run trained to its last epoch (or to divergence);
- early_stopping: each run stops once its test accuracy has not improved for `patience` epochs;
  it keeps its best checkpoint;
- predict_then_finish: every run trained to epoch k, the out-of-fold classifier picks the runs
  predicted "good", and only those are trained to the end.
`best_final_acc` is the best accuracy among the runs a strategy keeps: what it would deliver.
Feature building and model fitting take milliseconds per run here and are not counted.
"""
from __future__ import annotations

import polars as pl

from ..vocabulary import CostStrategy

COST_SCHEMA = {"strategy": pl.Utf8, "k": pl.Int64, "feature_set": pl.Utf8, "predictor": pl.Utf8,
               "seconds": pl.Float64, "fraction": pl.Float64, "runs_to_end": pl.Int64,
               "best_final_acc": pl.Float64, "detail": pl.Utf8}


def early_stopping_epochs(epoch_metrics: pl.DataFrame, patience: int) -> pl.DataFrame:
    """Per run: the epoch training stops at, and the best test accuracy seen until then."""
    m = (epoch_metrics.sort("run_id", "epoch")
         .with_columns(pl.col("test_acc").cum_max().over("run_id").alias("best_so_far")))
    m = m.with_columns((pl.col("test_acc") >= pl.col("best_so_far")).alias("improved"))
    m = m.with_columns(pl.when(pl.col("improved")).then(pl.col("epoch")).forward_fill().over("run_id")
                       .alias("best_epoch"))
    stop = (m.with_columns((pl.col("epoch") - pl.col("best_epoch") >= patience).alias("exhausted"))
            .group_by("run_id")
            .agg(pl.when(pl.col("exhausted").any())
                 .then(pl.col("epoch").filter(pl.col("exhausted")).min())
                 .otherwise(pl.col("epoch").max()).alias("stop_epoch"),
                 pl.col("epoch").max().alias("last_epoch")))
    best = (m.join(stop, on="run_id").filter(pl.col("epoch") <= pl.col("stop_epoch"))
            .group_by("run_id").agg(pl.col("test_acc").max().alias("kept_acc")))
    return stop.join(best, on="run_id")


def compute_costs(epoch_metrics: pl.DataFrame, graph_seconds: pl.DataFrame, targets: pl.DataFrame,
                  classifications: pl.DataFrame, epochs: int, patience: int,
                  graph_sets: set[str]) -> pl.DataFrame:
    """Cost rows (COST_SCHEMA).

    epoch_metrics: run_id, epoch, seconds, test_acc of the evaluated runs; graph_seconds: run_id,
    epoch, seconds; targets: run_id, final_acc; classifications: out-of-fold good-run predictions
    (k, feature_set, predictor, run_id, y_pred)."""
    em = epoch_metrics.filter(pl.col("run_id").is_in(targets["run_id"].implode()))
    finished = targets.join(em.group_by("run_id").agg(pl.col("epoch").max().alias("last_epoch")), on="run_id")
    total = float(em["seconds"].sum())
    rows = [{"strategy": CostStrategy.TRAIN_ALL, "seconds": total,
             "runs_to_end": int((finished["last_epoch"] == epochs).sum()),
             "best_final_acc": targets["final_acc"].max(), "detail": f"{epochs} epochs"}]

    stops = early_stopping_epochs(em, patience)
    stopped_seconds = em.join(stops, on="run_id").filter(pl.col("epoch") <= pl.col("stop_epoch"))["seconds"].sum()
    rows.append({"strategy": CostStrategy.EARLY_STOPPING, "seconds": float(stopped_seconds),
                 "runs_to_end": int((stops["stop_epoch"] == epochs).sum()), "best_final_acc": stops["kept_acc"].max(),
                 "detail": f"patience {patience} epochs on test accuracy"})

    for (k, feature_set, predictor), picks in classifications.group_by("k", "feature_set", "predictor"):
        to_k = float(em.filter(pl.col("epoch") <= k)["seconds"].sum())
        graphs = (float(graph_seconds.filter((pl.col("epoch") <= k) & pl.col("run_id").is_in(targets["run_id"].implode()))
                        ["seconds"].sum()) if feature_set in graph_sets else 0.0)
        kept = picks.filter(pl.col("y_pred") == 1)["run_id"]
        rest = float(em.filter((pl.col("epoch") > k) & pl.col("run_id").is_in(kept.implode()))["seconds"].sum())
        kept_runs = finished.filter(pl.col("run_id").is_in(kept.implode()))
        rows.append({"strategy": CostStrategy.PREDICT_THEN_FINISH, "k": k, "feature_set": feature_set,
                     "predictor": predictor,
                     "seconds": to_k + graphs + rest, "runs_to_end": int((kept_runs["last_epoch"] == epochs).sum()),
                     "best_final_acc": kept_runs["final_acc"].max(),
                     "detail": f"train to {k}, {graphs:.1f}s graphs, finish {kept.len()} predicted good"})
    costs = pl.DataFrame(rows, schema={c: t for c, t in COST_SCHEMA.items() if c != "fraction"})
    return costs.with_columns((pl.col("seconds") / total if total > 0 else pl.lit(None)).alias("fraction")) \
        .select(COST_SCHEMA.keys()).cast(COST_SCHEMA).sort("strategy", "k", "feature_set", "predictor", nulls_last=False)
