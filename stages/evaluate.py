"""Evaluation: grouped cross-validation of every predictor on every feature set and k.

Folds: GroupKFold by config_id, the same for every feature set, k, task and predictor. Writes
out-of-fold `predictions`; `evaluations` of split cv (and cv:<architecture>, the same predictions
within each family): pooled metrics with configuration-bootstrap intervals, fold spread beside,
the seed-agreement reference alike; paired `comparisons` of every two feature sets; `costs`.
Logs why conclusions are not possible when the study is degenerate (pipeline_lib.prediction.guard).
Skipped when its inputs (features, run outcomes, spec, the code `fingerprints.EVALUATE` lists) have
not changed. One task per design matrix (in this process for a small study, else the process pool
or Ray); a design whose task fails is logged and left out, and the stage runs again next time.
"""
from __future__ import annotations

import logging

import polars as pl

from pipeline_lib.features.sets import FEATURE_SETS, GRAPH_SETS
from pipeline_lib.fingerprints import EVALUATE
from pipeline_lib.placement import plan_designs
from pipeline_lib.prediction.costs import compute_costs
from pipeline_lib.prediction.evaluation import grouped_folds, per_architecture, seed_agreement_rows, with_unit
from pipeline_lib.prediction.guard import degenerate_reasons
from pipeline_lib.prediction.metrics import comparison_table, evaluation_table
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.vocabulary import DATASETS, FITTED_PREDICTORS, SEED_AGREEMENT, Split, Task
from warehouse.predict import (design_matrices, epoch_metrics, graph_seconds, input_fingerprint, record_stage,
                               study_runs, write_results)

from ._prediction import finished_designs, fingerprint_to_run, too_few_configurations
from .context import StudyContext, Work

log = logging.getLogger(__name__)


def run(ctx: StudyContext) -> dict:
    """Cross-validate everything; returns counts of what was written (or that it was up to date)."""
    study, wh = ctx.study, ctx.warehouse
    fingerprint = fingerprint_to_run(ctx, EVALUATE, input_fingerprint(wh, study.name))
    if fingerprint is None:
        return {"up_to_date": True}

    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    if reason := too_few_configurations(EVALUATE.stage, study.name, targets):
        return {"skipped": reason}
    targets = grouped_folds(targets, study.predict.n_folds)
    folds = targets["fold"].n_unique()
    reasons = degenerate_reasons(targets, DATASETS[study.dataset.name].chance_accuracy)
    if reasons:
        log.warning("conclusions about %s are not possible: %s (%d runs, %d grouped folds)", study.name,
                    "; ".join(reasons), targets.height, folds)
    designs, left_out = design_matrices(wh, study, targets["run_id"].to_list())
    if left_out:
        log.warning("not evaluated (features incomplete): %s", ", ".join(left_out))
    # one task per design matrix: fewer, larger tasks keep Prefect's overhead small
    results = ctx.fan_out(Work.CROSS_VALIDATE, [{"feature_set": fs, "k": k, "X": X, "targets": targets}
                                                for (fs, k), (X, _) in designs.items()],
                          plan_designs(len(designs), targets.height), label=f"designs of {study.name}")
    done, failed = finished_designs(ctx, designs, results)
    frames = [with_unit(r, feature_set=fs, k=k, split=Split.CV) for (fs, k), r in done]
    frames += seed_agreement_rows(targets, study.predict.k_epochs, Split.CV)
    predictions = pl.concat(frames)
    evaluations = evaluation_table(pl.concat([predictions, per_architecture(predictions, targets)]), targets)
    comparisons = comparison_table(predictions, targets, exclude=(SEED_AGREEMENT,))

    classifications = predictions.filter((pl.col("task") == Task.CLASSIFICATION) & (pl.col("split") == Split.CV)
                                         & pl.col("feature_set").is_in(list(FEATURE_SETS)))
    costs = compute_costs(epoch_metrics(wh, study.name), graph_seconds(wh, study.name), targets, classifications,
                          study.epochs, study.predict.patience, set(GRAPH_SETS))
    write_results(wh, study.name, [Split.CV, Split.CV_PREFIX], evaluations, predictions, comparisons, costs)
    if not failed:
        record_stage(wh, study.name, EVALUATE.stage, fingerprint)
    log.info("evaluated %d designs (feature set x k) x tasks %s x predictors %s on %d runs in %d grouped folds",
             len(done), ", ".join(Task), ", ".join(FITTED_PREDICTORS), targets.height, folds)
    return {"designs": len(done), "runs": targets.height, "folds": folds, "not_conclusive": reasons,
            **({"failed": failed} if failed else {})}
