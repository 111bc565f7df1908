"""The report's Decisions section: the registered predictors and how sure they are, what the
decision path costs, and a compute-versus-recall Pareto plot of stopping policies replayed on the
study's own recorded curves (`decisions.replay`).

Replayed here: early accuracy and TSE at each k, the registered predictors of `costs`' decision_path
rows (their stored out-of-fold predictions, charged their decision path's measured graph work, and
graph predictors again charged every property), and Optuna's pruners over their grids in the
sweep's launch order. Not the benchmark's extras (every feature set, refit timing, shuffled orders:
`benchmarks/early_stopping.py`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import polars as pl

from ..decisions import path_cost, replay
from ..decisions.uncertainty import conformal_intervals
from ..prediction.targets import run_targets
from ..spec import Study, expand_runs
from ..vocabulary import CostStrategy
from .figures import _save, plt
from .tables import interval, markdown_table

CONFIDENCE = 0.9


def registered_table(predictors: pl.DataFrame, predictions: pl.DataFrame, confidence: float = CONFIDENCE) -> pl.DataFrame:
    """Per k, the registered regression predictor of highest pooled out-of-fold Kendall tau: tau with its
    interval, the width of its split-conformal interval (from all out-of-fold residuals, as scoring uses
    it, around a prediction of 0.5) and the interval's coverage out of fold: each fold's runs judged by
    the interval calibrated on the other folds' residuals."""
    rows = []
    tau = predictors.filter(pl.col("task") == "regression").with_columns(
        pl.col("metrics_json").str.json_path_match("$.kendall_tau.value").cast(pl.Float64).alias("tau"),
        pl.col("metrics_json").str.json_path_match("$.kendall_tau.low").cast(pl.Float64).alias("low"),
        pl.col("metrics_json").str.json_path_match("$.kendall_tau.high").cast(pl.Float64).alias("high"),
    ).drop_nulls("tau").sort("k", "tau", "id", descending=[False, True, False])
    for best in tau.group_by("k", maintain_order=True).first().iter_rows(named=True):
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
                     "tau [95%]": interval(best["tau"], best["low"], best["high"]),
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


def replay_points(study: Study, runs: pl.DataFrame, epoch_metrics: pl.DataFrame, predictions: pl.DataFrame,
                  costs: pl.DataFrame) -> list[dict]:
    """Every operating point of the replayed policies: policy, family, k (None for a pruner), setting,
    fraction (of train-all), recall_top (of the true top 10%)."""
    targets = run_targets(runs, study.predict.good_run_quantile)
    curves = replay.Curves.from_frames(epoch_metrics, targets.select("run_id", "final_acc"),
                                       [r.run_id for r in expand_runs(study)])
    ks = [k for k in study.predict.k_epochs if k < curves.epochs]
    points = [{"policy": "train_all", "family": "train_all", "k": None, "setting": "",
               **replay.outcome(curves, replay.train_all(curves))}]

    def sweep(policy: str, family: str, k: int, scores: np.ndarray, extra: float = 0.0) -> None:
        points.extend({"policy": policy, "family": family, "k": k, "setting": f"keep {p['n_keep']}", **p}
                      for p in replay.keep_sweep(curves, scores, k, extra))

    for k in ks:
        sweep("early_acc", "early_acc", k, replay.early_accuracy(curves, k))
        sweep("tse", "tse", k, replay.training_loss_sum(curves, k))
    full = {r["k"]: r["seconds"] for r in costs.filter(pl.col("strategy") == CostStrategy.GRAPH_STAGE).iter_rows(named=True)}
    for r in costs.filter((pl.col("strategy") == CostStrategy.DECISION_PATH) & pl.col("k").is_in(ks)).iter_rows(named=True):
        stored = predictions.filter((pl.col("feature_set") == r["feature_set"]) & (pl.col("k") == r["k"])
                                    & (pl.col("predictor") == r["predictor"]))
        scores = replay.scores_from_predictions(curves, stored)
        name = f"{r['feature_set']}/{r['predictor']}"
        sweep(name, "learned", r["k"], scores, r["seconds"])
        if r["properties"]:
            sweep(f"{name}, every property", "learned_full", r["k"], scores, full[r["k"]])
    for name, settings in replay.pruner_grid(curves.epochs).items():
        points.extend({"policy": name, "family": "optuna", "k": None, **p}
                      for p in replay.pruner_points(curves, name, settings))
    return points


def frontier_table(points: list[dict], ks: list[int]) -> pl.DataFrame:
    """Per k, the operating points on the Pareto front of everything decidable at k (the policies at
    k, the pruners, train-all): none cheaper with at least its recall."""
    rows = []
    for k in ks:
        front = replay.pareto_front([p for p in points if p["k"] in (None, k)])
        rows += [{"k": k, "policy": p["policy"], "setting": p["setting"], "fraction": p["fraction"],
                  "recall_top": p["recall_top"]} for p in front]
    return pl.DataFrame(rows, schema={"k": pl.Int64, "policy": pl.Utf8, "setting": pl.Utf8, "fraction": pl.Float64,
                                      "recall_top": pl.Float64})


def pareto_plot(points: list[dict], ks: list[int], path: Path) -> Path:
    """One panel per k: each policy's own front as a step line, pruner settings as points, and the
    front of them all (thick grey)."""
    fig, axes = plt.subplots(1, len(ks), figsize=(5.5 * len(ks), 5), sharey=True, squeeze=False)
    colours = iter(plt.get_cmap("tab10").colors * 4)
    learned_colour: dict[str, tuple] = {}
    styles = {"early_acc": ("black", "--"), "tse": ("dimgrey", "-.")}
    for ax, k in zip(axes[0], ks):
        panel = [p for p in points if p["k"] in (None, k)]
        front = replay.pareto_front(panel)
        ax.step([p["fraction"] for p in front], [p["recall_top"] for p in front], where="post", color="lightgrey",
                linewidth=6, label="Pareto front of all", zorder=1)
        for policy in dict.fromkeys(p["policy"] for p in panel if p["k"] == k):
            own = replay.pareto_front([p for p in panel if p["policy"] == policy])
            family = own[0]["family"]
            if family in styles:
                colour, line = styles[family]
            else:
                base = policy.removesuffix(", every property")
                colour, line = learned_colour.setdefault(base, next(colours)), ":" if family == "learned_full" else "-"
            ax.step([p["fraction"] for p in own], [p["recall_top"] for p in own], where="post", color=colour,
                    linestyle=line, label=policy, zorder=3)
        pruned = [p for p in panel if p["family"] == "optuna"]
        ax.scatter([p["fraction"] for p in pruned], [p["recall_top"] for p in pruned], s=18, facecolors="none",
                   edgecolors="black", label="Optuna pruner settings", zorder=2)
        ax.scatter([1.0], [1.0], marker="*", s=140, color="red", label="train-all", zorder=4)
        ax.set(title=f"decide at k = {k}", xlabel="compute / train-all",
               xlim=(0, max(1.05, max(p["fraction"] for p in panel) + 0.05)))
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel(f"recall of the true top {replay.TOP_SHARE:.0%}")
    return _save(fig, path)


def decisions_section(study: Study, runs: pl.DataFrame, epoch_metrics: pl.DataFrame, predictors: pl.DataFrame,
                      predictions: pl.DataFrame, costs: pl.DataFrame, out_dir: Path) -> tuple[list[str], dict[str, pl.DataFrame]]:
    """(Markdown lines, tables by name); writes decisions_pareto.png. Empty when nothing is registered."""
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
    ks = [k for k in study.predict.k_epochs if k < study.epochs]
    start = time.perf_counter()
    points = replay_points(study, runs, epoch_metrics, predictions, costs)
    seconds = time.perf_counter() - start
    frontier = frontier_table(points, ks)
    pareto_plot(points, ks, out_dir / "decisions_pareto.png")
    lines += ["### Compute against recall of the best runs", "",
              f"Stopping policies replayed on this study's recorded curves ({seconds:.1f} s): early accuracy and TSE "
              "at k, keeping the n best for every n; the predictors above, ranked by their out-of-fold predictions and "
              "charged their decision path (dotted: charged every property); Optuna's pruners over their settings, "
              "trials in the sweep's launch order. Compute = recorded training seconds of the epochs each policy "
              f"trains (+ graph work) / train-all; recall = share of the true top {replay.TOP_SHARE:.0%} of runs "
              "by final accuracy that a policy trains to the end. The table lists the points of the Pareto front "
              "per k (nothing is both cheaper and of higher recall).", "",
              "![decisions pareto](decisions_pareto.png)", "",
              markdown_table(frontier), ""]
    tables["decision_frontier"] = frontier
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
