"""The pipeline's words: run statuses, prediction tasks, predictors, splits, triage decisions, cost
strategies, and the datasets' facts.

Every module names these values from here (StrEnum: they stay plain strings in DuckDB and Polars);
the warehouse refuses any other value (CHECK constraints, schema/012_vocabulary.sql and
013_decision_vocabulary.sql, which must list the same values: tests/test_vocabulary.py holds the
two together). No torch, no pydantic.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run stands: in `runs.status`, and (RUNNING and the ENDED ones) in its state file (`run_state`)."""

    PENDING = "pending"      # planned, not trained yet
    RUNNING = "running"      # trained part of the way (state file only)
    COMPLETED = "completed"  # trained to its last epoch
    DIVERGED = "diverged"    # its weights or losses stopped being numbers
    STOPPED = "stopped"      # ended early by a decision on its predicted outcome
    FAILED = "failed"        # training raised an error (runs.error says which)


FINISHED = (RunStatus.COMPLETED, RunStatus.DIVERGED)  # runs with an outcome to predict
ENDED = (*FINISHED, RunStatus.STOPPED)  # runs that train no further (their state file holds only the result)


class Task(StrEnum):
    """What is predicted of a run (pipeline_lib/prediction/targets.py)."""

    REGRESSION = "regression"          # its final test accuracy
    CLASSIFICATION = "classification"  # whether it is a good run


class Predictor(StrEnum):
    """Who predicts: a fitted model, or the other seeds of the run's configuration (the noise ceiling)."""

    LINEAR = "linear"
    HGB = "hgb"
    OTHER_SEEDS = "other_seeds"


FITTED_PREDICTORS = (Predictor.LINEAR, Predictor.HGB)
SEED_AGREEMENT = "seed_agreement"  # the feature set of Predictor.OTHER_SEEDS' rows: it reads no features


class Split(StrEnum):
    """How a prediction was held out. Per-architecture splits add `:<architecture>` to a prefix."""

    CV = "cv"                                         # grouped k-fold by configuration
    WIDTH_TRANSFER = "width_transfer"                 # fit on train_widths, test on test_widths
    WIDTH_TRANSFER_REVERSE = "width_transfer_reverse"  # the other way round
    CV_PREFIX = "cv:"                                 # cv:<architecture>: the cv predictions of one family
    LEAVE_OUT_PREFIX = "leave_out:"                   # leave_out:<architecture>: fit on the other families
    # The corpus' splits (pipeline_lib/corpus.py); kept in corpus_data/*.parquet, never in a warehouse.
    LOSO_PREFIX = "loso:"                             # loso:<study>: fit on the other studies of the corpus
    LOSO = "loso"                                     # every held-out study's predictions pooled

    def of(self, architecture: str) -> str:
        """The split of a prefix for one architecture (or study), e.g. Split.LEAVE_OUT_PREFIX.of('vgg') = 'leave_out:vgg'."""
        if not self.endswith(":"):
            raise ValueError(f"split {self.value!r} is not a prefix")
        return f"{self}{architecture}"


class Decision(StrEnum):
    """What triage decided for a run at its epoch (`triage_decisions.decision`)."""

    KEEP = "keep"  # trained to the end
    STOP = "stop"  # ended as RunStatus.STOPPED


class CostStrategy(StrEnum):
    """A way to spend compute on a study, priced in `costs.strategy`."""

    TRAIN_ALL = "train_all"                      # every run to its last epoch (the reference)
    EARLY_STOPPING = "early_stopping"            # runs stopped by patience on test accuracy
    PREDICT_THEN_FINISH = "predict_then_finish"  # every run to epoch k, then only the predicted good ones
    DECISION_PATH = "decision_path"              # graph work for just what a registered predictor reads
    GRAPH_STAGE = "graph_stage"                  # every graph property on the same snapshots
    TRIAGE = "triage"                            # a triaged study: training done plus its decisions' work


@dataclass(frozen=True)
class DatasetFacts:
    """What the pipeline knows of a dataset without loading it."""

    channels: int
    image_size: int
    classes: int
    train_images: int  # of the full dataset, for estimating a run's cost
    test_images: int

    @property
    def chance_accuracy(self) -> float:
        """The accuracy a diverged run counts as (pipeline_lib/prediction/targets.py)."""
        return 1.0 / self.classes


DATASETS: dict[str, DatasetFacts] = {
    "digits": DatasetFacts(channels=1, image_size=8, classes=10, train_images=1347, test_images=450),
    "fashion_mnist": DatasetFacts(channels=1, image_size=28, classes=10, train_images=60000, test_images=10000),
    "cifar10": DatasetFacts(channels=3, image_size=32, classes=10, train_images=50000, test_images=10000),
    "svhn": DatasetFacts(channels=3, image_size=32, classes=10, train_images=73257, test_images=26032),
}
