"""The report's tables and its plain-language verdict, computed from the warehouse's
`evaluations` and `costs` (never typed in by hand)."""
from __future__ import annotations

import polars as pl

from ..features import BASELINES, FEATURE_SETS

SEED = "seed_agreement"
GRAPH_SETS = tuple(name for name, bases in FEATURE_SETS.items() if "graph" in bases)
HEADLINE = {"regression": ("r2", "kendall_tau"), "classification": ("accuracy", "roc_auc")}


def table_predictor(evaluations: pl.DataFrame, split: str = "cv") -> str:
    """The predictor shown in the summary: the one with the higher Kendall tau averaged over every
    feature set and k (one choice for the whole table, stated beside it)."""
    taus = (evaluations.filter((pl.col("split") == split) & (pl.col("metric") == "kendall_tau")
                               & (pl.col("feature_set") != SEED))
            .group_by("predictor").agg(pl.col("mean").mean()).sort("mean", "predictor", descending=[True, False]))
    return taus["predictor"][0]


def metric_frame(evaluations: pl.DataFrame, predictor: str, split: str) -> pl.DataFrame:
    """Wide rows (feature_set, k, <metric>, <metric>_std) of one predictor and split, with the seed
    agreement's tau (`seed_tau`) and accuracy (`seed_accuracy`) beside every row."""
    rows = evaluations.filter((pl.col("split") == split) & (pl.col("predictor") == predictor))
    wide = rows.pivot(on="metric", index=["feature_set", "k"], values=["mean", "std"])
    wide = wide.rename({c: (c.removeprefix("mean_") if c.startswith("mean_") else c.removeprefix("std_") + "_std")
                        for c in wide.columns if c.startswith(("mean_", "std_"))})
    seed = (evaluations.filter((pl.col("split") == split) & (pl.col("feature_set") == SEED)
                               & pl.col("metric").is_in(["kendall_tau", "accuracy"]))
            .pivot(on="metric", index="k", values="mean")
            .rename({"kendall_tau": "seed_tau", "accuracy": "seed_accuracy"}, strict=False))
    order = pl.DataFrame({"feature_set": list(FEATURE_SETS), "order": range(len(FEATURE_SETS))})
    return (wide.join(order, on="feature_set").join(seed, on="k", how="left")
            .sort("k", "order").drop("order"))


def summary_table(evaluations: pl.DataFrame, predictor: str, split: str = "cv") -> pl.DataFrame:
    """The compact table: feature set x k -> R2, Kendall tau, good-run accuracy, seed agreement tau."""
    wide = metric_frame(evaluations, predictor, split)
    columns = ["feature_set", "k", "r2", "kendall_tau", "kendall_tau_std", "accuracy", "roc_auc", "seed_tau"]
    for c in columns:
        if c not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(c))
    return wide.select(columns)


def verdict(evaluations: pl.DataFrame, predictor: str, split: str = "cv") -> list[str]:
    """One sentence per k and headline metric: does the graph feature set beat each baseline?"""
    wide = metric_frame(evaluations, predictor, split)
    lines = []
    for k in sorted(wide["k"].unique()):
        at_k = {r["feature_set"]: r for r in wide.filter(pl.col("k") == k).iter_rows(named=True)}
        if "graph" not in at_k:
            lines.append(f"k={k}: no graph features were evaluated.")
            continue
        for metric in ("kendall_tau", "accuracy", "roc_auc"):
            graph = at_k["graph"].get(metric)
            if graph is None:
                continue
            better = [b for b in BASELINES if b in at_k and at_k[b].get(metric) is not None and at_k[b][metric] >= graph]
            baseline_values = ", ".join(f"{b} {at_k[b][metric]:.3f}" for b in BASELINES if at_k.get(b, {}).get(metric) is not None)
            if better:
                head = f"graph features do NOT beat {', '.join(better)}"
            else:
                head = "graph features beat every baseline"
            line = f"k={k}, {metric}: {head} (graph {graph:.3f}; {baseline_values})"
            combo, curve = at_k.get("graph+learning_curve", {}).get(metric), at_k.get("learning_curve", {}).get(metric)
            if combo is not None and curve is not None:
                line += (f"; adding graph to the learning curve {'helps' if combo > curve else 'does not help'}"
                         f" ({combo:.3f} vs {curve:.3f})")
            lines.append(line + ".")
    return lines


def transfer_table(evaluations: pl.DataFrame, predictor: str) -> pl.DataFrame:
    frames = [metric_frame(evaluations, predictor, split).with_columns(pl.lit(split).alias("split"))
              for split in ("width_transfer", "width_transfer_reverse")]
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame()
    wide = pl.concat(frames, how="diagonal_relaxed")
    keep = [c for c in ["split", "feature_set", "k", "r2", "kendall_tau", "accuracy", "roc_auc", "seed_tau"]
            if c in wide.columns]
    return wide.select(keep)


def cost_table(costs: pl.DataFrame, predictor: str) -> pl.DataFrame:
    """Training all runs, early stopping, and predict-then-finish with the table's predictor."""
    keep = costs.filter(pl.col("predictor").is_null() | (pl.col("predictor") == predictor))
    return keep.select("strategy", pl.col("k").cast(pl.Utf8).fill_null(""), pl.col("feature_set").fill_null(""),
                       "seconds", "fraction", "runs_to_end", "best_final_acc", "detail")


def cost_verdict(costs: pl.DataFrame) -> list[str]:
    """Sentences comparing the compute of each strategy (rows of `cost_table`)."""
    full = costs.filter(pl.col("strategy") == "train_all").row(0, named=True)
    stop = costs.filter(pl.col("strategy") == "early_stopping").row(0, named=True)
    lines = [f"Early stopping ({stop['detail']}) spends {stop['fraction']:.0%} of training every run to the end "
             f"and keeps a best run of {stop['best_final_acc']:.3f} (training everything: {full['best_final_acc']:.3f})."]
    predicted = costs.filter(pl.col("strategy") == "predict_then_finish")
    for k in sorted(predicted["k"].unique(), key=int):
        at_k = {r["feature_set"]: r for r in predicted.filter(pl.col("k") == k).iter_rows(named=True)}
        parts = [f"{fs} {r['fraction']:.0%} (best kept {r['best_final_acc']:.3f})"
                 for fs, r in at_k.items() if fs in ("graph", "graph+learning_curve", "early_acc", "learning_curve")]
        cheaper = "cheaper" if at_k.get("graph", {}).get("fraction", 2) < stop["fraction"] else "NOT cheaper"
        lines.append(f"Predict at k={k}, then finish the predicted-good runs: {'; '.join(parts)}; "
                     f"with graph features this is {cheaper} than early stopping.")
    return lines
