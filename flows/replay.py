"""Replay flow: simulate a finished study's sweep under stopping policies, into `replays`.

    .venv/bin/python -m flows.replay --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]
        [--workers 4] [--orders 20]

The stage, and what it replays: stages/replay.py.
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.decisions.replay import Settings
from pipeline_lib.spec import load_study
from stages import replay as stage
from warehouse.replays import ReplayError

from ._orchestration import run_stage, study_context


@flow(name="replay", log_prints=True)
def replay(spec: str, warehouse: str | None = None, workers: int = Settings.workers,
           random_orders: int = Settings.random_orders, reports_dir: str | None = None) -> dict:
    """Replay and record; returns the row count and the headline lines (also in reports/<study>/replay.md)."""
    with study_context(spec, warehouse) as context:
        return run_stage(stage.run, context,
                         {"workers": workers, "random_orders": random_orders, "reports_dir": reports_dir})


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    if args.workers < 1 or args.orders < 0:
        raise ReplayError("--workers must be >= 1 and --orders >= 0")
    check_warehouse("replay", args, load_study(args.spec).name)  # before Prefect starts
    replay(args.spec, args.warehouse, args.workers, args.orders)


if __name__ == "__main__":
    run_cli(main, (ReplayError,))
