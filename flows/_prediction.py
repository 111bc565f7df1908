"""Helpers shared by the prediction flows: unit labels, stage fingerprints."""
from __future__ import annotations

from typing import Callable

import polars as pl
from prefect import get_run_logger

from pipeline_lib.decisions.registry import prediction_code_digest
from pipeline_lib.prediction.evaluation import PREDICTION_SCHEMA, other_seed_predictions
from pipeline_lib.prediction.models import TASKS
from pipeline_lib.spec import ExecutionSpec, Study, load_study
from warehouse.db import Warehouse
from warehouse.predict import input_fingerprint, stage_fingerprint

from ._fanout import Failed
from ._runtime import open_warehouse

SEED_AGREEMENT = ("other_seeds", "seed_agreement")  # (predictor, feature_set) of the noise ceiling
UNIT_COLUMNS = ("task", "predictor", "feature_set", "k", "split")


def with_unit(frame: pl.DataFrame, **labels) -> pl.DataFrame:
    """Prediction rows labelled with the unit (task, predictor, feature_set, k, split) they belong to."""
    frame = frame.with_columns(*[pl.lit(v).alias(c) for c, v in labels.items()]).with_columns(pl.col("k").cast(pl.Int64))
    return frame.select(*UNIT_COLUMNS, *PREDICTION_SCHEMA)


def seed_agreement_rows(targets: pl.DataFrame, ks: list[int], split: str) -> list[pl.DataFrame]:
    """The noise ceiling's predictions, repeated for every k (it does not depend on k) so that it
    sits beside every result."""
    predictor, feature_set = SEED_AGREEMENT
    return [with_unit(other_seed_predictions(task, targets), task=task, predictor=predictor, feature_set=feature_set,
                      k=k, split=split) for task in TASKS for k in ks]


def open_stage(spec: str, warehouse: str | None, stage: str,
               fingerprint_of: Callable[[Warehouse, Study], str] | None = None,
               execution: ExecutionSpec | None = None) -> tuple[Study, Warehouse, str | None]:
    """The study, its warehouse (with the data directory the study owns) and the stage's input
    fingerprint; None instead of the fingerprint (and a log line) when the stage last ran on exactly
    these inputs, so the flow has nothing to do."""
    study = load_study(spec)
    wh = open_warehouse(warehouse, execution or study.execution, study.name)
    fingerprint = (fingerprint_of or stage_inputs)(wh, study)
    if stage_fingerprint(wh, study.name, stage) == fingerprint:
        get_run_logger().info("%s of %s is up to date; nothing to do", stage, study.name)
        return study, wh, None
    return study, wh, fingerprint


def stage_inputs(wh: Warehouse, study: Study) -> str:
    """Fingerprint of a prediction stage's inputs; changing a predictor's code re-runs the stage."""
    return input_fingerprint(wh, study.name, study.predict.model_dump_json(),
                             study.width_transfer.model_dump_json(), prediction_code_digest())


def finished_designs(designs: dict, results: list, logger) -> tuple[list[tuple], int]:
    """((feature_set, k), result) of the designs whose task succeeded, and how many failed (each
    logged with its error; the stage then stays unrecorded, so that the next run tries them again)."""
    done, failed = [], 0
    for (feature_set, k), result in zip(designs, results):
        if isinstance(result, Failed):
            failed += 1
            logger.error("design %s k=%d failed: %s", feature_set, k, result.error)
        else:
            done.append(((feature_set, k), result))
    return done, failed
