"""Reading what the replay stage needs from the warehouse (schema/020_replays.sql) and writing its rows.

Inputs: the study's finished runs and their per-epoch metrics, the graph stage's recorded seconds per
snapshot, features at each k, the study's own out-of-fold predictions (the oracle), and registered
predictors of other studies of the same dataset (transfer; the stage adds the corpus'). Output: `replays`, replaced per study.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import numpy as np
import polars as pl

from pipeline_lib.decisions.replay import Curves, Design, Predictions, RanksAmongSeen, Sweep
from pipeline_lib.features import FEATURE_SETS
from pipeline_lib.prediction.evaluation import feature_matrix
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import Study, expand_runs
from pipeline_lib.vocabulary import FINISHED, Split, Task

from .db import Warehouse, replace_where
from .predict import epoch_metrics, graph_seconds, load_features, study_runs
from .registry import registered_source

TRANSFER_PREDICTOR = "linear"  # the same model family as online's refits, so the two differ only in their data


class ReplayError(ValueError):
    """A study the replay cannot replay; the message says why and what to do."""


FittedElsewhere = Callable[[int, str, pl.DataFrame, list[str]], RanksAmongSeen | None]


def replay_sweep_inputs(wh: Warehouse, study: Study, feature_sets: tuple[str, ...], ks: list[int],
                        fitted_elsewhere: FittedElsewhere | None = None) -> Sweep:
    """The study's sweep in launch order with everything the policies may read (`Sweep`).
    `fitted_elsewhere(k, feature_set, feature rows, run ids)`: more transfer predictions, from a
    predictor fitted outside this warehouse (the corpus without this study)."""
    runs = study_runs(wh, study.name)
    unfinished = wh.query("SELECT count(*) AS n FROM runs WHERE study = ? AND NOT list_contains(?, status)",
                          [study.name, list(FINISHED)])["n"][0]
    if runs.is_empty() or unfinished:
        raise ReplayError(f"study {study.name} has {unfinished} unfinished runs of {runs.height + unfinished} in "
                          f"{wh.path}; the replay needs a fully trained study (run flows.study first)")
    targets = run_targets(runs, study.predict.good_run_quantile)
    curves = Curves.from_frames(epoch_metrics(wh, study.name), targets.select("run_id", "final_acc"),
                                [r.run_id for r in expand_runs(study)])
    run_ids = list(curves.run_ids)
    info = runs.select("run_id", "config_id", "architecture").join(
        pl.DataFrame({"run_id": run_ids}).with_row_index("row"), on="run_id").sort("row")
    graphs = np.zeros((len(run_ids), curves.epochs + 1))
    seconds = graph_seconds(wh, study.name).join(info.select("run_id", "row"), on="run_id")
    keep = seconds["epoch"] <= curves.epochs
    graphs[seconds["row"].to_numpy()[keep], seconds["epoch"].to_numpy()[keep]] = seconds["seconds"].to_numpy()[keep]
    designs, oracle, transfer = [], [], []
    stored = wh.query("""SELECT feature_set, k, predictor, run_id, y_pred FROM predictions
                         WHERE study = ? AND task = ? AND split = ?""", [study.name, Task.REGRESSION, Split.CV])
    shown = wh.query("SELECT predictor FROM predictor_standing WHERE study = ? AND split = ? AND rank = 1",
                     [study.name, Split.CV])
    for k in ks:
        for feature_set in feature_sets:
            rows = load_features(wh, study.name, k, FEATURE_SETS[feature_set])
            if rows.is_empty():
                continue
            X, _ = feature_matrix(rows, run_ids)
            designs.append(Design(k, feature_set, X))
            transfer += _transfer(wh, study, rows, run_ids, k, feature_set, set(info["architecture"]))
            if fitted_elsewhere is not None and (made := fitted_elsewhere(k, feature_set, rows, run_ids)) is not None:
                transfer.append(made)
            if shown.height:
                oof = stored.filter((pl.col("feature_set") == feature_set) & (pl.col("k") == k)
                                    & (pl.col("predictor") == shown["predictor"][0]))
                by_run = dict(zip(oof["run_id"], oof["y_pred"]))
                if oof.height:
                    values = np.array([by_run.get(r, np.nan) for r in run_ids])
                    oracle.append(Predictions.stored(values, k, feature_set,
                                                     f"{shown['predictor'][0]}, out of fold on this study"))
    return Sweep(curves, graphs, info["config_id"].to_numpy(), info["architecture"].to_numpy(),
                 tuple(designs), tuple(transfer), tuple(oracle))


def _transfer(wh: Warehouse, study: Study, rows: pl.DataFrame, run_ids: list[str], k: int, feature_set: str,
              architectures: set[str]) -> list[Predictions]:
    """The registered regression predictors of OTHER studies of this dataset, at k and of this feature
    set, fitted on every architecture of this study: each a fixed predictor of the sweep."""
    found = wh.query("""SELECT id, study FROM predictors WHERE study <> ? AND dataset = ? AND k = ? AND feature_set = ?
                          AND task = ? AND predictor = ? ORDER BY study""",
                     [study.name, study.dataset.name, k, feature_set, Task.REGRESSION, TRANSFER_PREDICTOR])
    out = []
    for pid, source in found.iter_rows():
        fitted = registered_source(wh, pid)
        row = fitted.row
        if architectures <= set(row["architectures"]):
            out.append(Predictions.from_model(fitted.model, list(row["features"]), rows, run_ids, k, feature_set,
                                              f"study {source} ({TRANSFER_PREDICTOR}, {row['runs_used']} runs)"))
    return out


def write_replays(wh: Warehouse, study: str, rows: pl.DataFrame) -> int:
    """Replace the study's rows of `replays`."""
    frame = rows.with_columns(pl.lit(study).alias("study"),
                              pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("replayed_at"))
    with wh.writer() as con:
        return replace_where(con, "replays", frame, "study = ?", [study])

