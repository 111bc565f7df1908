"""Which runs of a finished study could have been stopped early, and at what compute?

    .venv/bin/python benchmarks/early_stopping.py --warehouse W.duckdb --study NAME [--k 1 2 3]

Replays the study's recorded learning curves (`pipeline_lib.decisions.replay`) under:
- train-all;
- the learned predictor at each k, per feature set and predictor: the stored out-of-fold
  regression predictions of the prediction stage (table `predictions`, split cv, folds grouped by
  configuration, so no run is scored by a model that saw its configuration), keep the top n;
- early accuracy at k and TSE (sum of training losses over epochs 1..k), keep the top n;
- Optuna's Median, Percentile, SuccessiveHalving, Hyperband and Wilcoxon pruners, each over a
  small grid of settings, driven by trial.report / trial.should_prune on the recorded test
  accuracy, runs replayed as trials one at a time in the sweep's launch order
  (`pipeline_lib.spec.expand_runs`: configuration, then architecture, width, seed).
Compute = recorded training seconds of the epochs each policy trains, plus for a learned
predictor its measured extra work: the graph stage's recorded seconds (table `graphs`, epochs 0..k
of every run) for graph feature sets, and the seconds to redo its out-of-fold fits here
(single-threaded, all folds; the refit must reproduce the stored predictions).
Prints the table; with --write, also writes benchmarks/results/early_stopping_<study>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optuna
import polars as pl
from threadpoolctl import threadpool_limits

from benchmarks._output import add_write_argument, save
from pipeline_lib.decisions import replay
from pipeline_lib.features import FEATURE_SETS, GRAPH_SETS
from pipeline_lib.prediction.evaluation import feature_matrix, grouped_folds
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import Study, expand_runs
from pipeline_lib.vocabulary import FINISHED, Split, Task
from warehouse.db import Warehouse
from warehouse.predict import epoch_metrics, graph_seconds, load_features, study_runs

BUDGETS = (0.25, 0.5)


def summarise(points: list[dict], target: float) -> dict:
    """The cheapest point reaching the target recall and the best point within each budget; a keep
    sweep (one point per n_keep) is stored as its Pareto front only."""
    summary = {"at_target": replay.cheapest_at_recall(points, target),
               **{f"within_{b}": replay.best_within(points, b) for b in BUDGETS}}
    return {**summary, "points": replay.pareto_front(points) if "n_keep" in points[0] else points}


def learned_policies(wh: Warehouse, study: Study, curves: replay.Curves, targets: pl.DataFrame,
                     ks: list[int], share: float, target: float) -> list[dict]:
    preds = wh.query("""SELECT feature_set, predictor, k, run_id, y_pred FROM predictions
                        WHERE study = ? AND task = ? AND split = ? AND k IN (SELECT unnest(?))
                          AND feature_set IN (SELECT unnest(?))""",
                     [study.name, Task.REGRESSION, Split.CV, ks, list(FEATURE_SETS)])
    graphs = graph_seconds(wh, study.name).filter(pl.col("run_id").is_in(list(curves.run_ids)))
    folds = grouped_folds(targets, study.predict.n_folds)
    policies = []
    for (feature_set, predictor, k), stored in preds.group_by("feature_set", "predictor", "k"):
        X = feature_matrix(load_features(wh, study.name, k, FEATURE_SETS[feature_set]), folds["run_id"].to_list())[0]
        with threadpool_limits(1):
            fit_seconds, refit = replay.timed_out_of_fold(Task.REGRESSION, predictor, X, folds)
        agree = refit.join(stored, on="run_id", suffix="_stored")
        gap = float((agree["y_pred"] - agree["y_pred_stored"]).abs().max())
        if agree.height != stored.height or gap > 1e-6:
            raise SystemExit(f"refit of {feature_set}/{predictor}@k={k} does not reproduce the stored predictions "
                             f"(max gap {gap:.2g}); re-run the evaluation stage")
        graph_s = (float(graphs.filter(pl.col("epoch") <= k)["seconds"].sum())
                   if feature_set in GRAPH_SETS else 0.0)
        points = replay.keep_sweep(curves, replay.scores_from_predictions(curves, stored), k, graph_s + fit_seconds, share)
        policies.append({"family": "learned", "policy": f"{feature_set}/{predictor}", "k": k, "feature_set": feature_set,
                         "predictor": predictor, "graph_seconds": graph_s, "prediction_seconds": fit_seconds,
                         **summarise(points, target)})
    return policies


def score_policies(curves: replay.Curves, ks: list[int], share: float, target: float) -> list[dict]:
    out = []
    for k in ks:
        for name, score in (("early_acc", replay.early_accuracy), ("tse", replay.training_loss_sum)):
            points = replay.keep_sweep(curves, score(curves, k), k, share=share)
            out.append({"family": name, "policy": name, "k": k, **summarise(points, target)})
    return out


def pruner_policies(curves: replay.Curves, share: float, target: float, shuffles: int) -> list[dict]:
    """Each pruner's settings replayed in the sweep's order, and again in `shuffles` seeded random
    orders (a pruner's decisions depend on which trials came first)."""
    orders = [np.random.default_rng(seed).permutation(len(curves.run_ids)) for seed in range(shuffles)]
    out = []
    for name, settings in replay.pruner_grid(curves.epochs).items():
        shuffled = [replay.cheapest_at_recall(replay.pruner_points(curves.take(o), name, settings, share), target)
                    for o in orders]
        out.append({"family": "optuna", "policy": name, "k": None,
                    **summarise(replay.pruner_points(curves, name, settings, share), target),
                    "shuffled_at_target": [None if pt is None else pt["fraction"] for pt in shuffled]})
    return out


def _cell(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _within(pt: dict | None) -> str:
    return "-" if pt is None else f"{pt['recall_top']:.2f} / {_cell(pt['regret'], 4)}"


def _shuffled(fractions: list | None) -> str:
    if not fractions:
        return ""
    reached = sorted(f for f in fractions if f is not None)
    if not reached:
        return f"never ({len(fractions)} orders)"
    return (f"{np.median(reached):.3f} [{reached[0]:.3f}, {reached[-1]:.3f}]"
            + (f", {len(fractions) - len(reached)} never" if len(reached) < len(fractions) else ""))


def markdown(result: dict) -> str:
    share, target = result["top_share"], result["target_recall"]
    lines = [f"# Early stopping replay: {result['study']}", "",
             f"{result['runs']} finished runs, {result['epochs']} epochs; train-all = {result['train_all_seconds']:.1f} s "
             f"of recorded training. Top {share:.0%} = the {result['top_runs']} runs of highest final accuracy "
             f"(best {result['best_final_acc']:.4f}); \"at {target:.0%}\" = the cheapest operating point that keeps at "
             f"least {target:.0%} of them (here {result['top_needed']} of {result['top_runs']}). "
             f"Pruners: trials in {result['trial_order']}; the last column replays {result['shuffles']} seeded random "
             "orders (median [min, max] of the compute at the target). Learned predictors: stored out-of-fold "
             "regression predictions (folds grouped by configuration), ranked by predicted final accuracy.", "",
             f"| policy | k | compute at {target:.0%} | setting there | best kept | "
             + " | ".join(f"recall / regret within {b:.0%}" for b in BUDGETS)
             + " | graph s | predict s | pruner, shuffled orders |",
             "|---|---|---|---|---|" + "---|" * len(BUDGETS) + "---|---|---|"]
    for p in result["policies"]:
        at = p["at_target"] or {}
        setting = at.get("setting") or (f"keep {at['n_keep']}" if "n_keep" in at else "-")
        lines.append(f"| {p['policy']} | {p['k'] or '-'} | {_cell(at.get('fraction'))} | {setting} | "
                     f"{_cell(at.get('best_kept'), 4)} | " + " | ".join(_within(p[f'within_{b}']) for b in BUDGETS)
                     + f" | {_cell(p.get('graph_seconds'), 1)} | {_cell(p.get('prediction_seconds'), 1)} | "
                     f"{_shuffled(p.get('shuffled_at_target'))} |")
    lines += ["", "Compute is a fraction of train-all: recorded training seconds of the epochs trained, plus for a "
              "learned predictor the recorded graph seconds of epochs 0..k of every run (graph feature sets: the "
              "whole graph stage, every property) and its out-of-fold refit measured here (one thread, all folds). "
              "`-`: no operating point reaches the target (or none is that cheap). Plot: "
              + Path(result["plot"]).name, ""]
    return "\n".join(lines)


PRUNER_MARKERS = {"MedianPruner": "o", "PercentilePruner": "s", "SuccessiveHalvingPruner": "^",
                  "HyperbandPruner": "v", "WilcoxonPruner": "D"}


def plot(result: dict, path: Path) -> None:
    """One panel per k: Pareto fronts of the learned predictors (the predictor of higher mean
    Kendall tau), early accuracy and TSE at k, and every pruner's settings (the same in each panel)."""
    ks, chosen = result["ks"], result["plot_predictor"]
    fig, axes = plt.subplots(1, len(ks), figsize=(6 * len(ks), 5.5), sharey=True, squeeze=False)
    xmax = max(q["fraction"] for p in result["policies"] for q in p["points"]) + 0.05
    colours = plt.get_cmap("tab10").colors
    for ax, k in zip(axes[0], ks):
        learned = 0
        for p in result["policies"]:
            front = replay.pareto_front(p["points"])
            xs, ys = [q["fraction"] for q in front], [q["recall_top"] for q in front]
            if p["family"] == "optuna":
                ax.step(xs, ys, where="post", color="grey", linestyle=":", linewidth=0.8)
                ax.scatter([q["fraction"] for q in p["points"]], [q["recall_top"] for q in p["points"]], s=22,
                           marker=PRUNER_MARKERS[p["policy"]], facecolors="none", edgecolors="black", label=p["policy"])
            elif p["k"] == k and p["family"] in ("early_acc", "tse"):
                ax.step(xs, ys, where="post", linestyle="--", linewidth=1.6,
                        color="black" if p["family"] == "early_acc" else "dimgrey", label=f"{p['policy']}@{k}")
            elif p["k"] == k and p["family"] == "learned" and p["predictor"] == chosen:
                ax.step(xs, ys, where="post", color=colours[learned % 10], label=f"learned: {p['feature_set']}")
                learned += 1
        ax.scatter([1.0], [1.0], marker="*", s=140, color="red", label="train-all", zorder=5)
        ax.axhline(result["target_recall"], color="grey", linewidth=0.5)
        ax.set(title=f"k = {k} (learned predictor: {chosen})", xlabel="compute / train-all", xlim=(0, max(1.05, xmax)))
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel(f"recall of the true top {result['top_share']:.0%}")
    fig.suptitle(f"{result['study']}: compute versus recall of the top runs (Pareto fronts)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--top-share", type=float, default=replay.TOP_SHARE)
    parser.add_argument("--target-recall", type=float, default=replay.TARGET_RECALL)
    parser.add_argument("--shuffles", type=int, default=5, help="random trial orders replayed for the pruners")
    add_write_argument(parser)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    wh = Warehouse(args.warehouse)
    specs = wh.query("SELECT spec_json FROM studies WHERE study = ?", [args.study])
    if specs.is_empty():
        raise SystemExit(f"no study {args.study!r} in {args.warehouse}")
    study = Study.model_validate_json(specs["spec_json"][0])
    unfinished = wh.query("SELECT count(*) AS n FROM runs WHERE study = ? AND NOT list_contains(?, status)",
                          [study.name, list(FINISHED)])["n"][0]
    if unfinished:
        raise SystemExit(f"{unfinished} runs of {study.name} are not finished; the replay needs a fully trained study")
    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    order = [r.run_id for r in expand_runs(study)]
    curves = replay.Curves.from_frames(epoch_metrics(wh, study.name), targets.select("run_id", "final_acc"), order)

    policies = [{"family": "train_all", "policy": "train_all", "k": None,
                 **summarise([replay.outcome(curves, replay.train_all(curves), args.top_share)], args.target_recall)}]
    policies += pruner_policies(curves, args.top_share, args.target_recall, args.shuffles)
    policies += score_policies(curves, args.k, args.top_share, args.target_recall)
    learned = learned_policies(wh, study, curves, targets, args.k, args.top_share, args.target_recall)
    for k in sorted(set(args.k) - {p["k"] for p in learned}):
        print(f"note: no stored predictions at k={k} (not in the study's predict.k_epochs, or not evaluated yet)")
    policies += sorted(learned, key=lambda p: (p["k"], p["feature_set"], p["predictor"]))
    policies.sort(key=lambda p: (p["k"] or 0, p["family"] != "train_all"))
    # the predictor the report shows (views.sql): the higher pooled Kendall tau over feature sets and k
    shown = wh.query("SELECT predictor FROM predictor_standing WHERE study = ? AND split = ? AND rank = 1",
                     [study.name, Split.CV])

    stem = f"early_stopping_{study.name}"
    result = {"study": study.name, "warehouse": str(wh.path), "runs": len(curves.run_ids), "epochs": curves.epochs,
              "ks": args.k, "top_share": args.top_share, "target_recall": args.target_recall,
              "top_runs": int(replay.top_runs(curves.final, args.top_share).sum()),
              "top_needed": math.ceil(args.target_recall * replay.top_runs(curves.final, args.top_share).sum() - 1e-9),
              "shuffles": args.shuffles,
              "best_final_acc": float(curves.final.max()), "train_all_seconds": curves.total_seconds,
              "trial_order": "the sweep's launch order (configuration, architecture, width, seed), one trial at a time",
              "plot_predictor": shown["predictor"][0], "plot": f"{stem}.png",
              "machine": platform.node(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "policies": policies}
    print(markdown(result))
    save(args.write, {f"{stem}.json": lambda p: p.write_text(json.dumps(result, indent=1)),
                      f"{stem}.md": lambda p: p.write_text(markdown(result)), f"{stem}.png": lambda p: plot(result, p)})


if __name__ == "__main__":
    main()
