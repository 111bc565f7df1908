"""Replay a finished Optuna study: race the stopping policies that read curves alone on its trials.

    .venv/bin/python -m flows.replay_optuna --storage sqlite:///optuna.db [--study NAME]
        [--workers 4] [--orders 20] [--out reports/optuna-<study>]

Reads the intermediate values that `trial.report(value, step)` stored (pipeline_lib/decisions/
optuna_study.py), replays train-all, i-Epoch, Optuna's pruners and the synchronous triage by
accuracy over the trials' order and seeded random orders with W workers (pipeline_lib/decisions/
replay.py), and writes replay.md with its figure. It needs no spec and no warehouse, and runs in
this process without Prefect.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flows.replay_optuna", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="an Optuna storage URL, e.g. sqlite:///optuna.db")
    parser.add_argument("--study", help="the study's name (default: the storage's only study)")
    parser.add_argument("--workers", type=int, default=4, help="parallel workers replayed (default: %(default)s)")
    parser.add_argument("--orders", type=int, default=20, help="seeded random orders besides the trials' own "
                                                               "(default: %(default)s)")
    parser.add_argument("--out", help="folder of replay.md (default: reports/optuna-<study>)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.orders < 0:
        parser.error("--workers must be >= 1 and --orders >= 0")
    return args


def main(args: argparse.Namespace) -> None:
    from pipeline_lib.decisions.optuna_study import load, sweep_of
    from pipeline_lib.decisions.replay import Settings, replay_sweep
    from pipeline_lib.report.decisions import replay_section

    replayed = sweep_of(load(args.storage, args.study))
    curves = replayed.sweep.curves
    left_out = ", ".join(f"{n} {state.lower()}" for state, n in replayed.left_out.items())
    print(f"study {replayed.name} ({replayed.direction}): {len(curves.run_ids)} complete trials of up to "
          f"{curves.epochs} steps replayed" + (f"; left out (no final value): {left_out}" if left_out else ""),
          file=sys.stderr)
    rows = replay_sweep(replayed.sweep, Settings(workers=args.workers, random_orders=args.orders))
    out = Path(args.out or Path("reports") / f"optuna-{replayed.name}")
    out.mkdir(parents=True, exist_ok=True)
    lines, headline = replay_section(rows, out)
    rows.write_parquet(out / "replays.parquet")
    (out / "replay.md").write_text("\n".join(lines) + "\n")
    print("\n".join(headline))
    print(f"replay: {(out / 'replay.md').resolve()}")


if __name__ == "__main__":
    arguments = parse_arguments()  # --help and usage errors before the heavy imports below
    from pipeline_lib.decisions.optuna_study import OptunaStudyError

    from ._cli import run_cli

    run_cli(lambda: main(arguments), user_errors=(OptunaStudyError,))
