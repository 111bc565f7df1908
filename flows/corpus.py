"""Corpus command: train the corpus and held-out studies, export the corpus, fit the corpus predictor
leave-one-study-out, and compare it with test accuracy on every study it never saw.

    .venv/bin/python -m flows.corpus [--no-train] [--study NAME ...] [--jobs 2]

Specs: specs/corpus/ (the corpus) and specs/heldout/ (never in it); one warehouse per study under
warehouse/corpus/; the corpus and its predictor under pipeline_lib/corpus_data/ (`make corpus`).
Every step skips what is done, so on an up-to-date corpus it changes nothing. The stages:
stages/corpus.py. It runs in this process on the in-process orchestration (stages/local.py): a
maintainer's job of hours, not a flow a deployment schedules.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flows.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-specs", default=str(ROOT / "specs" / "corpus"), help="default: %(default)s")
    parser.add_argument("--heldout-specs", default=str(ROOT / "specs" / "heldout"), help="default: %(default)s")
    parser.add_argument("--warehouses", default=str(ROOT / "warehouse" / "corpus"), help="default: %(default)s")
    parser.add_argument("--out", help="the corpus folder (default: the shipped one, or $RGP_CORPUS_DIR)")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="export, fit and compare what the warehouses and the committed corpus hold")
    parser.add_argument("--study", action="append", default=[], help="train only this spec (its file stem); repeatable")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the leave-one-study-out fits")
    # linear only by default: the shipped predictor is fitted so (hgb's LOSO fits take far longer on 2 cores)
    parser.add_argument("--predictors", nargs="+", default=["linear"], choices=["linear", "hgb"],
                        help="models fitted leave one study out (default: %(default)s)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    from pipeline_lib.corpus import corpus_dir
    from stages.corpus import CorpusPlan, run

    from ._in_process import log_to_terminal

    log_to_terminal()
    plan = CorpusPlan(Path(args.corpus_specs), Path(args.heldout_specs), Path(args.warehouses),
                      Path(args.out) if args.out else corpus_dir(), jobs=args.jobs, train=args.train,
                      predictors=tuple(args.predictors), studies=args.study)
    for folder in (plan.corpus_specs, plan.heldout_specs):
        if not folder.is_dir():
            print(f"error: spec folder {folder} does not exist", file=sys.stderr)
            sys.exit(2)
    print(run(plan))


if __name__ == "__main__":
    arguments = parse_arguments()  # --help and usage errors before the heavy imports below
    from pipeline_lib.corpus import CorpusStale

    from ._cli import run_cli

    run_cli(lambda: main(arguments), user_errors=(CorpusStale,))
