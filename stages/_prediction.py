"""Shared by the prediction stages: whether a stage has anything to do, the designs that finished."""
from __future__ import annotations

import logging

import polars as pl

from pipeline_lib.fingerprints import DonePolicy, digest
from pipeline_lib.spec import MIN_CONFIGURATIONS
from warehouse.predict import stage_fingerprint

from .context import Failed, StudyContext

log = logging.getLogger(__name__)


def fingerprint_to_run(ctx: StudyContext, policy: DonePolicy, inputs: str) -> str | None:
    """The stage's fingerprint under its policy (`inputs`, the declared options, the declared modules'
    code); None instead (and a log line) when the stage last ran on exactly these, so it has nothing to do."""
    fingerprint = digest(inputs, *policy.option_values(ctx.study), policy.code())
    if stage_fingerprint(ctx.warehouse, ctx.study.name, policy.stage) == fingerprint:
        log.info("%s of %s is up to date; nothing to do", policy.stage, ctx.study.name)
        return None
    return fingerprint


def too_few_configurations(stage: str, study: str, targets: pl.DataFrame) -> str | None:
    """Why the stage cannot learn from the study's finished runs (fewer than two configurations, as a
    triage by P(good) may leave), logged with what to do; None when it can."""
    configurations = targets["config_id"].n_unique()
    if configurations >= MIN_CONFIGURATIONS:
        return None
    reason = f"{configurations} configuration(s) finished; grouped cross-validation needs at least {MIN_CONFIGURATIONS}"
    log.warning("%s of %s skipped: %s (train more runs to the end, or keep more at triage)", stage, study, reason)
    return reason


def finished_designs(ctx: StudyContext, designs: dict, results: list) -> tuple[list[tuple], int]:
    """((feature_set, k), result) of the designs whose task succeeded, and how many failed (each
    logged with its error, and reported; the stage then stays unrecorded, so that the next run tries
    them again)."""
    done, failed = [], 0
    for (feature_set, k), result in zip(designs, results):
        if isinstance(result, Failed):
            failed += 1
            log.error("design %s k=%d failed: %s", feature_set, k, result.error)
        else:
            done.append(((feature_set, k), result))
    ctx.report_failures(failed, len(designs), "designs (feature set x k)", "the stage's next run tries them again")
    return done, failed
