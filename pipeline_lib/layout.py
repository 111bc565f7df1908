"""Where a study's files lie under its data directory: the one place that names every path and glob
(Kedro's catalog idea). Needs only the standard library, so training, graphs and the warehouse
all read it.

    <data_dir>/snapshots/run_id=<run_id>/epoch=<epoch>/snapshot.parquet   weights per epoch
    <data_dir>/node_metrics/run_id=<run_id>/epoch=<epoch>/nodes.parquet   node properties per snapshot
    <data_dir>/runs/<run_id>/state.pt                                     a run's state
    <data_dir>/claims/runs.lock, claims/graphs.lock                       claims on runs and on graphs
    <data_dir>/progress/<sweep>/<unit>.json                               live per-epoch progress
    <data_dir>/predictors/<id>.skops                                      registered predictors
    <data_dir>/staged/graphs/                                             graph batches not yet loaded
    <data_dir>/quarantine/                                                damaged files, with records

Reports are not data: they go to `reports/<study>/` (flows.report).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NODE_METRICS_GLOB = "node_metrics/*/*/nodes.parquet"


@dataclass(frozen=True)
class DataLayout:
    """The paths under one data directory."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def snapshot(self, run_id: str, epoch: int) -> Path:
        return self.root / "snapshots" / f"run_id={run_id}" / f"epoch={epoch}" / "snapshot.parquet"

    def node_metrics(self, run_id: str, epoch: int) -> Path:
        return self.root / "node_metrics" / f"run_id={run_id}" / f"epoch={epoch}" / "nodes.parquet"

    def run_state(self, run_id: str) -> Path:
        return self.root / "runs" / run_id / "state.pt"

    @property
    def run_claims(self) -> Path:
        return self.root / "claims" / "runs.lock"

    @property
    def graph_claims(self) -> Path:
        return self.root / "claims" / "graphs.lock"

    def progress(self, sweep: str) -> Path:
        """The folder where the units of one training sweep report their epochs."""
        return self.root / "progress" / sweep

    def predictor(self, predictor_id: str) -> Path:
        return self.root / "predictors" / f"{predictor_id}.skops"

    @property
    def predictors(self) -> Path:
        return self.root / "predictors"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def staged_graphs(self) -> Path:
        return self.root / "staged" / "graphs"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"
