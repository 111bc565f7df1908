"""The report's Decisions section: the registered predictors and how sure they are, what the
decision path costs, and the stored replay of stopping policies (table `replays`, written once by
`flows.replay`; nothing is replayed while rendering): an epochs-against-regret Pareto plot with the
i-Epoch front, the epochs each deployable policy needs to match i-Epoch, and the stop rule's miss
rate against alpha.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from ..decisions import path_cost, replay
from ..decisions.uncertainty import conformal_intervals
from ..vocabulary import CostStrategy
from .figures import _save, plt
from .tables import interval, markdown_table

CONFIDENCE = 0.9


def registered_table(predictors: pl.DataFrame, predictions: pl.DataFrame, confidence: float = CONFIDENCE) -> pl.DataFrame:
    """Per k, the registered regression predictor of highest pooled out-of-fold Kendall tau (`predictors`:
    one row per k, from the view best_predictors): tau with its interval, the width of its
    split-conformal interval (from all out-of-fold residuals, as scoring uses it, around a prediction
    of 0.5) and the interval's coverage out of fold: each fold's runs judged by the interval
    calibrated on the other folds' residuals."""
    rows = []
    for best in predictors.sort("k").iter_rows(named=True):
        oof = predictions.filter((pl.col("feature_set") == best["feature_set"]) & (pl.col("k") == best["k"])
                                 & (pl.col("predictor") == best["predictor"]))
        residual = (oof["y_true"] - oof["y_pred"]).to_numpy()
        folds = oof["fold"].to_numpy()
        covered = []
        for fold in np.unique(folds):
            held = folds == fold
            if not calibrates(int((~held).sum()), confidence):  # the interval would be all of [0, 1]: says nothing
                covered = []
                break
            band = conformal_intervals(residual[~held], oof["y_pred"].to_numpy()[held], confidence)
            y = oof["y_true"].to_numpy()[held]
            covered += list((band[:, 0] <= y) & (y <= band[:, 1]))
        low, high = conformal_intervals(residual, np.array([0.5]), confidence)[0] if calibrates(len(residual), confidence) \
            else (0.0, 1.0)
        rows.append({"k": best["k"], "predictor": f"{best['feature_set']}/{best['predictor']}",
                     "tau [95%]": interval(best["tau"], best["tau_low"], best["tau_high"]),
                     f"{confidence:.0%} interval width": float(high - low),
                     "coverage out of fold": float(np.mean(covered)) if covered else None, "runs": len(residual),
                     "id": best["id"]})
    return pl.DataFrame(rows)


def calibrates(residuals: int, confidence: float) -> bool:
    """Whether this many residuals bound an interval at `confidence` (the ceil((n+1)c)-th smallest exists);
    with fewer, the split-conformal interval is unbounded (clipped: all of [0, 1])."""
    return math.ceil((residuals + 1) * confidence) <= residuals


def path_table(costs: pl.DataFrame) -> pl.DataFrame:
    """The decision path's rows of `costs` beside every property on the same snapshots."""
    rows = costs.filter(pl.col("strategy").is_in(list(path_cost.STRATEGIES))).sort("k", "strategy", "feature_set")
    return rows.select(
        "k", pl.when(pl.col("strategy") == CostStrategy.GRAPH_STAGE).then(pl.lit("every property (graph stage)"))
        .otherwise(pl.format("{}/{}", "feature_set", "predictor")).alias("graph work for"),
        pl.col("properties").list.join(", ").alias("quantities"),
        pl.col("snapshot_seconds").alias("graph s / snapshot"), pl.col("epoch_seconds").alias("train s / model-epoch"),
        (pl.col("snapshot_seconds") / pl.col("epoch_seconds")).alias("ratio"),
        pl.col("fraction").alias("of train-all"), "detail")


def replay_section(rows: pl.DataFrame, out_dir: Path) -> tuple[list[str], list[str]]:
    """(Markdown lines, headline lines) of the stored replay (`replays` rows, flows.replay); writes
    replay_pareto.png. Nothing is replayed here: the rows were computed once by the replay stage."""
    summary = replay.summarise(rows)
    ref = replay.best_i_epoch(summary)
    match, front = replay.matching(summary), replay.front_matching(summary)
    orders, workers = int(summary["orders"].max()), int(summary["workers"][0])
    summary = summary.with_columns(replay.kind_column().alias("policy"))  # transfer from the corpus or a study
    pareto_plot(summary, out_dir / "replay_pareto.png")
    winners = match.filter(pl.col("meets_goal"))
    headline = [
        f"Best i-Epoch: rung {ref['rung']}, {ref['setting']}: mean regret {ref['regret']:.4f}, "
        f"{ref['epochs_fraction']:.0%} of train-all's epochs, best run kept in {ref['best_kept_rate']:.0%} of "
        f"{orders} orders.",
        ("A deployable policy reaches it with at most 75% of its epochs and keeps the best run in at least 95% of "
         "orders: " + "; ".join(f"{replay.policy_kind(r['policy'], r['source'])} ({r['feature_set'] or 'accuracy'}, "
                                f"rung {r['rung']}, {r['setting']}: {r['epochs_vs_i_epoch']:.0%} of the epochs, "
                                f"best kept {r['best_kept_rate']:.0%})" for r in winners.iter_rows(named=True)))
        if winners.height else
        "No deployable policy reaches the best i-Epoch's regret with at most 75% of its epochs while keeping the best "
        "run in at least 95% of orders.",
    ]
    stop_rules = summary.filter(pl.col("alpha").is_not_null()).select(
        "policy", "rung", "feature_set", "alpha", "top_share_of_stopped", "miss_rate", "epochs_fraction", "regret",
        "best_kept_rate").sort("policy", "feature_set", "rung", "alpha")
    table = summary.sort("family", "policy", "rung", "feature_set", "keep_fraction", "setting").select(
        "policy", "deployable", "rung", "feature_set", "setting",
        pl.format("{} [{}, {}]", *(pl.col(c).round(3) for c in ("epochs_fraction", "epochs_fraction_low",
                                                                  "epochs_fraction_high"))).alias("epochs [95% over orders]"),
        pl.format("{} [{}, {}]", *(pl.col(c).round(4) for c in ("regret", "regret_low", "regret_high")))
        .alias("regret [95% over orders]"),
        "best_kept_rate", "recall_top", pl.col("fraction").alias("seconds / train-all"),
        pl.col("wall_seconds").alias(f"wall s ({workers} workers)"))
    lines = [
        "### Replayed stopping policies (flows.replay)", "",
        f"The sweep simulated as it would have run: {workers} parallel workers, each epoch its recorded seconds, runs "
        f"started in the sweep's order and in {orders - 1} seeded random orders; every policy decides with what it "
        "would know then (pipeline_lib/decisions/policies.py). `i_epoch`: at its rung keep the runs whose accuracy "
        "ranks in the top fraction of the runs seen at that rung so far (ASHA-like); Optuna's pruners through "
        "trial.report/should_prune; `online`: a predictor refit on the runs already ended (10% of runs, seeded, "
        "trained to the end for unbiased labels, charged), accuracy at the rung until 5 configurations have ended; "
        "`transfer`: a predictor fitted on other studies only, registered on one (`transfer (registered)`) or the "
        "corpus' refit without this study (`transfer (corpus)`); `oracle`: this study's out-of-fold predictions (fitted "
        "on its final accuracies: NOT deployable); `triage`: the synchronous rung-by-rung triage of "
        "flows.train_sweep (the whole cohort trained to each rung of its list, then the best fraction kept; by "
        "accuracy at the rung, or by a registered transfer predictor). Stop rule `alpha`: stop a run only when its "
        "conformal chance of ending in the top 10% is below alpha. Epochs: every epoch trained / train-all's; "
        "seconds add the recorded graph seconds of the snapshots a policy's features need and the measured scoring "
        "and refitting seconds. "
        "Regret: best final accuracy minus the best trained to the end. Brackets: 2.5-97.5% over orders.", "",
        *[f"- {line}" for line in headline], "",
        "![replay pareto](replay_pareto.png)", "",
        "Epochs each deployable policy needs to reach the best i-Epoch's mean regret, as a share of i-Epoch's "
        "(its cheapest setting that does; empty where none does):", "",
        markdown_table(match), "",
        "The same against every point of the i-Epoch front (columns: rung, setting, (mean epochs, mean regret)); "
        "below 1: the policy reaches that regret with fewer epochs; empty: never:", "",
        markdown_table(front), "",
    ]
    if stop_rules.height:
        lines += ["Stop rule against alpha: `top_share_of_stopped` is the share of the stopped runs that would have "
                  "ended in the top 10% (over all orders): what alpha bounds if the conformal chances are "
                  "calibrated (a run is stopped only when its chance is below alpha); `miss_rate` is the share of "
                  "the true top 10% stopped (mean over orders), which alpha does not bound: it is at most "
                  "alpha x stopped runs / top runs.", "", markdown_table(stop_rules), ""]
    lines += ["Every setting:", "", markdown_table(table), ""]
    return lines, headline


def pareto_plot(summary: pl.DataFrame, path: Path) -> Path:
    """Mean epochs (share of train-all's) against mean regret per setting, bars = 2.5-97.5% over orders;
    the i-Epoch front as a line; the oracle hollow (not deployable)."""
    fig, ax = plt.subplots(figsize=(9, 6))
    colours = iter(plt.get_cmap("tab10").colors * 4)
    for (policy, deployable), group in summary.filter(pl.col("policy") != "train_all") \
            .group_by(["policy", "deployable"], maintain_order=True):
        colour = "black" if policy == "i_epoch" else next(colours)
        xs, ys = group["epochs_fraction"].to_numpy(), group["regret"].to_numpy()
        # clipped at 0: the mean of equal values (a synchronous triage epochs the same in every order) may
        # fall an ulp outside their 2.5-97.5% range, and matplotlib refuses negative bars
        low, high = group["epochs_fraction_low"].to_numpy(), group["epochs_fraction_high"].to_numpy()
        xerr = np.clip([xs - low, high - xs], 0, None)
        yerr = np.clip([ys - group["regret_low"].to_numpy(), group["regret_high"].to_numpy() - ys], 0, None)
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o" if deployable else "s", color=colour, alpha=0.7, ms=5,
                    elinewidth=0.6, mfc=colour if deployable else "none",
                    label=policy + ("" if deployable else " (not deployable)"))
        if policy == "i_epoch":
            front = replay.pareto_front(list(zip(xs, ys)))
            ax.step([p[0] for p in front] + [1.0], [p[1] for p in front] + [front[-1][1]], where="post",
                    color="black", linewidth=2, label="i-Epoch front", zorder=5)
    ax.scatter([1.0], [0.0], marker="*", s=160, color="red", label="train-all", zorder=6)
    ax.set(xlabel="epochs trained / train-all's (mean over orders)", ylabel="regret of the best run kept (mean)",
           xlim=(0, 1.05))
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def decisions_section(predictors: pl.DataFrame, predictions: pl.DataFrame, costs: pl.DataFrame,
                      replays: pl.DataFrame | None, out_dir: Path) -> tuple[list[str], dict[str, pl.DataFrame]]:
    """(Markdown lines, tables by name); writes replay_pareto.png when the study was replayed. Empty when
    nothing is registered."""
    if predictors.is_empty():
        return [], {}
    registered = registered_table(predictors, predictions)
    lines = ["## Decisions", "",
             f"Registered predictors (`predictors`, fitted on all {registered['runs'][0]} finished runs): per k the "
             "regression predictor of highest pooled out-of-fold Kendall tau. The interval is split-conformal from "
             f"its out-of-fold residuals at {CONFIDENCE:.0%} (what `flows.score` attaches to a score); its coverage out "
             "of fold judges each fold's runs by the interval calibrated on the other folds (empty when a fold's "
             "others are too few to bound one).", "",
             markdown_table(registered.drop("runs")), ""]
    tables = {"registered": registered}
    path = path_table(costs)
    if path.height:
        lines += ["### The cost of the decision path", "",
                  "Scoring a run needs the graph quantities behind the columns its registered predictor kept, on "
                  "the run's snapshots of epochs 0..k. Measured on a sample of this study's snapshots "
                  f"({int(costs.filter(pl.col('strategy') == CostStrategy.GRAPH_STAGE)['snapshots_timed'][0])} snapshots; read, "
                  "rolled graph, those quantities, summaries; the least of 3 timings each), beside every property on the "
                  "same snapshots in the same loop; against the recorded training seconds per model-epoch. `of "
                  "train-all` = graph seconds for every run's snapshots 0..k / seconds of training every run to the "
                  "end. RQ3 (`predict_then_finish` above) charges graph predictors the recorded graph stage, every "
                  "property: its seconds are in `detail`.", "",
                  *[f"- {line}" for line in path_verdict(path)], "",
                  markdown_table(path), ""]
        tables["decision_path"] = path
    if replays is not None and replays.height:
        replay_lines, _ = replay_section(replays, out_dir)
        lines += replay_lines
        tables["replay"] = replay.summarise(replays)
    else:
        lines += ["No replay of stopping policies is stored for this study: run `flows.replay` (see README).", ""]
    return lines, tables


def path_verdict(path: pl.DataFrame) -> list[str]:
    """Per k, the decision path's share of training against every property's."""
    lines = []
    for k in sorted(path["k"].unique()):
        rows = path.filter(pl.col("k") == k)
        full = rows.filter(pl.col("graph work for").str.starts_with("every property")).row(0, named=True)
        for r in rows.filter(~pl.col("graph work for").str.starts_with("every property")).iter_rows(named=True):
            lines.append(f"k = {k}, {r['graph work for']} ({r['quantities'] or 'no graph quantities'}): "
                         f"{r['graph s / snapshot']:.4f} s of graph work per snapshot against "
                         f"{r['train s / model-epoch']:.4f} s of training per model-epoch; deciding for every run "
                         f"costs {r['of train-all']:.0%} of training, every property {full['of train-all']:.0%}.")
    return lines
