"""Width transfer (RQ2): fit on some widths and predict others, both ways, and leave one
architecture out.

split width_transfer: fit on every run of width_transfer.train_widths, test on every run of
test_widths; width_transfer_reverse: the other way round. A configuration appears on both sides
at different widths: the question is whether what was learnt on narrow networks holds for wide
ones. leave_out:<architecture> (studies of two or more families): fit on the other families,
test on that one. Same feature sets, predictors and pooled metrics with configuration-bootstrap
intervals as the cross-validation, and the seed agreement of the test runs beside them. Skipped
when its inputs have not changed (`fingerprints.WIDTH_TRANSFER`).
"""
from __future__ import annotations

import logging

import numpy as np
import polars as pl

from pipeline_lib.fingerprints import WIDTH_TRANSFER
from pipeline_lib.placement import plan_designs
from pipeline_lib.prediction.evaluation import seed_agreement_rows, with_unit
from pipeline_lib.prediction.metrics import evaluation_table
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.vocabulary import Split
from warehouse.predict import design_matrices, input_fingerprint, record_stage, study_runs, write_results

from ._prediction import finished_designs, fingerprint_to_run
from .context import StudyContext, Work

log = logging.getLogger(__name__)
SPLITS = (Split.WIDTH_TRANSFER, Split.WIDTH_TRANSFER_REVERSE, Split.LEAVE_OUT_PREFIX)


def transfer_directions(targets: pl.DataFrame, train_widths: list[float],
                        test_widths: list[float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (train_mask, test_mask)} of the widths both ways and of every left-out architecture."""
    directions = {}
    if train_widths and test_widths:
        train, test = targets["width"].is_in(train_widths).to_numpy(), targets["width"].is_in(test_widths).to_numpy()
        directions |= {Split.WIDTH_TRANSFER.value: (train, test), Split.WIDTH_TRANSFER_REVERSE.value: (test, train)}
    families = sorted(targets["architecture"].unique())
    if len(families) > 1:
        for family in families:
            left_out = (targets["architecture"] == family).to_numpy()
            directions[Split.LEAVE_OUT_PREFIX.of(family)] = (~left_out, left_out)
    return directions


def run(ctx: StudyContext) -> dict:
    """Fit and test every transfer direction; returns counts."""
    study, wh = ctx.study, ctx.warehouse
    fingerprint = fingerprint_to_run(ctx, WIDTH_TRANSFER, input_fingerprint(wh, study.name))
    if fingerprint is None:
        return {"up_to_date": True}
    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    directions = transfer_directions(targets, study.width_transfer.train_widths, study.width_transfer.test_widths)
    if not directions:
        log.info("no width_transfer widths in the spec and a single architecture; nothing to do")
        return {"skipped": True}

    designs, left_out = design_matrices(wh, study, targets["run_id"].to_list())
    if left_out:
        log.warning("not evaluated (features incomplete): %s", ", ".join(left_out))
    results = ctx.fan_out(Work.TRANSFER, [{"feature_set": fs, "k": k, "X": X, "targets": targets,
                                           "directions": directions} for (fs, k), (X, _) in designs.items()],
                          plan_designs(len(designs), targets.height), label=f"transfer designs of {study.name}")
    done, failed = finished_designs(ctx, designs, results)
    frames = [with_unit(r, feature_set=fs, k=k) for (fs, k), r in done]
    for split, (_, tested) in directions.items():
        frames += seed_agreement_rows(targets.filter(pl.Series(tested)), study.predict.k_epochs, split)
    predictions = pl.concat(frames)
    write_results(wh, study.name, list(SPLITS), evaluation_table(predictions, targets), predictions)
    if not failed:
        record_stage(wh, study.name, WIDTH_TRANSFER.stage, fingerprint)
    log.info("transfer %s: %d designs (feature set x k)", sorted(directions), len(done))
    return {"designs": len(done), "splits": sorted(directions), **({"failed": failed} if failed else {})}
