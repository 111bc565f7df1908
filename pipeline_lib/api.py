"""Predictions for your own training loop: a registered predictor applied to a live torch model.

    predictor = Predictor.load("warehouse/warehouse.duckdb", "digits-demo", k=3)
    history = predictor.new_history({"lr": 0.05, "dropout": 0.0, "weight_decay": 0.0, "optimizer": "sgd",
                                     "batch_size": 64, "architecture": "lenet"})
    for epoch in range(epochs + 1):            # epoch 0 = the initialisation, before any step
        ...train one epoch (none at epoch 0), evaluate...
        history.record(epoch, model, train_loss=..., train_acc=..., test_loss=..., test_acc=...)
        if epoch == predictor.k:
            p = predictor.predict(model, history)   # p.predicted, p.low, p.high, p.p_good

The features are the pipeline's own (`pipeline_lib.features`), computed only for the base sets the
predictor reads, and of the graph sets only the node properties its fitted selection keeps
(`sources.ScoreSource.graph_properties`, as triage reads them); the score is the source's
(`sources.RegisteredSource.score`, as the scoring stage's), so a live model gets the prediction its
saved snapshots would get in the warehouse.
"""
from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from .decisions.sources import RegisteredSource
from .features import GRAPH_BASE_SETS, base_set_features
from .features.curves import CURVE_METRICS
from .graphs.rolled import RolledGraphTemplate, model_input_shape, template_for
from .graphs.snapshot_metrics import SUMMARY_SCHEMA, graph_node_metrics
from .graphs.summaries import summarise
from .snapshots import write_snapshot
from .spec import GraphOptions
from .vocabulary import Task

RUN_ID = "live"  # the one run a prediction is about, in the feature frames
HPARAMS = ("lr", "dropout", "weight_decay", "optimizer", "batch_size")  # what the `hparams` set reads
# ... and with these defaults when not given: a constant learning rate on clean labels (as the spec's)
HPARAM_DEFAULTS = {"lr_schedule": "constant", "label_noise": 0.0}


class PredictionError(ValueError):
    """This predictor cannot predict for this model or history; the message says what is missing."""


class ModelNotTraceable(PredictionError):
    """The graph tracer (torch.fx, `graphs/tracing.py`) cannot map the model to a rolled graph."""


@dataclass(frozen=True)
class Prediction:
    """The predicted final test accuracy, its conformal interval at `confidence`, and the calibrated
    P(good) (None when the predictor has no calibrated classification twin). A run whose history has
    a non-finite loss or accuracy by epoch k is `diverged`, as the pipeline records it: no prediction
    (NaN), no P(good), and the pruner and scheduler stop it."""

    predicted: float
    low: float
    high: float
    p_good: float | None
    k: int
    confidence: float
    diverged: bool = False

    def as_dict(self) -> dict:
        return {"predicted": self.predicted, "low": self.low, "high": self.high, "p_good": self.p_good,
                "diverged": self.diverged}


@dataclass
class History:
    """What a training loop observed, epoch by epoch: metrics (epoch 0 = the initialisation) and, when
    `keep_states`, a CPU copy of the weights (graph features read the weights of epochs 0..k)."""

    hparams: dict
    keep_states: bool = True
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    states: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    def record(self, epoch: int, model: nn.Module | Mapping[str, torch.Tensor] | None = None, *,
               test_acc: float, train_loss: float | None = None, train_acc: float | None = None,
               test_loss: float | None = None) -> None:
        self.metrics[epoch] = {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
                               "test_acc": test_acc}
        if self.keep_states and model is not None:
            self.states[epoch] = _cpu_state(model)

    def diverged_epoch(self) -> int | None:
        """The first epoch with a non-finite metric (the run is lost from there)."""
        for epoch in sorted(self.metrics):
            if any(v is not None and not math.isfinite(v) for v in self.metrics[epoch].values()):
                return epoch
        return None


def _cpu_state(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model.state_dict() if isinstance(model, nn.Module) else model
    return {name: t.detach().to("cpu", copy=True) for name, t in state.items()}


class Predictor:
    """A registered regression predictor (`source`: its row, skops file and, when registered, its
    classification twin for P(good)); see the module docstring for use."""

    def __init__(self, source: RegisteredSource, graph_options: GraphOptions | None = None, confidence: float = 0.9):
        if source.row["task"] != Task.REGRESSION:
            raise PredictionError(f"predictor {source.id} is a {source.row['task']} predictor; load a regression one")
        self.source, self.confidence = source, confidence
        self.k: int = source.k
        self.bases: tuple[str, ...] = source.feature_sets
        self.properties: tuple[str, ...] = source.graph_properties or ()
        self.graph_options = (graph_options or GraphOptions()).model_copy(update={"properties": list(self.properties)})

    @classmethod
    def load(cls, warehouse: str | Path, predictor: str, k: int | None = None, **kwargs) -> Predictor:
        """The registered predictor `predictor` of a warehouse: an id, or a study name with `k` (that
        study's regression predictor at k of highest out-of-fold Kendall tau). Its file is checked
        as the scoring stage checks it (`registry.load`: digest, code, trusted types); graphs are
        built with its study's `graphs:` options unless `graph_options` says otherwise."""
        from warehouse.db import Warehouse  # the registry's reads, as the scoring stage makes them
        from warehouse.registry import registered_source

        wh = Warehouse(warehouse)
        pid = predictor
        if wh.query("SELECT count(*) AS n FROM predictors WHERE id = ?", [predictor])["n"][0] == 0:
            if k is None:
                raise PredictionError(f"no registered predictor {predictor!r} in {warehouse}; pass an id, or a "
                                      "study name with k")
            best = wh.query("SELECT id FROM best_predictors WHERE study = ? AND k = ? AND standing = 1", [predictor, k])
            if best.is_empty():
                raise PredictionError(f"no registered regression predictor of study {predictor!r} at k = {k} "
                                      f"in {warehouse}")
            pid = best["id"][0]
        source = registered_source(wh, pid)
        if kwargs.get("graph_options") is None:  # the graphs the predictor was fitted on: its study's options
            spec = wh.query("SELECT spec_json FROM studies WHERE study = ?", [source.study])
            if spec.height:
                kwargs["graph_options"] = GraphOptions.model_validate(json.loads(spec["spec_json"][0])["graphs"])
        return cls(source, **kwargs)

    def new_history(self, hparams: dict) -> History:
        """A History keeping weights only when this predictor reads graph features."""
        return History(dict(hparams), keep_states=self.source.reads_graphs)

    def predict(self, model: nn.Module | Mapping[str, torch.Tensor], history: History) -> Prediction:
        """The prediction at epoch k = `self.k` for `model` (its weights at epoch k: a module, or a
        state_dict of a project architecture named in the hyper-parameters) and `history` (epochs 0..k)."""
        if (lost := history.diverged_epoch()) is not None and lost <= self.k:
            return Prediction(math.nan, math.nan, math.nan, None, self.k, self.confidence, diverged=True)
        runs = self._run_frame(history)
        features = pl.concat([self._base_features(base, model, history, runs) for base in self.bases])
        row = self.source.score(features, [RUN_ID], self.confidence).row(0, named=True)
        return Prediction(row["predicted"], row["low"], row["high"], row["p_good"], self.k, self.confidence)

    # -- features -----------------------------------------------------------------------------------
    def _run_frame(self, history: History) -> pl.DataFrame:
        hp = history.hparams
        if "hparams" in self.bases:
            missing = [name for name in (*HPARAMS, "architecture") if name not in hp]
            if missing:
                raise PredictionError(f"predictor {self.source.row['id']} reads the hyper-parameters; history.hparams "
                                      f"lacks {missing}")
            if hp["architecture"] not in self.source.row["architectures"]:
                raise PredictionError(f"predictor {self.source.row['id']} was fitted on architectures "
                                      f"{self.source.row['architectures']}, not {hp['architecture']!r}")
        return pl.DataFrame([{"run_id": RUN_ID, "diverged_epoch": history.diverged_epoch(),
                              **{name: hp.get(name) for name in HPARAMS},
                              "architecture": hp.get("architecture"), "width": float(hp.get("width", 1.0)),
                              "depth": int(hp.get("depth", 1)),
                              **{name: hp.get(name, default) for name, default in HPARAM_DEFAULTS.items()}}],
                            schema_overrides={"diverged_epoch": pl.Int64, "lr": pl.Float64, "dropout": pl.Float64,
                                              "weight_decay": pl.Float64, "batch_size": pl.Int64,
                                              "optimizer": pl.Utf8, "architecture": pl.Utf8,
                                              "lr_schedule": pl.Utf8, "label_noise": pl.Float64})

    def _epoch_metrics(self, history: History) -> pl.DataFrame:
        lacking = [e for e in range(self.k + 1) if e not in history.metrics]
        if lacking:
            raise PredictionError(f"predicting at k = {self.k} needs the metrics of epochs 0..{self.k}; "
                                  f"the history lacks epochs {lacking}")
        return pl.DataFrame([{"run_id": RUN_ID, "epoch": e, **history.metrics[e]} for e in range(self.k + 1)],
                            schema={"run_id": pl.Utf8, "epoch": pl.Int64, **{m: pl.Float64 for m in CURVE_METRICS}})

    def _base_features(self, base: str, model, history: History, runs: pl.DataFrame) -> pl.DataFrame:
        if base == "weight_stats":  # the weights at k (the model as it is now), read as the pipeline reads a snapshot
            with tempfile.TemporaryDirectory() as directory:
                snapshot = write_snapshot(_cpu_state(model), directory, RUN_ID, self.k)
                paths = pl.DataFrame({"run_id": [RUN_ID], "epoch": [self.k], "path": [str(snapshot.path)]})
                return base_set_features(base, self.k, runs, snapshot_paths=paths)
        summaries = self._graph_summaries(model, history) if base in GRAPH_BASE_SETS else None
        metrics = self._epoch_metrics(history) if base not in ("hparams",) else None
        return base_set_features(base, self.k, runs, metrics, summaries)

    def _graph_summaries(self, model, history: History) -> pl.DataFrame:
        """graph_summaries rows (width-invariant scopes, and the Perron value) of epochs 0..k, with only
        the node properties the predictor reads."""
        lacking = [e for e in range(self.k) if e not in history.states]
        if lacking:
            raise PredictionError(f"predictor {self.source.row['id']} reads graph features of epochs 0..{self.k}; the "
                                  f"history holds no weights of epochs {lacking} (record(epoch, model, ...) with "
                                  "keep_states)")
        template = self._template(model, history.hparams)
        frames = []
        for epoch in range(self.k + 1):
            state = _cpu_state(model) if epoch == self.k else history.states[epoch]
            nodes, row = graph_node_metrics(template.build(state, self.graph_options.fold_batchnorm), self.graph_options)
            keyed = nodes.with_columns(pl.lit(RUN_ID).alias("run_id"), pl.lit(epoch, pl.Int64).alias("epoch"))
            frames += [summarise(keyed).select(SUMMARY_SCHEMA.keys()).cast(SUMMARY_SCHEMA),
                       pl.DataFrame([{"run_id": RUN_ID, "epoch": epoch, "scope": "graph", "property": "perron_value",
                                      "statistic": "value", "value": row["perron_value"]}], schema=SUMMARY_SCHEMA)]
        summaries = pl.concat(frames)
        return summaries.filter((pl.col("scope") == "graph") | pl.col("scope").str.starts_with("depth:"))

    def _template(self, model, hparams: dict) -> RolledGraphTemplate:
        input_shape, _ = model_input_shape(self.source.row["dataset"])
        try:
            if isinstance(model, nn.Module):
                training = model.training  # tracing puts the model in eval mode; the loop's mode is kept
                try:
                    return RolledGraphTemplate.from_model(model, input_shape)
                finally:
                    model.train(training)
            if "architecture" not in hparams:
                raise PredictionError("a state_dict alone needs hparams['architecture'] (a project family) to "
                                      "rebuild its graph; pass the model instead")
            return template_for(hparams["architecture"], float(hparams.get("width", 1.0)), int(hparams.get("depth", 1)),
                                self.source.row["dataset"])
        except PredictionError:
            raise
        except Exception as e:  # torch.fx's TraceError, UnsupportedOperation, shape mismatches
            raise ModelNotTraceable(f"the graph tracer cannot read this model ({type(e).__name__}: {e}); predictor "
                                    f"{self.source.row['id']} reads graph features ({self.source.row['feature_set']}), so it "
                                    "needs a model of Conv2d/Linear/BatchNorm/pooling/activation layers traceable by "
                                    f"torch.fx on {self.source.row['dataset']} images {input_shape}") from e


__all__ = ["History", "ModelNotTraceable", "Prediction", "PredictionError", "Predictor"]
