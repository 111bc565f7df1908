"""Scoring: rank the runs of a study at epoch k with a registered predictor, into `scores`.

Which runs: every run of the study that has reached epoch k (its epoch-k metrics are recorded, or
it diverged at or before k), finished or still training. Which predictor: one chosen by id, by a
study name (that study's best), or `best`: the regression predictor fitted at k on this dataset and
these architectures with the highest pooled out-of-fold Kendall tau, from any study (the view
best_predictors). Their features at k are computed here, only for the base sets the predictor
reads, with the same functions as the features stage. Each score has a split-conformal interval of
the final accuracy and, when a classification twin is registered, a calibrated P(good).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import polars as pl

from pipeline_lib.decisions.predictor_source import differences
from pipeline_lib.decisions.scoring import ScoringError, ranked
from pipeline_lib.decisions.sources import ScoreSource, named_corpus
from pipeline_lib.decisions.study_match import Mismatch
from pipeline_lib.features import GRAPH_BASE_SETS, base_set_features
from pipeline_lib.vocabulary import Task
from warehouse.db import Warehouse
from warehouse.predict import epoch_metrics, graph_ready_runs, invariant_graph_summaries, snapshot_paths
from warehouse.registry import best_predictor, registered_source
from warehouse.runs import recorded_study
from warehouse.scores import record_scores, runs_with_last_epoch

from .context import StudyContext

log = logging.getLogger(__name__)


@dataclass
class ScoringPlan:
    source: ScoreSource   # checked against the runs; it loads its files once, when first scoring
    runs: pl.DataFrame    # the runs to score: every one has reached epoch k
    waiting: int          # runs of the study that have not reached epoch k yet


def choose_source(wh: Warehouse, which: str, k: int, runs: pl.DataFrame) -> ScoreSource:
    """The registered regression predictor `which` (an id); with `which` = 'best' the one of highest
    pooled out-of-fold Kendall tau among those fitted at this k on the runs' dataset and
    architectures; with `which` a study name, the best such predictor of that study; with `which` =
    'corpus' the corpus predictor at k (pipeline_lib/decisions/corpus.py), whatever the warehouse holds."""
    if (shipped := named_corpus(which, k)) is not None:
        return shipped
    of_study = None
    if which != "best":
        rows = wh.query("SELECT * FROM predictors WHERE id = ?", [which])
        if rows.is_empty() and wh.query("SELECT 1 FROM predictors WHERE study = ? LIMIT 1", [which]).is_empty():
            raise ScoringError(f"no registered predictor {which!r} in {wh.path}, nor a study of that name with "
                               "registered predictors; see `SELECT id, study, feature_set, k, task, predictor FROM "
                               "predictors` or use best")
        if rows.height:
            row = rows.row(0, named=True)
            if row["task"] != Task.REGRESSION or row["k"] != k:
                raise ScoringError(f"predictor {which} is a {row['task']} predictor fitted at k = {row['k']}; scoring "
                                   f"at epoch {k} needs a regression predictor fitted at k = {k}")
            return registered_source(wh, which)
        of_study = which
    datasets, architectures = sorted(set(runs["dataset"])), sorted(set(runs["architecture"]))
    row = best_predictor(wh, k, datasets, architectures, of_study)
    if row is None:
        raise ScoringError(f"no registered regression predictor at k = {k}{f' of study {of_study!r}' if of_study else ''} "
                           f"with a cross-validated Kendall tau covers dataset {datasets} and architectures "
                           f"{architectures}; register a study of these (flows.register) or score at another epoch")
    return registered_source(wh, row["id"])


def plan_scoring(wh: Warehouse, study: str, which: str | ScoreSource, k: int) -> ScoringPlan:
    """The source (`which`: a name `choose_source` resolves, or a source already chosen, as triage's)
    and the runs it will score, or ScoringError saying why it cannot (no run at epoch k, fewer runs
    than it ranks together, a dataset or architecture it never saw, the graph stage not run), or
    RegistryError when its file, its model code or a library changed since it was registered."""
    runs = runs_with_last_epoch(wh, study)
    if runs.is_empty():
        raise ScoringError(f"study {study!r} has no runs in {wh.path}; train it first")
    reached = (pl.col("last_epoch") >= k) | (pl.col("diverged_epoch") <= k).fill_null(False)
    ready = runs.filter(reached)
    if ready.is_empty():
        raise ScoringError(f"no run of study {study!r} has reached epoch {k} yet (furthest: epoch "
                           f"{runs['last_epoch'].max()}); train further or score at a lower --at-epoch")
    source = which if isinstance(which, ScoreSource) else choose_source(wh, which, k, ready)
    if ready.height < source.min_cohort:
        raise ScoringError(f"{source.name} ranks the runs of a study among themselves: it needs at least "
                           f"{source.min_cohort} runs at epoch {k}, found {ready.height}")
    bases = source.feature_sets
    if set(bases) & set(GRAPH_BASE_SETS):
        lacking = set(ready["run_id"]) - set(graph_ready_runs(wh, study, k)["run_id"])
        if lacking:
            raise ScoringError(f"predictor {source.id} reads graph features ({source.feature_set}), but "
                               f"{len(lacking)} run(s) of study {study!r} that reached epoch {k} lack processed graphs "
                               f"of their snapshots at epochs 0..{k} (e.g. run {sorted(lacking)[0]}); run "
                               "flows.graph_metrics on the study first")
    if "weight_stats" in bases:
        snapped = set(snapshot_paths(wh, study).filter(pl.col("epoch") == k)["run_id"])
        lacking = set(ready.filter(pl.col("diverged_epoch").is_null() | (pl.col("diverged_epoch") > k))["run_id"]) - snapped
        if lacking:
            raise ScoringError(f"predictor {source.id} reads weight statistics, but {len(lacking)} run(s) have "
                               f"no snapshot at epoch {k} (e.g. run {sorted(lacking)[0]})")
    source.check(ready)  # after the cheap refusals: it loads the predictor's file
    return ScoringPlan(source, ready.drop("last_epoch"), runs.height - ready.height)


def _features(wh: Warehouse, study: str, k: int, runs: pl.DataFrame, bases: tuple[str, ...]) -> pl.DataFrame:
    """Feature rows of the runs at k, of the given base sets only (graph summaries read only if needed)."""
    inputs = {"epoch_metrics": epoch_metrics(wh, study),
              "graph_summaries": invariant_graph_summaries(wh, study, k) if set(bases) & set(GRAPH_BASE_SETS) else None,
              "snapshot_paths": snapshot_paths(wh, study) if "weight_stats" in bases else None}
    return pl.concat([base_set_features(base, k, runs, **inputs) for base in bases])


def score_study(wh: Warehouse, study: str, which: str | ScoreSource, k: int, confidence: float = 0.9,
                mismatches: list[str] = ()) -> tuple[pl.DataFrame, ScoringPlan]:
    """Score every run of the study that reached epoch k and return the scores (with the plan: source,
    runs, runs still short of k). A predictor's scores replace the study's scores by it at this k, with
    `mismatches` (how its study differs from this one); test accuracy (in epoch_metrics) is not recorded again."""
    plan = plan_scoring(wh, study, which, k)
    source = plan.source
    run_ids = plan.runs["run_id"].to_list()
    scores = ranked(source.score(_features(wh, study, k, plan.runs, source.feature_sets), run_ids, confidence)
                    ).with_columns(
        pl.lit(study).alias("study"), pl.lit(source.id, pl.Utf8).alias("predictor_id"), pl.lit(k, pl.Int32).alias("k"),
        pl.lit(confidence).alias("confidence"), pl.lit(list(mismatches), pl.List(pl.Utf8)).alias("mismatches"),
        pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("scored_at"))
    if source.id is not None:
        record_scores(wh, study, source.id, k, scores)
    return scores, plan


def study_differences(ctx: StudyContext, source: ScoreSource) -> list[Mismatch]:
    """How the source's study differs from this one, by name; refused where its scores would mean
    nothing here (`predictor_source.differences`; none for a source of no one study)."""
    theirs = recorded_study(ctx.warehouse, source.study) if source.study is not None else None
    return differences(ctx.study, source, theirs)


def run(ctx: StudyContext, predictor: str = "best", at_epoch: int = 2, confidence: float = 0.9) -> dict:
    """Score the study's runs that reached epoch `at_epoch`; returns the predictor, how many were
    scored and how the predictor's study differs from this one (each difference also warned)."""
    wh, name = ctx.warehouse, ctx.study.name
    source = plan_scoring(wh, name, predictor, at_epoch).source
    differences = study_differences(ctx, source)
    for difference in differences:
        log.warning("predictor of another study: %s", difference)
    scores, plan = score_study(wh, name, source, at_epoch, confidence, [str(m) for m in differences])
    chosen = plan.source.row
    log.info("scored %d runs of %s at epoch %d with predictor %s (%s, %s, fitted on study %s)%s", scores.height,
             name, at_epoch, chosen["id"], chosen["feature_set"], chosen["predictor"], chosen["study"],
             f"; {plan.waiting} runs have not reached epoch {at_epoch} yet" if plan.waiting else "")
    return {"predictor": chosen["id"], "scored": scores.height, "waiting": plan.waiting,
            "mismatches": [str(m) for m in differences]}
