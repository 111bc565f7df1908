"""A small real study for the prediction tests, trained once per session without Prefect:
28 LeNet runs on 400 digits (7 configurations, one of which diverges, 2 widths, 2 seeds, 4 epochs),
with graph tables filled by the graph stage's own library calls (rolled graphs, node properties,
summaries, staged and loaded as the flow does), closeness and betweenness from 8 sampled sources."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from pipeline_lib.graphs.snapshot_metrics import SnapshotJob, process_snapshots
from pipeline_lib.spec import Study
from tests.conftest import train_in_process, write_spec
from warehouse.db import Warehouse
from warehouse.graphs import load_staged_graphs, pending_snapshots, stage_graph_batch

SMALL_STUDY = {
    "name": "predict-small",
    "samples": 7,
    "epochs": 4,
    "sweep": {"lr": [0.002, 0.005, 0.01, 0.03, 0.1, 0.3, 1e6], "dropout": [0.0, 0.25, 0.5], "batch_size": [64]},
    "predict": {"k_epochs": [1, 3], "n_folds": 3},
    "graphs": {"exact_limit": 0, "pivots": 8},
}


@dataclass(frozen=True)
class SmallStudy:
    spec: Path
    study: Study
    warehouse: Warehouse


def build_study(directory: Path, **overrides) -> SmallStudy:
    """Train every run of the spec with the library, load the warehouse, compute its graphs."""
    spec = write_spec(directory, **{**SMALL_STUDY, **overrides})
    wh = Warehouse(directory / "w.duckdb")
    study = train_in_process(spec, wh)
    jobs = [SnapshotJob(**row) for row in pending_snapshots(wh, study.name, study.graphs).iter_rows(named=True)]
    batch = process_snapshots(jobs, wh.data_dir, study.graphs)
    stage_graph_batch(wh.data_dir, batch.graphs, batch.summaries, study.graphs)
    load_staged_graphs(wh)
    return SmallStudy(spec, study, wh)


@pytest.fixture(autouse=True, scope="session")
def single_threaded_numerics():
    """Like the flows' workers: tiny fits drown in OpenMP thread start-up otherwise."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="session")
def small_study(tmp_path_factory) -> SmallStudy:
    return build_study(tmp_path_factory.mktemp("predict-small"))
