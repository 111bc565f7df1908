"""The report's tables and its plain-language verdict, from the warehouse's `leaderboard` view
(ranked evaluations, the seed agreement beside), `comparisons` and `costs` (never typed in by hand).

Every number shown is a pooled out-of-fold value with its 95% configuration-bootstrap interval;
the spread over folds is secondary. A sentence says one signal beats another only when the paired
interval of their difference excludes 0. The ranking is the view's (`predictor_rank`), not redone here.
"""
from __future__ import annotations

import polars as pl

from ..decisions.path_cost import STRATEGIES as DECISION_PATH
from ..decisions.savings import STRATEGY as TRIAGE
from ..features import FEATURE_SETS, GRAPH_SETS
from ..vocabulary import CostStrategy, Split, Task

HEADLINE = {Task.REGRESSION: "kendall_tau", Task.CLASSIFICATION: "balanced_accuracy"}
LABELS = {"kendall_tau": "Kendall tau", "balanced_accuracy": "balanced accuracy (good run)"}
SUMMARY_METRICS = ("kendall_tau", "balanced_accuracy", "roc_auc", "r2")
# leaderboard column -> wide column, per metric; the seed agreement only for the headline metrics
COLUMNS = {"value": "{}", "low": "{}_low", "high": "{}_high", "std": "{}_sd"}
SEED_COLUMNS = {"seed_agreement": "seed_{}", "seed_agreement_low": "seed_{}_low", "seed_agreement_high": "seed_{}_high"}


def markdown_table(frame: pl.DataFrame, precision: int = 3) -> str:
    with pl.Config(tbl_formatting="ASCII_MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1, float_precision=precision, tbl_width_chars=400, fmt_str_lengths=200):
        return str(frame)


def interval(value, low, high) -> str:
    """'0.612 [0.480, 0.720]' (a missing bound shows as '?')."""
    if value is None:
        return ""
    bound = lambda b: "?" if b is None else f"{b:.3f}"  # noqa: E731
    return f"{value:.3f} [{bound(low)}, {bound(high)}]"


def _feature_order() -> pl.DataFrame:
    return pl.DataFrame({"feature_set": list(FEATURE_SETS), "order": range(len(FEATURE_SETS))})


def metric_frame(leaderboard: pl.DataFrame, predictor: str, split: str) -> pl.DataFrame:
    """Wide rows (feature_set, k, <metric>, <metric>_low, <metric>_high, <metric>_sd) of one predictor
    and split, with the seed agreement's tau and balanced accuracy (`seed_<metric>`, with bounds) beside."""
    rows = leaderboard.filter((pl.col("split") == split) & (pl.col("predictor") == predictor))
    long = pl.concat([
        rows.unpivot(index=["feature_set", "k", "metric"], on=list(COLUMNS), variable_name="field", value_name="cell"),
        rows.filter(pl.col("metric").is_in(list(HEADLINE.values())))
        .unpivot(index=["feature_set", "k", "metric"], on=list(SEED_COLUMNS), variable_name="field", value_name="cell"),
    ])
    named = long.with_columns(pl.col("field").replace_strict({**COLUMNS, **SEED_COLUMNS})
                              .str.replace("{}", pl.col("metric"), literal=True).alias("column"))
    if named.is_empty():
        return pl.DataFrame(schema={"feature_set": pl.Utf8, "k": pl.Int64})
    wide = named.pivot(on="column", index=["feature_set", "k"], values="cell")
    return wide.join(_feature_order(), on="feature_set").sort("k", "order").drop("order")


def summary_table(leaderboard: pl.DataFrame, predictor: str, split: str = Split.CV) -> pl.DataFrame:
    """The compact table: feature set x k -> pooled tau and balanced accuracy with intervals, tau's fold
    spread, AUC, R2, and the seed agreement's tau with its interval."""
    wide = metric_frame(leaderboard, predictor, split)
    columns = ["feature_set", "k", *[f"kendall_tau{s}" for s in ("", "_low", "_high", "_sd")],
               *[f"balanced_accuracy{s}" for s in ("", "_low", "_high")], "roc_auc", "r2",
               "seed_kendall_tau", "seed_kendall_tau_low", "seed_kendall_tau_high"]
    return wide.with_columns([pl.lit(None, pl.Float64).alias(c) for c in columns if c not in wide.columns]).select(columns)


def display_table(summary: pl.DataFrame) -> pl.DataFrame:
    """summary_table rows as text: value [95% interval] columns first, secondary numbers after."""
    # rows from a small study can leave a metric undefined everywhere (all null, no dtype)
    return summary.with_columns(pl.col(pl.Null).cast(pl.Float64)).select(
        pl.col("feature_set").alias("features"), "k",
        *[pl.struct(f"{m}", f"{m}_low", f"{m}_high").map_elements(lambda r, m=m: interval(r[m], r[f"{m}_low"], r[f"{m}_high"]),
                                                                    return_dtype=pl.Utf8).alias(label)
          for m, label in (("kendall_tau", "tau [95% CI]"), ("balanced_accuracy", "bal acc [95% CI]"))],
        pl.col("kendall_tau_sd").round(3).alias("tau fold sd"), pl.col("roc_auc").round(3).alias("AUC"),
        pl.col("r2").round(3).alias("R2"),
        pl.struct("seed_kendall_tau", "seed_kendall_tau_low", "seed_kendall_tau_high").map_elements(
            lambda r: interval(*r.values()), return_dtype=pl.Utf8).alias("seed tau [95% CI]"))


def _compared(comparisons: pl.DataFrame, task: str, predictor: str, k: int, metric: str, a: str, b: str) -> dict | None:
    rows = comparisons.filter((pl.col("task") == task) & (pl.col("predictor") == predictor) & (pl.col("k") == k)
                              & (pl.col("split") == Split.CV) & (pl.col("metric") == metric)
                              & (pl.col("feature_set") == a) & (pl.col("baseline") == b))
    return rows.row(0, named=True) if rows.height else None


def _difference(row: dict | None, a: str, b: str) -> str:
    if row is None:
        return f"{a} and {b} were not compared"
    said = {"beats": f"{a} beats {b}", "is beaten by": f"{a} is beaten by {b}",
            "no detectable difference": f"no detectable difference between {a} and {b}"}[row["verdict"]]
    return f"{said} (difference {interval(row['difference'], row['low'], row['high'])})"


def verdict(leaderboard: pl.DataFrame, comparisons: pl.DataFrame, predictor: str, reasons: list[str]) -> list[str]:
    """The headline, one line per k and task: the best signal with its interval, what the best graph set
    does against the best non-graph set, and what graph features add to all the others. "Best" is the
    leaderboard's `predictor_rank` (ties: the table's order). When the study is degenerate, only why
    no conclusion is possible."""
    if reasons:
        return [f"Conclusions are not possible for this study: {'; '.join(reasons)}. The numbers below "
                "describe this study only."]
    lines = []
    for task, metric in HEADLINE.items():
        ranked = (leaderboard.filter((pl.col("task") == task) & (pl.col("predictor") == predictor)
                                     & (pl.col("split") == Split.CV) & (pl.col("metric") == metric))
                  .drop_nulls("value").join(_feature_order(), on="feature_set").sort("k", "predictor_rank", "order"))
        for k in ranked["k"].unique(maintain_order=True):
            at_k = ranked.filter(pl.col("k") == k)
            best = at_k.row(0, named=True)
            text = (f"k={k}, {LABELS[metric]}: best signal `{best['feature_set']}` "
                    f"{interval(best['value'], best['low'], best['high'])}")
            if best["seed_agreement"] is not None:
                text += (f"; seed agreement "
                         f"{interval(best['seed_agreement'], best['seed_agreement_low'], best['seed_agreement_high'])}")
            graph = at_k.filter(pl.col("feature_set").is_in(list(GRAPH_SETS)))
            plain = at_k.filter(~pl.col("feature_set").is_in(list(GRAPH_SETS)))
            if graph.height and plain.height:
                g, p = graph["feature_set"][0], plain["feature_set"][0]
                text += f". Best graph set vs best non-graph set: {_difference(_compared(comparisons, task, predictor, k, metric, g, p), f'`{g}`', f'`{p}`')}"
            if {"all", "all_but_graph"} <= set(at_k["feature_set"]):
                row = _compared(comparisons, task, predictor, k, metric, "all", "all_but_graph")
                text += f". Graph features added to every other set: {_difference(row, '`all`', '`all_but_graph`')}"
            lines.append(text + ".")
    return lines


def transfer_table(leaderboard: pl.DataFrame, predictor: str) -> pl.DataFrame:
    """Every split but cv (per architecture, width transfer both ways, leave one architecture out):
    pooled tau and balanced accuracy with intervals, and the seed agreement's tau."""
    splits = sorted(s for s in leaderboard["split"].unique() if s != Split.CV)
    frames = [display_table(summary_table(leaderboard, predictor, split)).select(pl.lit(split).alias("split"), pl.all())
              for split in splits]
    frames = [f for f in frames if f.height]
    return pl.concat(frames) if frames else pl.DataFrame()


def cost_table(costs: pl.DataFrame, predictor: str) -> pl.DataFrame:
    """Training all runs, early stopping, and predict-then-finish with the table's predictor (the
    decision path's rows are the Decisions section's, the triage's the Triage section's)."""
    keep = costs.filter((pl.col("predictor").is_null() | (pl.col("predictor") == predictor))
                        & ~pl.col("strategy").is_in([*DECISION_PATH, TRIAGE]))
    return keep.select("strategy", pl.col("k").cast(pl.Utf8).fill_null(""), pl.col("feature_set").fill_null(""),
                       "seconds", "fraction", "runs_to_end", "best_final_acc", "detail")


def cost_verdict(costs: pl.DataFrame) -> list[str]:
    """Sentences comparing the compute of each strategy (rows of `cost_table`)."""
    full = costs.filter(pl.col("strategy") == CostStrategy.TRAIN_ALL).row(0, named=True)
    stop = costs.filter(pl.col("strategy") == CostStrategy.EARLY_STOPPING).row(0, named=True)
    lines = [f"Early stopping ({stop['detail']}) spends {stop['fraction']:.0%} of training every run to the end "
             f"and keeps a best run of {stop['best_final_acc']:.3f} (training everything: {full['best_final_acc']:.3f})."]
    predicted = costs.filter(pl.col("strategy") == CostStrategy.PREDICT_THEN_FINISH)
    for k in sorted(predicted["k"].unique(), key=int):
        at_k = {r["feature_set"]: r for r in predicted.filter(pl.col("k") == k).iter_rows(named=True)}
        parts = [f"{fs} {r['fraction']:.0%} (best kept {r['best_final_acc']:.3f})"
                 for fs, r in at_k.items() if fs in ("graph", "graph+learning_curve", "early_acc", "learning_curve")]
        cheaper = "cheaper" if at_k.get("graph", {}).get("fraction", 2) < stop["fraction"] else "NOT cheaper"
        lines.append(f"Predict at k={k}, then finish the predicted-good runs: {'; '.join(parts)}; "
                     f"with graph features this is {cheaper} than early stopping.")
    return lines
