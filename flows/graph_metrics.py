"""Graph-metrics flow: every snapshot of a study becomes a rolled graph, node metrics and summaries.

    python -m flows.graph_metrics --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb] [--recompute]

Skips the snapshots whose graph is current (`pipeline_lib.fingerprints.GRAPHS`) and fans batches of
the others out on a process pool or Ray, loading each batch as it finishes. The stage:
stages/graph_metrics.py.
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, execution_from_args, load_runnable_study, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.spec import ExecutionSpec
from stages import graph_metrics as stage

from ._orchestration import run_stage, study_context


@flow(name="graph-metrics", log_prints=True)
def graph_metrics(spec: str, warehouse: str | None = None, recompute: bool = False,
                  execution: ExecutionSpec | None = None, until_epoch: int | None = None,
                  properties: list[str] | None = None) -> dict:
    """Compute the graphs of every pending snapshot of the study; returns counts. `execution` overrides the spec's."""
    with study_context(spec, warehouse, execution) as context:
        return run_stage(stage.run, context,
                         {"recompute": recompute, "until_epoch": until_epoch, "properties": properties})


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    study = load_runnable_study(args.spec)  # validate before starting Prefect, so bad specs fail fast and plainly
    execution = execution_from_args(args, study)
    check_warehouse("graph_metrics", args, study.name)
    graph_metrics(args.spec, args.warehouse, args.recompute, execution, args.until_epoch)


if __name__ == "__main__":
    run_cli(main)
