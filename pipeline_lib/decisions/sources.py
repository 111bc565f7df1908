"""Where a decision's scores come from: one type (`ScoreSource`) for scoring, triage, the replay's
transfer, the API and the pruners, in three kinds: a predictor registered in a study's warehouse
(`RegisteredSource`), the corpus predictor shipped with the project (`CorpusSource`), and the test
accuracy at the rung (`AccuracySource`, the i-Epoch rule).

A source declares what it reads (base feature sets, the graph node properties its fitted selection
keeps, the least number of runs it ranks together, whether it gives P(good)), so that callers compute
only that and branch on nothing else; `check(runs)` refuses runs it cannot score before anything
trains; `score` returns run_id, predicted, low, high and p_good. A fitted source loads each of its
files once, when first needed, and keeps it: a triage rung reads each file once.
"""
from __future__ import annotations

import copy
from functools import cached_property

import numpy as np
import polars as pl
from sklearn.pipeline import Pipeline

from pipeline_lib.features import FEATURE_SETS, GRAPH_BASE_SETS

from . import corpus, registry
from .path_cost import columns_used, properties_read
from .scoring import ScoringError, check_compatible, design_matrix
from .study_match import Mismatch
from .uncertainty import calibrated, conformal_intervals

SCORES_SCHEMA = {"run_id": pl.Utf8, "predicted": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                 "p_good": pl.Float64}
ACCURACY_FEATURE = "test_acc@k"  # early_acc's column: the test accuracy at k


class ScoreSource:
    """What every source has; `reason` and `mismatches` say why it was chosen (logged and recorded)."""

    kind: str                 # registered | corpus | accuracy, as triage records it
    row: dict | None = None   # the registry's keys of a fitted predictor (None: accuracy)
    study: str | None = None  # the one study it was fitted on, to compare a study with (None: none)
    min_cohort: int = 1       # the least number of runs it ranks together
    reason: str = ""
    mismatches: tuple[Mismatch, ...] = ()

    @property
    def id(self) -> str | None:
        return None if self.row is None else self.row["id"]

    @property
    def name(self) -> str:
        return f"predictor {self.id}"

    @property
    def k(self) -> int:
        return int(self.row["k"])

    @property
    def feature_set(self) -> str:
        return self.row["feature_set"]

    @property
    def feature_sets(self) -> tuple[str, ...]:
        """The base feature sets it reads at k (only these are computed)."""
        return FEATURE_SETS[self.feature_set]

    @property
    def reads_graphs(self) -> bool:
        return bool(set(self.feature_sets) & set(GRAPH_BASE_SETS))

    @property
    def graph_properties(self) -> tuple[str, ...] | None:
        """The node properties its graphs need, or None when it reads no graph set (no graph to compute)."""
        return None

    @property
    def has_p_good(self) -> bool:
        return False

    def chosen(self, reason: str, mismatches: tuple[Mismatch, ...] = ()) -> ScoreSource:
        """This source (its loaded files shared) with why it was chosen and how its study differs."""
        out = copy.copy(self)
        out.reason, out.mismatches = reason, tuple(mismatches)
        return out

    def check(self, runs: pl.DataFrame) -> None:
        """Refuse runs (dataset, architecture) it cannot score, whatever their number (callers compare
        that with `min_cohort`); ScoringError, RegistryError or CorpusStale saying what to do."""

    def score(self, features: pl.DataFrame, run_ids: list[str], confidence: float) -> pl.DataFrame:
        """Scores of `run_ids` from their long feature rows (run_id, feature, value) of `feature_sets`
        at k: run_id, predicted, low and high (at `confidence`), p_good (NULL where it has none)."""
        raise NotImplementedError

    def p_good_refusal(self, threshold: float) -> str:
        """Why keeping by P(good) >= `threshold` cannot work with this source (it has no P(good))."""
        return (f"triage.keep {{p_good: {threshold}}} needs a calibrated classification twin of predictor {self.id} "
                f"(study {self.row['study']}, {self.feature_set}, k = {self.k}); none is registered: keep a fraction "
                "or a number of runs instead")


class AccuracySource(ScoreSource):
    """The test accuracy at the rung (the i-Epoch rule): no predictor, no interval, no P(good)."""

    kind = "accuracy"
    name = "test accuracy at the rung"

    def __init__(self, k: int, reason: str = "", mismatches: tuple[Mismatch, ...] = ()):
        self._k, self.reason, self.mismatches = k, reason, tuple(mismatches)

    @property
    def k(self) -> int:
        return self._k

    @property
    def feature_set(self) -> str:
        return "early_acc"

    def score(self, features: pl.DataFrame, run_ids: list[str], confidence: float) -> pl.DataFrame:
        accuracy = design_matrix(features, run_ids, [ACCURACY_FEATURE])[:, 0]
        return pl.DataFrame({"run_id": run_ids, "predicted": accuracy}).with_columns(
            low=None, high=None, p_good=None).cast(SCORES_SCHEMA)

    def p_good_refusal(self, threshold: float) -> str:
        return (f"triage.keep {{p_good: {threshold}}} needs a predictor with a calibrated classification twin, but at "
                f"epoch {self.k} {self.reason}; keep a fraction or a number of runs instead")


class _Fitted(ScoreSource):
    """A fitted regression predictor (`row`) and, when it has one, its classification twin (P(good))."""

    twin_row: dict | None = None  # the twin's features and calibration

    @cached_property
    def model(self) -> Pipeline:
        raise NotImplementedError

    @cached_property
    def twin_model(self) -> Pipeline | None:
        raise NotImplementedError

    @property
    def has_p_good(self) -> bool:
        return self.twin_row is not None and bool(self.twin_row["calibration"])

    @property
    def graph_properties(self) -> tuple[str, ...] | None:
        """Those behind the columns its selection (and its twin's, which P(good) reads) keeps."""
        if not self.reads_graphs:
            return None
        read = columns_used(self.model, self.row["features"])
        if self.twin_row is not None:
            read += columns_used(self.twin_model, self.twin_row["features"])
        return properties_read(read)

    def _residuals(self) -> np.ndarray:
        if not self.row["oof_residuals"]:
            raise ScoringError(f"predictor {self.id} has no out-of-fold residuals to build intervals from; run the "
                               f"evaluate stage of study {self.row['study']}, then register again")
        return np.asarray(self.row["oof_residuals"])

    def _design(self, features: pl.DataFrame, run_ids: list[str]) -> np.ndarray:
        return design_matrix(features, run_ids, self.row["features"])

    def score(self, features: pl.DataFrame, run_ids: list[str], confidence: float) -> pl.DataFrame:
        residuals = self._residuals()
        X = self._design(features, run_ids)
        predicted = self.model.predict(X)
        interval = conformal_intervals(residuals, predicted, confidence)
        p_good = np.full(len(run_ids), np.nan)
        if self.has_p_good:
            classifier = self.twin_model
            raw = classifier.predict_proba(X)[:, list(classifier.classes_).index(1.0)]
            p_good = calibrated(raw, self.twin_row["calibration"])
        return pl.DataFrame({"run_id": run_ids, "predicted": predicted, "low": interval[:, 0],
                             "high": interval[:, 1], "p_good": p_good}).with_columns(
            pl.col("p_good").fill_nan(None)).cast(SCORES_SCHEMA)


class RegisteredSource(_Fitted):
    """A predictor registered in a study's warehouse (`warehouse.registry.registered_source` reads
    its row and its twin's)."""

    kind = "registered"

    def __init__(self, row: dict, twin: dict | None = None, reason: str = "",
                 mismatches: tuple[Mismatch, ...] = ()):
        self.row, self.twin_row, self.reason, self.mismatches = row, twin, reason, tuple(mismatches)
        self.study = row["study"]

    @cached_property
    def model(self) -> Pipeline:
        return registry.load(self.row["path"], self.row["file_digest"], self.row["code_digest"])

    @cached_property
    def twin_model(self) -> Pipeline | None:
        twin = self.twin_row
        return None if twin is None else registry.load(twin["path"], twin["file_digest"], twin["code_digest"])

    def check(self, runs: pl.DataFrame) -> None:
        check_compatible(runs, self.row)
        self._residuals()
        self.model  # noqa: B018 (loads it: RegistryError when its file, code or libraries changed)


class CorpusSource(_Fitted):
    """The corpus predictor at one k (`row`: `corpus.predictor_row`): it ranks the runs of one study
    scored together, normalized among them (its input contract), and at least corpus.MIN_RUNS."""

    kind = "corpus"
    min_cohort = corpus.MIN_RUNS
    name = "the corpus predictor"

    def __init__(self, row: dict, reason: str = "", mismatches: tuple[Mismatch, ...] = ()):
        self.row, self.twin_row, self.reason, self.mismatches = row, row, reason, tuple(mismatches)

    @cached_property
    def model(self) -> Pipeline:
        return corpus.load_model(self.row)

    @cached_property
    def twin_model(self) -> Pipeline:
        return corpus.load_twin(self.row)

    def check(self, runs: pl.DataFrame) -> None:
        corpus.check_runs(runs, self.row)
        self.model  # noqa: B018 (loads it: RegistryError naming the remedy for a shipped file)

    def _design(self, features: pl.DataFrame, run_ids: list[str]) -> np.ndarray:
        return corpus.normalize(super()._design(features, run_ids))


def named_corpus(which: str, k: int) -> CorpusSource | None:
    """The corpus predictor when `which` names it (`corpus`: at epoch k; `corpus-k<k>`: its id), else
    None; ScoringError if none is fitted at that k, CorpusStale if it reads a stale base set."""
    if not is_corpus(which):
        return None
    return CorpusSource(corpus.predictor_row(k if which == corpus.CORPUS else int(which.removeprefix(
        f"{corpus.CORPUS}-k"))))


def is_corpus(which: str) -> bool:
    """Whether a predictor name or id means the corpus predictor (`corpus`, `corpus-k<k>`)."""
    return which == corpus.CORPUS or which.startswith(f"{corpus.CORPUS}-k")
