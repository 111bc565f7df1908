"""Study specs: the YAML a user writes, validated, and the runs it expands to.

A `Study` is validated with pydantic (unknown keys are errors). `expand_runs` draws the
hyper-parameter configurations deterministically from the spec and crosses them with
architectures x widths x seeds; every `RunConfig` has a stable `run_id` derived from its full
configuration, so re-running a study never duplicates a run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Literal, Union

import yaml
from scipy.stats import qmc
from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from .decisions.keep import kept_count
from .vocabulary import DATASETS

Architecture = Literal["lenet", "vgg", "alexnet", "resnet"]
DatasetName = Literal[tuple(DATASETS)]  # the names of the dataset facts table
Optimizer = Literal["sgd", "adam"]
TrainMetrics = Literal["epoch", "exact"]  # how training loss/accuracy are taken: `training` module docstring
# node properties of a rolled graph (graphs/properties.py)
GraphProperty = Literal["in_strength", "out_strength", "strength", "eigenvector", "pagerank", "katz", "hub", "authority",
                        "closeness", "betweenness"]
MIN_CONFIGURATIONS = 2  # grouped cross-validation holds out whole configurations: it needs two
MAX_RUNS = 20_000  # runs one study may expand to: each is a folder of snapshots and a state file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogUniform(_Strict):
    log_uniform: tuple[float, float]

    @field_validator("log_uniform")
    @classmethod
    def _positive_ordered(cls, v):
        lo, hi = v
        if not (0 < lo <= hi):
            raise ValueError("log_uniform needs 0 < low <= high")
        return v

    def at(self, u: float) -> float:
        """The value at quantile u in [0, 1)."""
        lo, hi = self.log_uniform
        return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))


class Uniform(_Strict):
    uniform: tuple[float, float]

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, v):
        if v[0] > v[1]:
            raise ValueError("uniform needs low <= high")
        return v

    def at(self, u: float) -> float:
        """The value at quantile u in [0, 1)."""
        lo, hi = self.uniform
        return float(lo + u * (hi - lo))


def _value_at(dimension, u: float):
    """A dimension's value at quantile u: a list is cut into equal strata, one per value."""
    if isinstance(dimension, list):
        return dimension[min(int(u * len(dimension)), len(dimension) - 1)]
    return dimension.at(u)


FloatDimension = Union[list[float], LogUniform, Uniform]


def _bounds(dimension) -> tuple[float, float]:
    """The smallest and largest value a dimension can give."""
    if isinstance(dimension, list):
        return min(dimension), max(dimension)
    return tuple(dimension.log_uniform if isinstance(dimension, LogUniform) else dimension.uniform)


ScheduleKind = Literal["constant", "cosine", "step", "warmup_cosine"]
SCHEDULE_PARAMETERS = {"constant": {}, "cosine": {}, "step": {"step_size": None, "gamma": 0.1},
                       "warmup_cosine": {"warmup_epochs": 1}}  # per kind: its parameters and their defaults


class LrSchedule(_Strict):
    """How the learning rate changes over epochs: the run's `lr` times `factor(epoch, epochs)`.

    Per epoch, not per step: the factor is a closed form of the epoch, so a resumed run (or one
    moved between the single and the stacked trainer) needs no scheduler state, and runs of one
    stack may follow different schedules. The values equal torch.optim.lr_scheduler's stepped once
    per epoch (tests/test_lr_schedule.py):
      constant        1                                    (ConstantLR with factor 1)
      cosine          (1 + cos(pi (e-1) / E)) / 2          (CosineAnnealingLR, T_max = E)
      step            gamma ** floor((e-1) / step_size)    (StepLR)
      warmup_cosine   e / (w+1) for e <= w, then cosine over the remaining E - w epochs
                      (SequentialLR of LinearLR(1/(w+1), 1, w) and CosineAnnealingLR(T_max = E - w))
    for epoch e in 1..E. Written as a name (`cosine`), a mapping of the name to its parameters
    (`{warmup_cosine: {warmup_epochs: 2}}`, `{step: {step_size: 3, gamma: 0.1}}`) or flat
    (`{kind: step, step_size: 3}`).
    """

    kind: ScheduleKind = "constant"
    step_size: int | None = Field(default=None, ge=1, description="epochs between drops (step)")
    gamma: float | None = Field(default=None, gt=0, lt=1, description="factor of each drop (step)")
    warmup_epochs: int | None = Field(default=None, ge=1, description="epochs of linear warm-up (warmup_cosine)")

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, v):
        """A name or {name: parameters} to the flat form; parameters of another kind are errors,
        missing ones take their defaults."""
        if isinstance(v, str):
            v = {"kind": v}
        elif isinstance(v, dict) and len(v) == 1 and next(iter(v)) in SCHEDULE_PARAMETERS:
            kind, params = next(iter(v.items()))
            if params is not None and not isinstance(params, dict):
                raise ValueError(f"lr_schedule {kind}: parameters must be a mapping, got {params!r}")
            v = {"kind": kind, **(params or {})}
        if not isinstance(v, dict):
            return v  # pydantic says what is wrong
        kind = v.get("kind", "constant")
        if kind not in SCHEDULE_PARAMETERS:
            raise ValueError(f"lr_schedule kind must be one of {', '.join(SCHEDULE_PARAMETERS)}, got {kind!r}")
        allowed = SCHEDULE_PARAMETERS[kind]
        v = {key: value for key, value in v.items() if value is not None}  # a dump's unset parameters
        if foreign := sorted(k for k in v if k != "kind" and k not in allowed and k in cls.model_fields):
            raise ValueError(f"lr_schedule {kind} takes {', '.join(allowed) or 'no parameters'}, "
                             f"not {', '.join(foreign)}")
        filled = {**{k: d for k, d in allowed.items() if d is not None}, **v}
        if missing := [k for k in allowed if filled.get(k) is None]:
            raise ValueError(f"lr_schedule {kind} needs {', '.join(missing)}")
        return filled

    def factor(self, epoch: int, epochs: int) -> float:
        """The multiplier of the base learning rate while training epoch `epoch` (1-based) of `epochs`."""
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** ((epoch - 1) // self.step_size)
        warmup = self.warmup_epochs or 0
        if epoch <= warmup:
            return epoch / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1 - warmup) / (epochs - warmup)))

    @property
    def label(self) -> str:
        """Compact text, as the warehouse stores it: `step(step_size=3,gamma=0.1)`."""
        params = self.model_dump(exclude={"kind"}, exclude_none=True)
        return self.kind + (f"({','.join(f'{k}={v:g}' for k, v in params.items())})" if params else "")

    def check_epochs(self, epochs: int) -> None:
        if self.warmup_epochs is not None and self.warmup_epochs >= epochs:
            raise ValueError(f"lr_schedule {self.label}: warmup_epochs must be below epochs={epochs}")
        if self.step_size is not None and self.step_size >= epochs:
            raise ValueError(f"lr_schedule {self.label}: step_size must be below epochs={epochs} (else no drop)")


CONSTANT = LrSchedule()


def _duplicates(values: list) -> list:
    seen, repeated = set(), []
    for v in values:
        if v in seen and v not in repeated:
            repeated.append(v)
        seen.add(v)
    return repeated


class Sweep(_Strict):
    """Hyper-parameter space: a list means choose among values; log_uniform/uniform are sampled."""

    lr: FloatDimension = LogUniform(log_uniform=(3e-4, 0.3))
    dropout: FloatDimension = [0.0]
    weight_decay: FloatDimension = [0.0]
    optimizer: list[Optimizer] = ["sgd"]
    batch_size: list[int] = [128]
    lr_schedule: list[LrSchedule] = [CONSTANT]
    label_noise: FloatDimension = Field(default=[0.0], description="fraction of training labels replaced by "
                                        "another class, drawn from the run's seed (`datasets.with_label_noise`)")

    @field_validator("lr_schedule", mode="before")
    @classmethod
    def _one_schedule_is_a_list(cls, v):
        return v if isinstance(v, list) else [v]

    @field_validator("optimizer", "batch_size", "dropout", "weight_decay", "lr", "lr_schedule", "label_noise")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("must list at least one value")
        return v

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, v):
        if any(b < 1 for b in v):
            raise ValueError("batch sizes must be >= 1")
        return v

    # Ranges that training cannot use: checked here so such a spec never starts (a negative lr
    # "trains" to nonsense, dropout >= 1 zeroes every activation).
    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, v):
        if _bounds(v)[0] <= 0:
            raise ValueError(f"learning rates must be > 0, got {_bounds(v)[0]}")
        return v

    @field_validator("dropout", "label_noise")
    @classmethod
    def _fraction_below_one(cls, v, info: ValidationInfo):
        lo, hi = _bounds(v)
        if lo < 0 or hi >= 1:
            what = {"dropout": "dropout rates", "label_noise": "label noise"}[info.field_name]
            raise ValueError(f"{what} must lie in [0, 1), got {lo if lo < 0 else hi}")
        return v

    @field_validator("weight_decay")
    @classmethod
    def _non_negative_decay(cls, v):
        if _bounds(v)[0] < 0:
            raise ValueError(f"weight decay must be >= 0, got {_bounds(v)[0]}")
        return v


class DatasetSpec(_Strict):
    name: DatasetName = "digits"
    root: str | None = None
    subset: int | None = Field(default=None, ge=1, description="training images used (the first N)")
    test_subset: int | None = Field(default=None, ge=1, description="test images used (the first N); on a "
                                    "CPU, evaluating every run on the whole test set each epoch costs more "
                                    "than training on a subset")

    @field_validator("root")
    @classmethod
    def _existing_root(cls, v):
        if v is not None and not Path(v).is_dir():
            raise ValueError(f"folder {v} does not exist (it must hold the dataset's files)")
        return v

    @model_validator(mode="after")
    def _root_when_needed(self):
        if self.name in ("cifar10", "svhn") and self.root is None:
            raise ValueError(f"{self.name} needs dataset.root, a folder holding its files (nothing is downloaded)")
        return self


class PredictSpec(_Strict):
    k_epochs: list[int] = [1, 2, 3, 5]
    good_run_quantile: float = Field(default=0.5, gt=0, lt=1)
    n_folds: int = Field(default=5, ge=2)
    patience: int = Field(default=2, ge=1, description="early-stopping patience (epochs) in the cost comparison")

    @field_validator("k_epochs")
    @classmethod
    def _positive_k(cls, v):
        if not v or any(k < 1 for k in v):
            raise ValueError("k_epochs must be a non-empty list of epochs >= 1")
        return sorted(set(v))


class WidthTransferSpec(_Strict):
    train_widths: list[float] = []
    test_widths: list[float] = []


class StackOptionsSpec(_Strict):
    """How stacked groups execute (`stacked.StackOptions`); none of it changes a run's identity."""

    vector_width: int = Field(default=0, ge=0, description="runs per wide model; 0 = auto")
    channels_last: bool | None = Field(default=None, description="NHWC activations; null = auto (on)")
    bf16: bool = Field(default=False, description="bfloat16 autocast (changes numerics)")
    compile: bool = Field(default=False, description="torch.compile the wide models")


class ExecutionSpec(_Strict):
    """How and where the tasks run; nothing here changes a run's identity (`RunConfig.run_id`).

    Training: on `device`, `runs_per_device` tasks at once per GPU or CPU, runs that share
    `RunConfig.group_key` stacked into groups of at most `stack_size`. Every stage fans out on this
    machine's process pool, or on a Ray cluster (docs/ray.md): on Ray each
    training task asks for `gpus_per_training_task` GPUs (a fraction packs several small runs on
    one GPU; 0 trains on CPU) and `cpus_per_training_task` CPUs; each graph task asks for
    `cpus_per_graph_task` CPUs. `data_dir` is where snapshots and node metrics go: on a
    cluster, a directory every node mounts at the same path.
    """

    runner: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(default=None, description="e.g. 10.0.0.5:6379 or ray://head:10001; "
                                    "None with runner ray starts a temporary local Ray")
    gpus_per_training_task: float = Field(default=0.0, ge=0)
    cpus_per_training_task: float = Field(default=1.0, gt=0)
    cpus_per_graph_task: float = Field(default=1.0, gt=0)
    data_dir: str | None = Field(default=None, description="default: beside the warehouse file")
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    runs_per_device: int = Field(default=0, ge=0, description="concurrent training tasks (a run, or a stacked "
                                 "group) per GPU/CPU; 0 = auto")
    stacked: bool = Field(default=True, description="train runs that share group_key together as one model")
    stack_size: int = Field(default=64, ge=1, description="most runs in one stacked group")
    stack_options: StackOptionsSpec = StackOptionsSpec()


MOVED_TO_EXECUTION = ("device", "runs_per_device", "stacked", "stack_size", "stack_options")  # until the next release


class GraphOptions(_Strict):
    """How snapshots become rolled graphs and node properties (see docs/graphs.md)."""

    fold_batchnorm: bool = True
    exact_limit: int = Field(default=1000, ge=0, description="closeness/betweenness exact up to this many nodes")
    pivots: int = Field(default=64, ge=1, description="sampled sources for closeness/betweenness above exact_limit")
    betweenness: bool = True
    katz_factor: float = Field(default=0.9, gt=0, lt=2, description="Katz alpha = katz_factor / lambda_1(A + A^T)")
    pagerank_damping: float = Field(default=0.85, gt=0, lt=1)
    seed: int = 0
    properties: list[GraphProperty] | None = Field(default=None, description="compute only these node properties "
                                                   "(the others stored as NULL); None = all. Triage sets it to what "
                                                   "its predictor reads")


class KeepPGood(_Strict):
    """Keep the runs whose calibrated P(good) is at least `p_good`."""

    p_good: float = Field(ge=0, le=1)


class TriageSpec(_Strict):
    """Train every run to each rung in turn, score the runs that reached it, continue only the kept ones.

    rungs: the epochs at which runs are decided, increasing, each >= 1 and below epochs
      (`at_epoch: k` is read as `rungs: [k]`). At every rung the cohort is the runs kept at the
      previous rung (at the first, every run); a rung is decided once, when each member of its
      cohort has reached it or failed: failed and diverged runs get no decision and block nothing.
    predictor: where the score at a rung comes from.
      `auto` (the default): a registered predictor fitted at k = rung whose study matches this one
      (dataset, architectures, widths, epochs, dataset subset, train_metrics, graph options; not
      fitted on a triaged study's kept runs only), else the shipped corpus predictor when there is
      one and the rung's cohort has 8 runs at least, else the test accuracy at the rung (the i-Epoch rule: Egele et al. 2023).
      `best` (the registered regression predictor of highest cross-validated Kendall tau at
      k = rung on this dataset and these architectures), a registered predictor's id, a study
      name (that study's best such predictor), or `corpus` (the shipped corpus predictor,
      pipeline_lib/decisions/corpus.py): used even when its study differs, but every
      difference is warned by name and recorded (a different dataset, architecture or train_metrics
      is refused).
    keep: per rung, a fraction 0 < x < 1 of the cohort (the best scored, rounded up), a number
      N >= 1 of runs (the top N), or {p_good: t} (runs whose calibrated P(good) >= t; needs a
      predictor with a classification twin). Or reduction_factor: eta >= 2, keep 1/eta of the cohort
      (successive halving's rule).
    """

    predictor: str = "auto"
    rungs: list[StrictInt] = Field(min_length=1, description="epochs at which runs are scored and stopped or kept")
    keep: Union[StrictInt, StrictFloat, KeepPGood, None] = None
    reduction_factor: StrictInt | None = Field(default=None, ge=2, description="keep 1/reduction_factor per rung")
    confidence: float = Field(default=0.9, gt=0, lt=1, description="of the recorded prediction intervals")

    @model_validator(mode="before")
    @classmethod
    def _one_rung_shorthand(cls, data):
        """`at_epoch: k` (one rung, the form before rungs) is `rungs: [k]`."""
        if isinstance(data, dict) and "at_epoch" in data:
            if "rungs" in data:
                raise ValueError("give rungs or at_epoch, not both (at_epoch: k means rungs: [k])")
            data = {**{k: v for k, v in data.items() if k != "at_epoch"}, "rungs": [data["at_epoch"]]}
        return data

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, v):
        if v[0] < 1 or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"rungs must be epochs >= 1 in increasing order, got {v}")
        return v

    @field_validator("keep", mode="before")
    @classmethod
    def _keep_rule(cls, v):
        """One clear message instead of one per alternative of the union."""
        if v is None or isinstance(v, KeepPGood):
            return v
        if isinstance(v, dict):
            if set(v) != {"p_good"} or isinstance(v["p_good"], bool) or not isinstance(v["p_good"], (int, float)) \
                    or not 0 <= v["p_good"] <= 1:
                raise ValueError(f"keep as a mapping must be {{p_good: t}} with 0 <= t <= 1, got {v}")
            return v
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise ValueError(f"keep as a number of runs must be >= 1, got {v}")
            return v
        if isinstance(v, float):
            if not 0 < v < 1:
                raise ValueError(f"keep as a fraction must lie strictly between 0 and 1, got {v} "
                                 "(a number of runs is written without a decimal point)")
            return v
        raise ValueError(f"keep must be a fraction 0 < x < 1, a number of runs >= 1, or {{p_good: t}}; got {v!r}")

    @model_validator(mode="after")
    def _one_keep_rule(self):
        if (self.keep is None) == (self.reduction_factor is None):
            raise ValueError("give one keep rule: keep (a fraction, a number of runs or {p_good: t}) or "
                             "reduction_factor (keep 1/eta per rung)")
        return self

    @property
    def keep_rule(self) -> Union[int, float, KeepPGood]:
        """The rule applied at each rung: reduction_factor eta is the fraction 1/eta."""
        return self.keep if self.keep is not None else 1 / self.reduction_factor

    @property
    def policy(self) -> str:
        """The keep rule as text, as the decisions record it."""
        if self.reduction_factor is not None:
            return f"reduction {self.reduction_factor}"
        if isinstance(self.keep, KeepPGood):
            return f"p_good>={self.keep.p_good:g}"
        return f"fraction {self.keep:g}" if isinstance(self.keep, float) else f"top {self.keep}"


class Study(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=120,
                      description="a plain name (it names the study's folders): a letter or digit first")
    dataset: DatasetSpec = DatasetSpec()
    architectures: list[Architecture] = ["lenet"]
    widths: list[float] = [1.0]
    depth: int = Field(default=1, ge=1, description="residual blocks per stage (resnet only)")
    epochs: int = Field(default=10, ge=1)
    train_metrics: TrainMetrics = Field(default="epoch", description="training loss/accuracy: accumulated over "
                                        "the epoch's minibatches, or an exact pass after it on a fixed subset")
    seeds: list[int] = [0]
    samples: int = Field(default=4, ge=1)
    sweep: Sweep = Sweep()
    predict: PredictSpec = PredictSpec()
    width_transfer: WidthTransferSpec = WidthTransferSpec()
    graphs: GraphOptions = GraphOptions()
    execution: ExecutionSpec = ExecutionSpec()
    triage: TriageSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data):
        """Top-level keys that moved under `execution:` are still read, for one release (`load_study`
        warns), and in the specs that warehouses stored before the move."""
        if not isinstance(data, dict) or not (moved := [k for k in MOVED_TO_EXECUTION if k in data]):
            return data
        execution = data.get("execution") or {}
        if not isinstance(execution, dict):
            return data  # the execution section's own validation says what is wrong
        if both := [k for k in moved if k in execution]:
            raise ValueError(f"{', '.join(both)} given both at the top level and under execution:; "
                             f"keep only execution.{both[0]}")
        kept = {k: v for k, v in data.items() if k not in moved}
        return {**kept, "execution": {**execution, **{k: data[k] for k in moved}}}

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, v):
        if not v or any(w <= 0 for w in v):
            raise ValueError("widths must be a non-empty list of positive multipliers")
        return v

    @field_validator("architectures", "seeds", "widths")
    @classmethod
    def _non_empty_distinct(cls, v):
        if not v:
            raise ValueError("must list at least one value")
        if repeated := _duplicates(v):
            raise ValueError(f"lists {repeated} more than once (each value gives its own runs)")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        unknown = set(self.width_transfer.train_widths + self.width_transfer.test_widths) - set(self.widths)
        if unknown:
            raise ValueError(f"width_transfer names widths {sorted(unknown)} that are not in widths {self.widths}")
        if self.predict.k_epochs[-1] >= self.epochs:
            raise ValueError(f"predict.k_epochs {self.predict.k_epochs} must be below epochs={self.epochs}")
        for schedule in self.sweep.lr_schedule:
            schedule.check_epochs(self.epochs)
        runs = self.samples * len(self.architectures) * len(self.widths) * len(self.seeds)
        if runs > MAX_RUNS:
            raise ValueError(f"samples x architectures x widths x seeds = {self.samples} x {len(self.architectures)} x "
                             f"{len(self.widths)} x {len(self.seeds)} = {runs} runs, more than the {MAX_RUNS} one "
                             "study may hold (each run is a folder of snapshots); split the sweep into studies")
        if self.triage is not None and self.triage.rungs[-1] >= self.epochs:
            raise ValueError(f"triage.rungs {self.triage.rungs} must be below epochs={self.epochs} "
                             "(runs are scored there and the kept ones trained on)")
        return self

    def check_cross_validation(self) -> None:
        """Raise SpecError unless the sweep gives enough configurations for the prediction stages.

        Not a validator: a study that only trains may have a single configuration.
        """
        distinct = len({hp["config_id"] for hp in draw_configurations(self)})
        if distinct < MIN_CONFIGURATIONS:
            raise SpecError(f"samples: grouped cross-validation needs at least {MIN_CONFIGURATIONS} distinct "
                            f"configurations; samples={self.samples} with this sweep gives {distinct}")
        if self.triage is not None and not isinstance(self.triage.keep_rule, KeepPGood):
            finishing = len(expand_runs(self))
            for _ in self.triage.rungs:
                finishing = kept_count(self.triage.keep_rule, finishing)
            if finishing < MIN_CONFIGURATIONS:
                raise SpecError(f"triage: keep {self.triage.policy} at rungs {self.triage.rungs} lets {finishing} run "
                                f"finish; the prediction stages cross-validate the finished runs and need at least "
                                f"{MIN_CONFIGURATIONS} configurations: keep more runs, or train with "
                                f"python -m flows.train_sweep (which does not evaluate)")


class RunConfig(_Strict):
    """One run's full configuration; everything that determines its outcome."""

    study: str
    dataset: DatasetSpec
    architecture: Architecture
    width: float
    depth: int
    epochs: int
    seed: int
    config_id: str
    lr: float
    dropout: float
    weight_decay: float
    optimizer: Optimizer
    batch_size: int
    train_metrics: TrainMetrics = "epoch"
    lr_schedule: LrSchedule = CONSTANT
    label_noise: float = 0.0

    @property
    def run_id(self) -> str:
        """Stable identifier: a hash of everything but the study name."""
        payload = self.model_dump(mode="json", exclude={"study"})
        payload["dataset"].pop("root")  # where the files lie does not change the run
        if payload["dataset"]["test_subset"] is None:  # added later: unset keeps earlier run ids
            payload["dataset"].pop("test_subset")
        if payload["train_metrics"] == "exact":  # how every run was measured before the option: same ids
            payload.pop("train_metrics")
        payload["lr_schedule"] = self.lr_schedule.model_dump(exclude_none=True)
        _drop_new_defaults(payload)
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def group_key(self) -> tuple:
        """Runs with equal keys can train stacked in one vectorised model."""
        return (self.architecture, self.width, self.depth, self.optimizer, self.batch_size, self.epochs,
                self.train_metrics)


FIRST_DIMENSIONS = ("lr", "dropout", "weight_decay", "optimizer", "batch_size")
LATER_DEFAULTS = {"lr_schedule": CONSTANT.model_dump(exclude_none=True), "label_noise": 0.0}  # knobs added later


def _drop_new_defaults(payload: dict) -> None:
    """Knobs added later leave hashes (run and configuration ids) unchanged at their defaults."""
    for name, default in LATER_DEFAULTS.items():
        if payload.get(name) == default:
            payload.pop(name)


def draw_configurations(study: Study) -> list[dict]:
    """Hyper-parameter configurations: a scrambled Latin hypercube seeded from the study name.

    Every dimension is cut into `samples` equal strata and each stratum is drawn once, so even a
    4-configuration sweep spans its learning-rate range (independent draws can bunch at one end).
    The dimensions added later (LATER_DEFAULTS) come from a second hypercube, so the first
    dimensions' draws, and the ids of every study that leaves the later ones at their defaults,
    are those drawn before they existed.
    """
    seed = int(hashlib.sha1(study.name.encode()).hexdigest()[:8], 16)
    points = qmc.LatinHypercube(d=len(FIRST_DIMENSIONS), seed=seed).random(study.samples)
    later = qmc.LatinHypercube(d=len(LATER_DEFAULTS), seed=seed + 1).random(study.samples)
    configs = []
    for point, later_point in zip(points, later):
        hp = {name: _value_at(getattr(study.sweep, name), float(u)) for name, u in zip(FIRST_DIMENSIONS, point)}
        hp |= {name: _value_at(getattr(study.sweep, name), float(u)) for name, u in zip(LATER_DEFAULTS, later_point)}
        identity = {**hp, "lr_schedule": hp["lr_schedule"].model_dump(exclude_none=True)}
        _drop_new_defaults(identity)
        hp["config_id"] = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        configs.append(hp)
    return configs


def expand_runs(study: Study) -> list[RunConfig]:
    """Every run of the study: configurations x architectures x widths x seeds."""
    runs = []
    for hp in draw_configurations(study):
        for arch in study.architectures:
            for width in study.widths:
                for seed in study.seeds:
                    runs.append(
                        RunConfig(
                            study=study.name, dataset=study.dataset, architecture=arch, width=width,
                            depth=study.depth, epochs=study.epochs, seed=seed,
                            train_metrics=study.train_metrics, **hp,
                        )
                    )
    unique = {r.run_id: r for r in runs}
    return list(unique.values())


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the fields at fault."""


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"invalid study spec {path}:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "value_error":  # our validators' messages, without pydantic's "Value error, " prefix
            msg = str(e["ctx"]["error"])
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the study spec)"
        elif e["type"] == "literal_error":
            msg = f"{msg}, got {e.get('input')!r}"
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")  # study-level messages name their fields
    return "\n".join(lines)


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not "last wins"."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"key {key!r} is given twice (again on line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_WARNED: set[tuple] = set()  # a spec read by every stage of one command warns once


def load_study(path: str | Path) -> Study:
    """Read and validate a YAML spec; raises SpecError with a readable message."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise SpecError(f"spec {path} is not valid YAML: {e}") from None
    except UnicodeDecodeError:
        raise SpecError(f"spec {path} is not a text file (not UTF-8): is it the YAML spec?") from None
    except RecursionError:
        raise SpecError(f"spec {path} nests too deeply to be a study spec") from None
    except OSError as e:
        raise SpecError(f"spec {path} cannot be read: {e.strerror}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"spec {path} must be a YAML mapping of keys to values")
    if (moved := [k for k in MOVED_TO_EXECUTION if k in raw]) and (path, *moved) not in _WARNED:
        _WARNED.add((path, *moved))
        logging.getLogger(__name__).warning(
            "spec %s: %s moved under execution: (write execution: {%s: ...}); the top-level "
            "place is deprecated and read only until the next release", path, ", ".join(moved), moved[0])
    try:
        return Study.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_format_validation_error(path, e)) from None
