"""The decision path's cost rows of `costs` (schema/011_decision_path.sql): which registered
predictors, which snapshots, the recorded training and graph seconds; the timing itself is
`pipeline_lib.decisions.path_cost`."""
from __future__ import annotations

import polars as pl

from pipeline_lib.decisions import path_cost
from pipeline_lib.features import GRAPH_SETS
from pipeline_lib.graphs.properties import PROPERTIES
from pipeline_lib.graphs.snapshot_metrics import SnapshotJob
from pipeline_lib.spec import Study
from pipeline_lib.vocabulary import FINISHED, Task

from .db import Warehouse, replace_where
from .registry import load_predictor
from .scores import TAU

FINISHED_RUN = "r.study = ? AND list_contains(?, r.status)"  # parameters: study, list(FINISHED)


def chosen_predictors(wh: Warehouse, study: str) -> pl.DataFrame:
    """Per k, the registered regression predictor of highest pooled out-of-fold Kendall tau, and the
    best of those that read graph features (one row where they are the same); columns id, k,
    feature_set, predictor, tau, properties (the graph quantities its kept columns read)."""
    rows = wh.query(f"""SELECT id, k, feature_set, predictor, {TAU} AS tau FROM predictors
                        WHERE study = ? AND task = ? AND {TAU} IS NOT NULL
                        ORDER BY k, tau DESC, id""", [study, Task.REGRESSION])
    chosen = pl.concat([rows.group_by("k", maintain_order=True).first(),
                        rows.filter(pl.col("feature_set").is_in(GRAPH_SETS)).group_by("k", maintain_order=True).first()]
                       ).unique("id", maintain_order=True).sort("k", "tau", descending=[False, True])
    properties = []
    for pid in chosen["id"]:
        model, row = load_predictor(wh, pid)
        properties.append(list(path_cost.properties_read(path_cost.columns_used(model, row["features"]))))
    return chosen.with_columns(pl.Series("properties", properties, dtype=pl.List(pl.Utf8)))


def record_decision_path(wh: Warehouse, study: Study) -> pl.DataFrame:
    """Time the chosen predictors' graph work (and every property, for comparison) on a sample of the
    study's snapshots; replace the study's decision_path and graph_stage rows of `costs`; return them."""
    chosen = chosen_predictors(wh, study.name)
    if chosen.is_empty():
        return pl.DataFrame(schema=path_cost.COST_COLUMNS)
    snapshots = wh.query(f"""SELECT s.run_id, s.epoch, s.path, r.architecture, r.width, r.depth, r.dataset
                             FROM snapshots s JOIN runs r USING (run_id) WHERE {FINISHED_RUN}
                             ORDER BY s.run_id, s.epoch""", [study.name, list(FINISHED)])
    jobs = path_cost.sample_snapshots([SnapshotJob(**r) for r in snapshots.iter_rows(named=True)],
                                      seed=study.graphs.seed)
    sets = {"all": PROPERTIES, **{path_cost.key_of(p): tuple(p) for p in chosen["properties"].to_list() if p}}
    per_snapshot = path_cost.seconds_per_snapshot(jobs, study.graphs, sets)
    training = wh.query(f"""SELECT sum(m.seconds) AS train_all, avg(m.seconds) FILTER (m.epoch >= 1) AS epoch_seconds
                            FROM epoch_metrics m JOIN runs r USING (run_id) WHERE {FINISHED_RUN}""",
                        [study.name, list(FINISHED)])
    recorded = wh.query(f"""SELECT g.epoch, coalesce(g.seconds, 0) AS seconds FROM graphs g JOIN runs r USING (run_id)
                            WHERE {FINISHED_RUN}""", [study.name, list(FINISHED)])
    ks = sorted(set(chosen["k"]))
    rows = path_cost.decision_path_rows(
        chosen, per_snapshot, {k: int((snapshots["epoch"] <= k).sum()) for k in ks},
        float(training["epoch_seconds"][0]), float(training["train_all"][0]), len(jobs),
        {k: float(recorded.filter(pl.col("epoch") <= k)["seconds"].sum()) for k in ks})
    with wh.writer() as con:
        replace_where(con, "costs", rows.with_columns(pl.lit(study.name).alias("study")),
                      "study = ? AND list_contains(?, strategy)", [study.name, list(path_cost.STRATEGIES)])
    return rows
