"""The public API (pipeline_lib.api) against the pipeline: a registered predictor applied to a live
model must give what the registry's own model gives on the feature row the pipeline computed from
the same run's saved snapshots and recorded metrics (warehouse tables), by an independent path."""
from __future__ import annotations

import math
import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from pipeline_lib.api import History, ModelNotTraceable, PredictionError, Predictor
from pipeline_lib.decisions.scoring import design_matrix
from pipeline_lib.decisions.uncertainty import calibrated, conformal_intervals
from pipeline_lib.features import BASE_SETS, FEATURE_SETS, base_set_features
from pipeline_lib.models import build_model
from pipeline_lib.prediction.evaluation import cross_validate_design, feature_matrix, grouped_folds, with_unit
from pipeline_lib.prediction.metrics import evaluation_table
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.snapshots import read_snapshot
from warehouse.predict import (epoch_metrics, invariant_graph_summaries, load_features, snapshot_paths, study_runs,
                               write_features, write_results)
from stages.register import register_study
from warehouse.registry import registered_source

K = 1
FEATURE_SET = "all"  # every base set: graph (only the selected properties), weights, curves, hparams


@pytest.fixture(scope="module")
def registered(small_study):
    """The small study's features at k = 1, its `all` set cross-validated, every covered set registered."""
    wh, study = small_study.warehouse, small_study.study
    runs = study_runs(wh, study.name)
    inputs = {"epoch_metrics": epoch_metrics(wh, study.name),
              "graph_summaries": invariant_graph_summaries(wh, study.name, K),
              "snapshot_paths": snapshot_paths(wh, study.name)}
    write_features(wh, study.name, pl.concat([base_set_features(s, K, runs, **inputs) for s in BASE_SETS]))
    targets = grouped_folds(run_targets(runs, study.predict.good_run_quantile), study.predict.n_folds)
    X, _ = feature_matrix(load_features(wh, study.name, K, FEATURE_SETS[FEATURE_SET]), targets["run_id"].to_list())
    predictions = with_unit(cross_validate_design(X, targets), feature_set=FEATURE_SET, k=K, split="cv")
    write_results(wh, study.name, ["cv"], evaluation_table(predictions, targets), predictions)
    register_study(wh, study)
    return small_study


def _entry(wh, study: str, predictor: str, task: str = "regression") -> str:
    return wh.query("SELECT id FROM predictors WHERE study = ? AND feature_set = ? AND k = ? AND task = ? "
                    "AND predictor = ?", [study, FEATURE_SET, K, task, predictor])["id"][0]


def _live_run(wh, study, run: dict) -> tuple[nn.Module, History]:
    """The run's model rebuilt from its snapshots and its history replayed from its recorded metrics,
    as the user's own loop would have held them at epoch k."""
    model = build_model(run["architecture"], in_channels=1, image_size=8, num_classes=10, width=run["width"],
                        dropout=run["dropout"], depth=run["depth"])
    paths = dict(snapshot_paths(wh, study.name).filter(pl.col("run_id") == run["run_id"]).select("epoch", "path").rows())
    metrics = epoch_metrics(wh, study.name).filter(pl.col("run_id") == run["run_id"]).sort("epoch")
    history = History({name: run[name] for name in ("lr", "dropout", "weight_decay", "optimizer", "batch_size",
                                                    "architecture", "width", "depth")})
    for m in metrics.filter(pl.col("epoch") <= K).iter_rows(named=True):
        model.load_state_dict(read_snapshot(paths[m["epoch"]]))
        history.record(m["epoch"], model, train_loss=m["train_loss"], train_acc=m["train_acc"],
                       test_loss=m["test_loss"], test_acc=m["test_acc"])
    return model, history


@pytest.mark.parametrize("predictor", ["linear", "hgb"])
def test_live_model_gets_the_registry_s_prediction_on_the_pipeline_s_feature_row(registered, predictor):
    wh, study = registered.warehouse, registered.study
    pid = _entry(wh, study.name, predictor)
    api = Predictor.load(wh.path, pid)
    assert api.k == K and api.source.has_p_good
    assert api.graph_options.model_dump(exclude={"properties"}) == study.graphs.model_dump(exclude={"properties"})
    model, entry = api.source.model, api.source.row
    twin = registered_source(wh, _entry(wh, study.name, predictor, "classification"))
    twin_model, twin_entry = twin.model, twin.row
    runs = study_runs(wh, study.name).filter(pl.col("diverged_epoch").is_null()).sort("run_id")
    features = load_features(wh, study.name, K, FEATURE_SETS[FEATURE_SET])
    for run in runs.head(3).iter_rows(named=True):
        live, history = _live_run(wh, study, run)
        got = api.predict(live, history)
        X = design_matrix(features, [run["run_id"]], entry["features"])  # the pipeline's row
        expected = float(model.predict(X)[0])
        low, high = conformal_intervals(np.asarray(entry["oof_residuals"]), np.array([expected]), 0.9)[0]
        raw = twin_model.predict_proba(X)[:, list(twin_model.classes_).index(1.0)]
        p_good = float(calibrated(raw, twin_entry["calibration"])[0])
        np.testing.assert_allclose([got.predicted, got.low, got.high, got.p_good], [expected, low, high, p_good],
                                   rtol=1e-6, atol=1e-9, err_msg=run["run_id"])


def test_study_name_and_k_load_its_best_and_graph_work_is_limited_to_what_it_reads(registered):
    wh, study = registered.warehouse, registered.study
    api = Predictor.load(wh.path, study.name, k=K)
    taus = wh.query("""SELECT id, json_extract(metrics_json, '$.kendall_tau.value')::DOUBLE AS tau FROM predictors
                       WHERE study = ? AND k = ? AND task = 'regression' AND tau IS NOT NULL""", [study.name, K])
    assert api.source.id == taus.sort(["tau", "id"], descending=[True, False])["id"][0]
    graph_api = Predictor.load(wh.path, _entry(wh, study.name, "linear"))
    fitted = graph_api.source
    selected = [c for model, row in ((fitted.model, fitted.row), (fitted.twin_model, fitted.twin_row))  # P(good): twin's
                for c, kept in zip(row["features"], model.named_steps["select"].get_support()) if kept]
    named = {c.split("/")[1] for c in selected if c.split("/")[0] == "graph" or c.startswith("depth:")}
    assert set(graph_api.graph_options.properties) == named - {"perron_value"}
    assert len(named) < 10  # the test is not vacuous: some of the ten properties go uncomputed


def test_unreadable_model_and_short_history_are_clear_errors(registered):
    wh, study = registered.warehouse, registered.study
    api = Predictor.load(wh.path, _entry(wh, study.name, "linear"))
    run = study_runs(wh, study.name).filter(pl.col("diverged_epoch").is_null()).row(0, named=True)
    live, history = _live_run(wh, study, run)

    class Sorting(nn.Module):  # torch.sort has no rolled-graph mapping
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(torch.sort(x.flatten(1), dim=1).values)

    odd = History(history.hparams)
    for epoch, metrics in history.metrics.items():
        odd.record(epoch, Sorting(), **metrics)
    with pytest.raises(ModelNotTraceable, match="graph tracer cannot read"):
        api.predict(Sorting(), odd)
    short = History(history.hparams)
    short.record(K, live, **history.metrics[K])
    with pytest.raises(PredictionError, match=r"epochs \[0\]"):
        api.predict(live, short)
    with pytest.raises(PredictionError, match="architectures"):
        api.predict(live, History({**history.hparams, "architecture": "vgg"}, metrics=history.metrics,
                                  states=history.states))


def test_optuna_pruner_ranks_trials_on_the_predictions_they_stored(registered, tmp_path):
    """Runs of the study replayed as trials of an RDB-stored Optuna study: at k each trial stores its
    prediction (observe) and is kept only if among the best half of the predictions stored so far."""
    import optuna

    from pipeline_lib.pruning.optuna_pruner import TriagePruner

    wh, study = registered.warehouse, registered.study
    predictor = Predictor.load(wh.path, _entry(wh, study.name, "linear"))
    pruner = TriagePruner(keep=0.5, predictor=predictor, min_trials=2)
    tuning = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", direction="maximize", pruner=pruner)
    predicted, pruned = [], []
    for run in study_runs(wh, study.name).filter(pl.col("diverged_epoch").is_null()).sort("run_id").head(5) \
            .iter_rows(named=True):
        trial = tuning.ask()
        live, history = _live_run(wh, study, run)
        trial.report(history.metrics[K]["test_acc"], K)
        predicted.append(pruner.observe(trial, K, live, history).predicted)
        pruned.append(trial.should_prune())
        tuning.tell(trial, state=optuna.trial.TrialState.PRUNED if pruned[-1] else optuna.trial.TrialState.COMPLETE,
                    values=None if pruned[-1] else predicted[-1])
    for i, p in enumerate(predicted):
        rank = 1 + sum(q >= p for q in predicted[:i])
        assert pruned[i] == (i + 1 >= 2 and rank > -(-(i + 1) // 2)), (i, predicted)
    assert any(pruned) and not all(pruned)


def test_a_diverged_history_gets_no_prediction_and_the_pruner_stops_it(registered, tmp_path):
    """A history with a NaN loss and accuracy by epoch k is diverged, as the pipeline records such a run:
    no prediction, no P(good); the pruner stops the trial without ranking it, and a prediction
    never observed (observe not called) leaves the trial running, as Optuna's pruners answer."""
    import optuna

    from pipeline_lib.pruning.optuna_pruner import TriagePruner

    wh, study = registered.warehouse, registered.study
    predictor = Predictor.load(wh.path, _entry(wh, study.name, "linear"))
    run = study_runs(wh, study.name).filter(pl.col("diverged_epoch").is_null()).row(0, named=True)
    live, history = _live_run(wh, study, run)
    lost = History(history.hparams, metrics={e: dict(m) for e, m in history.metrics.items()}, states=history.states)
    lost.metrics[K].update(train_loss=math.nan, test_loss=math.nan, test_acc=math.nan)
    made = predictor.predict(live, lost)
    assert made.diverged and math.isnan(made.predicted) and made.p_good is None

    pruner = TriagePruner(keep=0.5, predictor=predictor, min_trials=1)
    tuning = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", direction="maximize", pruner=pruner)
    silent = tuning.ask()
    silent.report(0.5, K)
    assert silent.should_prune() is False  # nothing observed: it cannot judge
    trial = tuning.ask()
    trial.report(0.5, K)
    assert pruner.observe(trial, K, live, lost).diverged
    assert trial.should_prune() is True
