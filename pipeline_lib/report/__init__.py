"""The study report: Markdown with PNG figures, every number read from warehouse tables and views.

`build_report` returns the Markdown text and writes the figures; `tables.markdown_table` renders a
Polars frame as a Markdown table (Polars' own formatter).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..prediction.guard import degenerate_reasons
from ..prediction.metrics import BOOTSTRAP_SEED, N_RESAMPLES
from ..prediction.targets import run_targets
from ..spec import Study
from ..vocabulary import DATASETS, CostStrategy, RunStatus, Split
from .figures import compute_saving, graph_trajectories, metric_vs_k, predicted_vs_true
from .decisions import decisions_section
from .tables import cost_table, cost_verdict, display_table, markdown_table, summary_table, transfer_table, verdict
from .triage import triage_section


@dataclass(frozen=True)
class ReportInputs:
    """What the report reads from the warehouse."""

    runs: pl.DataFrame          # run_id, config_id, architecture, width, depth, seed, dataset, status, final_test_acc
    leaderboard: pl.DataFrame   # the view: ranked evaluations with the seed agreement beside
    predictor: str | None       # the one the tables show (view predictor_standing, split cv)
    comparisons: pl.DataFrame
    predictions: pl.DataFrame   # regression, split cv
    costs: pl.DataFrame
    graph_summaries: pl.DataFrame  # run_id, epoch, property, statistic, value (scope 'graph')
    predictors: pl.DataFrame    # per k, the study's best registered predictor: id, k, feature_set, predictor, tau, tau_low, tau_high
    replays: pl.DataFrame | None = None  # the stored replay of stopping policies (`replays`, flows.replay)
    triage: pl.DataFrame | None = None  # every run with its last triage decision (`triage_section`)
    triage_rungs: pl.DataFrame | None = None  # per rung: source, reason, mismatches, policy, decided, kept, seconds


def build_report(study: Study, inputs: ReportInputs, out_dir: Path) -> tuple[str, dict[str, pl.DataFrame], str]:
    """(Markdown text, the tables it shows by name, the predictor shown); figures are written to out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    board, runs, predictor = inputs.leaderboard, inputs.runs, inputs.predictor
    k_last = max(study.predict.k_epochs)
    summary = summary_table(board, predictor)
    transfer = transfer_table(board, predictor)
    costs = cost_table(inputs.costs, predictor)
    status = runs.group_by("status").len().sort("status")
    finals = runs.filter(pl.col("status") == RunStatus.COMPLETED)["final_test_acc"]
    reasons = degenerate_reasons(run_targets(runs, study.predict.good_run_quantile),
                                 DATASETS[study.dataset.name].chance_accuracy)
    folds = inputs.predictions["fold"].n_unique()
    configs = runs["config_id"].n_unique()
    headline = verdict(board, inputs.comparisons, predictor, reasons)
    lines = [
        f"# Study `{study.name}`: predicting final accuracy from the first epochs",
        "",
        "## Verdict (computed)",
        "",
        *[f"- {line}" for line in headline],
        "",
        f"Every number is pooled over all out-of-fold predictions of grouped {folds}-fold cross-validation by "
        f"configuration, predictor `{predictor}`, with a 95% bootstrap interval that resamples the {configs} "
        f"configurations ({N_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}). \"A beats B\" only when the paired interval "
        "of their difference (same resamples) excludes 0.",
        "",
        "## Study",
        "",
        f"{runs.height} runs ({', '.join(f'{n} {s}' for s, n in status.iter_rows())}) of {configs} hyper-parameter "
        f"configurations, architectures {sorted(runs['architecture'].unique())}, widths {sorted(runs['width'].unique())}, "
        f"{study.epochs} epochs on `{study.dataset.name}`. Final test accuracy of completed runs: median "
        f"{finals.median():.3f}, interquartile range {finals.quantile(0.25):.3f}-{finals.quantile(0.75):.3f}. "
        "Diverged runs count as chance accuracy.",
        "",
        f"## Cross-validated results ({predictor} predictor)",
        "",
        f"`{predictor}` has the higher pooled Kendall tau averaged over all feature sets and k; the other "
        "predictor's rows are in the `leaderboard` view. `tau fold sd` is the spread of the per-fold tau "
        "(each fold ranks only the configurations it holds: secondary). `bal acc` is the balanced accuracy of "
        "the good-run classifier. `seed tau` is the seed-agreement reference: each run predicted by the other "
        "seeds of its configuration and width, scored the same way. A model that pools many configurations "
        "can exceed it, since one seed is a noisy estimate of its configuration.",
        "",
        markdown_table(display_table(summary)),
        "",
        "![metric vs k](metric_vs_k.png)",
        "",
        f"### Predicted vs true final accuracy (k = {k_last}, out of fold)",
        "",
        "![predicted vs true](predicted_vs_true.png)",
        "",
    ]
    metric_vs_k(board, predictor, Split.CV, out_dir / "metric_vs_k.png", f"grouped CV, {predictor}")
    shown = [fs for fs in ("early_acc", "tse", "graph_compact", "all")
             if summary.filter(pl.col("feature_set") == fs).height]
    predicted_vs_true(inputs.predictions, inputs.runs, predictor, k_last, shown, out_dir / "predicted_vs_true.png")
    if inputs.graph_summaries.height:
        lines += ["### Graph properties through training, good against other runs", "",
                  f"Whole-graph statistics of the rolled graph per epoch; good runs are those above the "
                  f"{study.predict.good_run_quantile:g} quantile of final accuracy (the classification target). "
                  "Lines: median over runs; bands: interquartile range.", "",
                  "![graph trajectories](graph_trajectories.png)", ""]
        graph_trajectories(inputs.graph_summaries, run_targets(inputs.runs, study.predict.good_run_quantile),
                           out_dir / "graph_trajectories.png")

    if transfer.height:
        wt = study.width_transfer
        width_transfer = board.filter(pl.col("split") == Split.WIDTH_TRANSFER).height > 0
        lines += [
            "## Per architecture and transfer (RQ1, RQ2)",
            "",
            "`cv:<architecture>`: the cross-validated predictions of one family, ranked within it. "
            f"`width_transfer`: fitted on widths {wt.train_widths}, tested on {wt.test_widths}; "
            "`width_transfer_reverse`: the other way round. `leave_out:<architecture>`: fitted on the other "
            "families, tested on that one. One train/test split each; intervals resample configurations.",
            "",
            markdown_table(transfer),
            "",
            *(["![width transfer](width_transfer.png)", ""] if width_transfer else []),
        ]
        if width_transfer:
            metric_vs_k(board, predictor, Split.WIDTH_TRANSFER, out_dir / "width_transfer.png",
                        f"width transfer {wt.train_widths} -> {wt.test_widths}, {predictor}")

    if costs.height:
        full = costs.filter(pl.col("strategy") == CostStrategy.TRAIN_ALL)
        lines += [
            "## Compute (RQ3)",
            "",
            f"Training every run to the end took {full['seconds'][0]:.1f} s of training time in total. "
            "`predict_then_finish` trains every run to epoch k, then only the runs the out-of-fold "
            "classifier calls good; `best_final_acc` is the best final accuracy among the runs a strategy keeps.",
            "",
            *[f"- {line}" for line in cost_verdict(costs)],
            "",
            markdown_table(costs),
            "",
            "![compute saving](compute_saving.png)",
            "",
        ]
        compute_saving(costs, out_dir / "compute_saving.png")

    if inputs.triage is not None:
        lines += triage_section(inputs.triage, inputs.triage_rungs, inputs.costs)
    decisions, decision_tables = decisions_section(inputs.predictors, inputs.predictions, inputs.costs,
                                                   inputs.replays, out_dir)
    lines += decisions
    lines += [
        "## How these numbers were made",
        "",
        "- Features use epochs 0..k only; graph features use the whole-graph and relative-depth scopes.",
        "- Predictors are scikit-learn Pipelines (median imputation, rank-based feature selection, quantile "
        "transform); the linear model's penalty is chosen by an inner grouped CV on the training folds only, "
        "the gradient boosting's hyper-parameters are fixed. Nothing is tuned on a test fold.",
        f"- A good run has final accuracy above the {study.predict.good_run_quantile:.0%} quantile of the study.",
        "- TSE is the sum of the training losses of epochs 1..k, TSE-EMA weighs epoch t by 0.9^(k-t) (Ru et al. "
        "2021); `all` joins every feature set, `all_but_graph` every one but the graph sets.",
        "- Every number above is read from the warehouse: the views `leaderboard` and `predictor_standing` "
        "(over the table `evaluations`) and the tables `comparisons`, `predictions`, `costs`, `predictors` and "
        "`replays`.",
    ]
    return "\n".join(lines) + "\n", {"verdict": pl.DataFrame({"verdict": headline}), "summary": summary,
                                      "width_transfer": transfer, "costs": costs, **decision_tables}, predictor
