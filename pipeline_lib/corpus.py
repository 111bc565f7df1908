"""The corpus: the finished runs of many studies kept as Parquet under corpus_data/, evaluated leave one
study out, and the predictor fitted on all of it that scores runs of a study with no labels of its own.

Tables (one row per run, per run and epoch, per run, k and feature):
  runs.parquet      configuration (RUN_COLUMNS) and outcome (status, final_test_acc)
  curves.parquet    per epoch: train/test loss and accuracy, seconds
  features.parquet  the feature vectors at every k of every base feature set (long: feature, value)
  meta.json         the studies, and `feature_codes`: per base feature set, the digest of the code
                    that computed it (`fingerprints.FEATURES`)
  graphs.parquet    per run and epoch 0..3: the compact rolled graph (`graphs.compact`), for models
                    that learn from the graphs themselves; outside `rows_digest`, so adding or
                    refreshing it refits nothing

Across studies, scales differ (a ResNet's graph is not a LeNet's, digits' accuracies are not
Fashion-MNIST's), so every feature is normalized within its study (`within_study_ranks`: the mid-rank
percentile among the study's runs) and the regression target is the within-study percentile of
final accuracy; good means above the study's median (`prediction.targets.run_targets` per study).
A leave-one-study-out split `loso:<study>` fits on every other study and predicts the held-out one.

A base set whose recorded digest is not this checkout's is stale: a corpus prediction that reads it
is refused (`check_reads`), the others go on with a warning naming it and the command that
refreshes it, in scoring, triage and the replay alike.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import polars as pl
from joblib import Parallel, delayed
from scipy.stats import rankdata

from .features import BASE_SETS, FEATURE_SETS, GRAPH_SETS
from .fingerprints import FEATURES
from .prediction.evaluation import feature_matrix, transfer_predictions, with_unit
from .prediction.metrics import comparison_table, evaluation_table
from .prediction.targets import run_targets
from .vocabulary import FITTED_PREDICTORS, Split, Task

log = logging.getLogger(__name__)
# package data (pyproject.toml): the checkout's folder under an editable install, site-packages' otherwise
SHIPPED_DIR = Path(files(__package__) / "corpus_data")
CORPUS_ENV = "RGP_CORPUS_DIR"  # another corpus (python -m flows.corpus --out), or a directory without one


def corpus_dir() -> Path:
    """Where the corpus and its predictor lie: $RGP_CORPUS_DIR when set, else the one the package ships."""
    return Path(os.environ.get(CORPUS_ENV) or SHIPPED_DIR)
RUN_COLUMNS = ("study", "run_id", "config_id", "dataset", "dataset_subset", "architecture", "width", "depth", "lr",
               "lr_schedule", "label_noise", "dropout", "weight_decay", "optimizer", "batch_size", "seed", "epochs",
               "status", "diverged_epoch", "final_test_acc")
CURVE_COLUMNS = ("run_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
FEATURE_COLUMNS = ("run_id", "k", "feature_set", "feature", "value")
REGENERATE = "make corpus  (python -m flows.corpus: features recomputed, the corpus exported and refitted)"
HEADLINE = {Task.REGRESSION: "kendall_tau", Task.CLASSIFICATION: "balanced_accuracy"}


GRAPHS_FILE = "graphs.parquet"


def read_corpus_graphs(directory: str | Path | None = None):
    """The corpus' compact rolled graphs (a pyarrow Table of `graphs.compact.compact_schema`)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(directory or corpus_dir()) / GRAPHS_FILE)


class CorpusStale(RuntimeError):
    """A corpus prediction would read a base feature set computed by other code than this checkout's."""


@dataclass(frozen=True)
class Corpus:
    runs: pl.DataFrame
    curves: pl.DataFrame
    features: pl.DataFrame
    meta: dict


def feature_codes() -> dict[str, str]:
    """Per base feature set, the digest of this checkout's code that computes it."""
    return {base: FEATURES[base].code() for base in BASE_SETS}


def write_corpus(directory: str | Path, runs: pl.DataFrame, curves: pl.DataFrame, features: pl.DataFrame,
                 meta: dict) -> None:
    """Write the three tables (zstd Parquet; feature values as float32, what the corpus needs to fit)
    and meta.json with each base set's code digest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    runs.select(RUN_COLUMNS).sort("study", "run_id").write_parquet(directory / "runs.parquet", compression="zstd")
    curves.select(CURVE_COLUMNS).sort("run_id", "epoch").write_parquet(directory / "curves.parquet", compression="zstd")
    (features.select(FEATURE_COLUMNS).with_columns(pl.col("value").cast(pl.Float32))
     .sort("feature_set", "feature", "k", "run_id")
     .write_parquet(directory / "features.parquet", compression="zstd", compression_level=19))
    (directory / "meta.json").write_text(json.dumps({**meta, "feature_codes": feature_codes()}, indent=1) + "\n")


def read_corpus(directory: str | Path | None = None) -> Corpus:
    directory = Path(directory or corpus_dir())
    return Corpus(pl.read_parquet(directory / "runs.parquet"), pl.read_parquet(directory / "curves.parquet"),
                  pl.read_parquet(directory / "features.parquet").with_columns(pl.col("value").cast(pl.Float64)),
                  json.loads((directory / "meta.json").read_text()))


def stale_sets(recorded: dict[str, str]) -> list[str]:
    """The base sets whose `recorded` code digest (a corpus' or its predictor's `feature_codes`) is not
    this checkout's; a set recorded by no digest is stale too."""
    current = feature_codes()
    return [base for base in BASE_SETS if recorded.get(base) != current[base]]


def stale_message(sets: list[str]) -> str:
    return (f"the corpus' feature set(s) {', '.join(sets)} were computed by other code than this checkout's "
            f"(stale); refresh them:\n  {REGENERATE}")


def check_reads(recorded: dict[str, str], feature_set: str) -> None:
    """CorpusStale, naming the stale base sets and the command, when a corpus prediction on
    `feature_set` would read one; a stale set it does not read is only a logged warning."""
    stale = stale_sets(recorded)
    if read := [base for base in stale if base in FEATURE_SETS[feature_set]]:
        raise CorpusStale(f"{feature_set} reads stale corpus features: {stale_message(read)}")
    if stale:
        log.warning("%s (%s reads none of them)", stale_message(stale), feature_set)


def corpus_targets(runs: pl.DataFrame, good_quantile: float = 0.5) -> pl.DataFrame:
    """Per finished run: study, run_id, `config_id` qualified by its study (folds and bootstrap group
    configurations), `final_acc` (diverged = chance), `percentile` (mid-rank of final_acc within
    its study, in (0, 1)) and `good` (above its study's quantile)."""
    frames = []
    for study, study_runs in runs.group_by("study", maintain_order=True):
        targets = run_targets(study_runs, good_quantile)
        frames.append(targets.with_columns(
            pl.lit(study[0]).alias("study"), pl.format("{}/{}", pl.lit(study[0]), "config_id").alias("config_id"),
            pl.Series("percentile", _percentiles(targets["final_acc"].to_numpy()[:, None])[:, 0])))
    return pl.concat(frames).sort("study", "run_id")


def _percentiles(X: np.ndarray) -> np.ndarray:
    """Per column, the mid-rank percentile (rank - 1/2) / n among its non-NaN values; NaN stays NaN."""
    ranks = rankdata(X, axis=0, nan_policy="omit")
    counts = np.isfinite(X).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ranks - 0.5) / counts


def within_study_ranks(X: np.ndarray, studies: np.ndarray) -> np.ndarray:
    """Every column normalized within each study: the runs' mid-rank percentiles there."""
    out = np.full(X.shape, np.nan)
    for study in np.unique(studies):
        rows = studies == study
        out[rows] = _percentiles(X[rows])
    return out


def corpus_designs(corpus: Corpus, targets: pl.DataFrame, ks: list[int] | None = None,
                   feature_sets: list[str] | None = None) -> dict[tuple[str, int], tuple[np.ndarray, list[str]]]:
    """{(feature_set, k): (within-study normalized matrix with one row per target run, columns)} for
    every feature set (of `feature_sets`, default all) whose base sets every target run has."""
    run_ids, studies = targets["run_id"].to_list(), targets["study"].to_numpy()
    ks = ks or sorted(corpus.features["k"].unique().to_list())
    designs = {}
    for k in ks:
        at_k = corpus.features.filter(pl.col("k") == k)
        for name, bases in ((name, FEATURE_SETS[name]) for name in feature_sets or FEATURE_SETS):
            rows = at_k.filter(pl.col("feature_set").is_in(bases))
            if any(set(run_ids) - set(rows.filter(pl.col("feature_set") == b)["run_id"]) for b in bases):
                continue
            X, columns = feature_matrix(rows, run_ids)
            designs[(name, k)] = within_study_ranks(X, studies), columns
    return designs


def regression_view(targets: pl.DataFrame) -> pl.DataFrame:
    """The targets as the evaluation functions read them: the regression target is the column
    final_acc, which here holds the within-study percentile."""
    return targets.with_columns(pl.col("percentile").alias("final_acc"))


def _held_out(feature_set: str, k: int, X: np.ndarray, view: pl.DataFrame, predictors: tuple[str, ...]
              ) -> list[pl.DataFrame]:
    studies = view["study"].to_numpy()
    frames = []
    for held_out in sorted(set(studies)):
        test = studies == held_out
        for task in Task:
            for predictor in predictors:
                made = transfer_predictions(task, predictor, X, view, ~test, test)
                frames.append(with_unit(made, task=task, predictor=predictor, feature_set=feature_set, k=k,
                                        split=Split.LOSO_PREFIX.of(held_out)))
    return frames


def loso_predictions(designs: dict, targets: pl.DataFrame, predictors: tuple[str, ...] = tuple(FITTED_PREDICTORS),
                     n_jobs: int = 1) -> pl.DataFrame:
    """Every held-out study predicted by models fitted on all the others, for every design, task and
    predictor; split `loso:<study>`. One joblib task per design (`n_jobs` processes)."""
    view = regression_view(targets)
    per_design = Parallel(n_jobs=n_jobs)(delayed(_held_out)(feature_set, k, X, view, predictors)
                                         for (feature_set, k), (X, _) in designs.items())
    return pl.concat([frame for frames in per_design for frame in frames])


def loso_evaluation(predictions: pl.DataFrame, targets: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(evaluations, comparisons) per held-out study, and of all held-out predictions pooled (split
    `loso`: within-study percentiles are on one scale). Comparisons: every graph set against the best
    non-graph set of its (task, predictor, k), best by the mean headline metric over held-out studies
    (a choice made on these same predictions, which favours the baseline)."""
    pooled = predictions.with_columns(pl.lit(Split.LOSO.value).alias("split"))
    both = pl.concat([predictions, pooled])
    evaluations = evaluation_table(both, targets)
    best = (evaluations.filter((pl.col("split") != Split.LOSO) & ~pl.col("feature_set").is_in(list(GRAPH_SETS))
                               & (pl.col("metric") == pl.col("task").replace_strict(HEADLINE)))
            .group_by("task", "predictor", "k", "feature_set").agg(pl.col("value").mean())
            .sort("value", "feature_set", descending=[True, False])
            .group_by("task", "predictor", "k", maintain_order=True).first()
            .select("task", "predictor", "k", pl.col("feature_set").alias("baseline")))
    frames = []
    for task, predictor, k, baseline in best.iter_rows():
        sets = [baseline, *GRAPH_SETS]
        unit = both.filter((pl.col("task") == task) & (pl.col("predictor") == predictor) & (pl.col("k") == k)
                           & pl.col("feature_set").is_in(sets))
        compared = comparison_table(unit, targets)
        frames.append(compared.filter(pl.col("feature_set").is_in(list(GRAPH_SETS)) & (pl.col("baseline") == baseline)))
    return evaluations, pl.concat(frames)


def curve_crossing(corpus: Corpus) -> pl.DataFrame:
    """Per study: runs, configurations and Kendall tau between test accuracy at epoch 1 and the final
    outcome (diverged = chance; a run diverged before epoch 1 counts chance there too). Near 1, the
    epoch-1 ranking is already the final one; at most 0.5, curves cross."""
    from scipy.stats import kendalltau

    targets = corpus_targets(corpus.runs)
    at_1 = corpus.curves.filter(pl.col("epoch") == 1).select("run_id", pl.col("test_acc").alias("acc_at_1"))
    joined = targets.join(at_1, on="run_id", how="left").with_columns(pl.col("acc_at_1").fill_null(0.1))
    rows = []
    for (study,), group in joined.group_by("study", maintain_order=True):
        rows.append({"study": study, "runs": group.height, "configurations": group["config_id"].n_unique(),
                     "tau_acc1_final": float(kendalltau(group["acc_at_1"], group["final_acc"]).statistic)})
    return pl.DataFrame(rows).sort("study")
