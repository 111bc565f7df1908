"""Leave-one-study-out evaluation of the corpus and the corpus predictor fitted on all of it.

    .venv/bin/python scripts/corpus_predictor.py [--corpus corpus] [--predictors linear hgb] [--refit]

Reads the committed corpus (refusing one made by other feature code), predicts every study from
models fitted on the others for every feature set, k, task and model (split loso:<study>; pipeline_lib/corpus.py),
writes corpus/loso_evaluations.parquet and corpus/loso_comparisons.parquet, fits the predictor of
best mean LOSO tau at every k on the whole corpus and writes it with its card under corpus/predictor/
(pipeline_lib/decisions/corpus.py). With --refit, only the predictor is fitted again, from the stored
LOSO results (after a change of the prediction code, which a saved predictor must match).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import polars as pl
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.corpus import (CorpusStale, corpus_dir, check_current, corpus_designs, corpus_targets,  # noqa: E402
                                 loso_evaluation, loso_predictions, read_corpus)
from pipeline_lib.decisions.corpus import fit_corpus_predictors, write_model_card  # noqa: E402
from pipeline_lib.vocabulary import FITTED_PREDICTORS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(corpus_dir()))
    parser.add_argument("--predictors", nargs="+", default=list(FITTED_PREDICTORS), choices=list(FITTED_PREDICTORS))
    parser.add_argument("--jobs", type=int, default=2, help="processes for the LOSO fits (default: %(default)s)")
    parser.add_argument("--refit", action="store_true", help="fit the predictor again from the stored LOSO results")
    args = parser.parse_args()
    directory = Path(args.corpus)
    corpus = read_corpus(directory)
    try:
        check_current(corpus)
    except CorpusStale as e:
        raise SystemExit(f"error: {e}") from None
    start = time.perf_counter()
    with threadpool_limits(1):
        targets = corpus_targets(corpus.runs)
        designs = corpus_designs(corpus, targets)
        if args.refit:
            predictions = pl.read_parquet(directory / "loso_predictions.parquet")
            evaluations = pl.read_parquet(directory / "loso_evaluations.parquet")
        else:
            predictions = loso_predictions(designs, targets, tuple(args.predictors), args.jobs)
            print(f"{predictions.height} held-out predictions in {time.perf_counter() - start:.0f} s", flush=True)
            evaluations, comparisons = loso_evaluation(predictions, targets)
            evaluations.write_parquet(directory / "loso_evaluations.parquet", compression="zstd")
            comparisons.write_parquet(directory / "loso_comparisons.parquet", compression="zstd")
            predictions.write_parquet(directory / "loso_predictions.parquet", compression="zstd")
    with threadpool_limits(1):
        card = fit_corpus_predictors(designs, targets, corpus.runs, corpus.curves, evaluations, predictions,
                                     corpus.meta["studies"], directory / "predictor")
    write_model_card(card, directory / "predictor")
    print(f"evaluated and fitted in {time.perf_counter() - start:.0f} s; predictor card: {directory / 'predictor'}")


if __name__ == "__main__":
    main()
