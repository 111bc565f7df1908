"""Replay flow: simulate a finished study's sweep under stopping policies, into `replays`.

    .venv/bin/python -m flows.replay --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]
        [--workers 4] [--orders 20]

W parallel workers replay the recorded per-epoch seconds, runs started in the sweep's order and in
`--orders` seeded random orders, under train-all, i-Epoch, Optuna's pruners, `online` (a predictor
refit on the runs already ended), `transfer` (registered predictors of other studies of the dataset)
and `oracle` (this study's out-of-fold predictions: not deployable); see
pipeline_lib/decisions/replay.py and policies.py. The rows replace the study's rows of `replays`;
the report's Decisions section reads them, and this flow writes the same section to
reports/<study>/replay.md with its figure.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger

from pipeline_lib.decisions.replay import Settings, replay_sweep
from pipeline_lib.report.decisions import replay_section
from pipeline_lib.spec import Study, load_study
from warehouse.db import Warehouse
from warehouse.replays import ReplayError, replay_sweep_inputs, write_replays

from ._cli import run_cli, study_arguments
from ._runtime import open_warehouse
from .report import REPORTS_DIR

FEATURE_SETS = ("all_but_graph", "all")  # online/transfer/oracle: without and with graph features (charged)


def replay_study(wh: Warehouse, study: Study, settings: Settings, progress=None) -> pl.DataFrame:
    """The use case, without Prefect: read the sweep, replay every policy and order, write `replays`."""
    ks = [k for k in study.predict.k_epochs if k in settings.rungs and k < study.epochs]
    sweep = replay_sweep_inputs(wh, study, FEATURE_SETS, ks)
    rows = replay_sweep(sweep, settings, progress)
    write_replays(wh, study.name, rows)
    return rows


@flow(name="replay", log_prints=True)
def replay(spec: str, warehouse: str | None = None, workers: int = Settings.workers,
           random_orders: int = Settings.random_orders, reports_dir: str | None = None) -> dict:
    """Replay and record; returns the headline lines (also in reports/<study>/replay.md)."""
    logger = get_run_logger()
    study = load_study(spec)
    wh = open_warehouse(warehouse, study.execution, study.name)
    settings = Settings(workers=workers, random_orders=random_orders)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            logger.info("replayed %d of %d policy settings x %d orders", done, total, random_orders + 1)

    rows = replay_study(wh, study, settings, progress)
    out_dir = Path(reports_dir or REPORTS_DIR) / study.name
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, headline = replay_section(rows, out_dir)
    (out_dir / "replay.md").write_text("\n".join(lines) + "\n")
    for line in headline:
        logger.info("%s", line)
    logger.info("replay: %s", (out_dir / "replay.md").resolve())
    return {"rows": rows.height, "headline": headline}


def main() -> None:
    parser = study_arguments(__doc__.splitlines()[0], execution=False)
    parser.add_argument("--workers", type=int, default=Settings.workers, help="parallel workers simulated")
    parser.add_argument("--orders", type=int, default=Settings.random_orders, help="seeded random launch orders")
    args = parser.parse_args()
    load_study(args.spec)  # a bad spec, a missing warehouse or bad numbers are refused before Prefect starts
    if not Path(args.warehouse).is_file():
        raise ReplayError(f"warehouse {args.warehouse} does not exist; run the study first (flows.study)")
    if args.workers < 1 or args.orders < 0:
        raise ReplayError("--workers must be >= 1 and --orders >= 0")
    replay(args.spec, args.warehouse, args.workers, args.orders)


if __name__ == "__main__":
    run_cli(main, (ReplayError,))
