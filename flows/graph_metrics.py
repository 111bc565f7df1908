"""Graph-metrics flow: every snapshot of a study becomes a rolled graph, node metrics and summaries.

    python -m flows.graph_metrics --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb] [--recompute]

Skips the snapshots whose graph is current (`pipeline_lib.fingerprints.GRAPHS`) and fans batches of
the others out on a process pool or Ray, loading each batch as it finishes. The stage:
stages/graph_metrics.py.
"""
from __future__ import annotations

from prefect import flow

from pipeline_lib.spec import ExecutionSpec
from stages import graph_metrics as stage

from ._cli import execution_from_args, load_runnable_study, run_cli, study_arguments
from ._orchestration import run_stage, study_context


@flow(name="graph-metrics", log_prints=True)
def graph_metrics(spec: str, warehouse: str | None = None, recompute: bool = False,
                  execution: ExecutionSpec | None = None, until_epoch: int | None = None,
                  properties: list[str] | None = None) -> dict:
    """Compute the graphs of every pending snapshot of the study; returns counts. `execution` overrides the spec's."""
    return run_stage(stage.run, study_context(spec, warehouse, execution),
                     {"recompute": recompute, "until_epoch": until_epoch, "properties": properties})


def main() -> None:
    parser = study_arguments(__doc__.splitlines()[0])
    parser.add_argument("--recompute", action="store_true", help="recompute snapshots already in the warehouse")
    args = parser.parse_args()
    study = load_runnable_study(args.spec)  # validate before starting Prefect, so bad specs fail fast and plainly
    graph_metrics(args.spec, args.warehouse, args.recompute, execution_from_args(args, study))


if __name__ == "__main__":
    run_cli(main)
