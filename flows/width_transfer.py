"""Transfer flow (RQ2): fit on some widths and predict others, both ways, and leave one
architecture out.

    python -m flows.width_transfer --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

split width_transfer: fit on every run of width_transfer.train_widths, test on every run of
test_widths; width_transfer_reverse: the other way round. A configuration appears on both sides
at different widths: the question is whether what was learnt on narrow networks holds for wide
ones. leave_out:<architecture> (studies of two or more families): fit on the other families,
test on that one. Same feature sets, predictors and pooled metrics with configuration-bootstrap
intervals as the cross-validation, and the seed agreement of the test runs beside them. Skipped
when its inputs have not changed.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

import numpy as np
import polars as pl
from prefect import flow, get_run_logger

from pipeline_lib.prediction.evaluation import seed_agreement_rows, with_unit
from pipeline_lib.prediction.metrics import evaluation_table
from pipeline_lib.placement import plan_designs
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import ExecutionSpec
from pipeline_lib.vocabulary import Split
from tasks.predict import set_numeric_threads, transfer_task
from warehouse.predict import design_matrices, record_stage, study_runs, write_results

from ._fanout import fan_out
from ._prediction import finished_designs, open_stage

STAGE = "width_transfer"
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


@flow(name="width-transfer", log_prints=True)
def width_transfer(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None) -> dict:
    """Fit and test every transfer direction; returns counts. `execution` overrides the spec's."""
    logger = get_run_logger()
    study, wh, fingerprint = open_stage(spec, warehouse, STAGE, execution=execution)
    if fingerprint is None:
        return {"up_to_date": True}
    targets = run_targets(study_runs(wh, study.name), study.predict.good_run_quantile)
    directions = transfer_directions(targets, study.width_transfer.train_widths, study.width_transfer.test_widths)
    if not directions:
        logger.info("no width_transfer widths in the spec and a single architecture; nothing to do")
        return {"skipped": True}

    designs, left_out = design_matrices(wh, study, targets["run_id"].to_list())
    if left_out:
        logger.warning("not evaluated (features incomplete): %s", ", ".join(left_out))
    results = fan_out(transfer_task, [{"feature_set": fs, "k": k, "X": X, "targets": targets,
                                       "directions": directions} for (fs, k), (X, _) in designs.items()],
                      execution or study.execution, plan_designs(len(designs), targets.height), stage="prediction",
                      label=f"transfer designs of {study.name}", initializer=set_numeric_threads)
    done, failed = finished_designs(designs, results, logger)
    frames = [with_unit(r, feature_set=fs, k=k) for (fs, k), r in done]
    for split, (_, tested) in directions.items():
        frames += seed_agreement_rows(targets.filter(pl.Series(tested)), study.predict.k_epochs, split)
    predictions = pl.concat(frames)
    write_results(wh, study.name, list(SPLITS), evaluation_table(predictions, targets), predictions)
    if not failed:
        record_stage(wh, study.name, STAGE, fingerprint)
    logger.info("transfer %s: %d designs (feature set x k)", sorted(directions), len(done))
    return {"designs": len(done), "splits": sorted(directions), **({"failed": failed} if failed else {})}


if __name__ == "__main__":
    run_warehouse_stage(width_transfer, __spec__.name, __doc__)
