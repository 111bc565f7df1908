"""The main job: one study from spec to report, as one parent flow.

    .venv/bin/python -m flows.study --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

train_sweep -> graph_metrics -> features -> evaluate -> width_transfer -> register -> report.
Every stage skips what is already done, so a re-run after an interruption (or with more runs in the spec)
does only the missing work. The study's own flow run carries what a user looks for in the UI: a
progress artifact (stages done, runs trained, graphs computed), the report with its figures
embedded and its tables (the summary's description holds the verdict); its log ends with the
compact result table and the report's path.
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, execution_from_args, load_runnable_study, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

import polars as pl
from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from pipeline_lib.report.tables import display_table
from pipeline_lib.spec import ExecutionSpec, expand_runs
from pipeline_lib.vocabulary import ENDED
from stages import evaluate, features, graph_metrics, register, report, train_sweep, width_transfer
from stages.report import artifact_key

from ._orchestration import study_context
from .report import publish_report
from .triage import TRIAGE_ERRORS, check_triage, restart_triage

# in order; each runs as a subflow of the study's flow run, on the context the study opened
STAGES = {"train_sweep": ("train-sweep", train_sweep.run), "graph_metrics": ("graph-metrics", graph_metrics.run),
          "features": ("features", features.run), "evaluate": ("evaluate", evaluate.run),
          "width_transfer": ("width-transfer", width_transfer.run), "register": ("register", register.run),
          "report": ("report", report.run)}


def format_summary(rows: list[dict], predictor: str, headline: list[str]) -> str:
    """The verdict, then the compact table: feature sets x k for the table's predictor, pooled out-of-fold
    values with their 95% intervals, and the seed-agreement tau."""
    frame = display_table(pl.DataFrame(rows, infer_schema_length=None))
    with pl.Config(tbl_formatting="ASCII_MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1, float_precision=3, tbl_width_chars=250, fmt_str_lengths=40):
        return "\n".join([*[f"- {line}" for line in headline],
                          f"grouped cross-validation, predictor {predictor}: pooled out of fold [95% configuration-bootstrap interval]",
                          str(frame)])


def _progress_text(wh, name: str, planned_runs: int, done: list[str], stages: int) -> str:
    """Stages done, runs trained, graphs computed: read from the warehouse, as the views count them."""
    trained = wh.query("SELECT count(*) AS n FROM runs WHERE study = ? AND list_contains(?, status)",
                       [name, list(ENDED)])["n"][0]
    graphs = wh.query("SELECT graphs_done, snapshots FROM graph_progress WHERE study = ?", [name])
    graphs_done, snapshots = graphs.row(0) if graphs.height else (0, 0)
    return (f"stages done {len(done)}/{stages} ({', '.join(done) or 'none'}); runs trained {trained}/{planned_runs}; "
            f"graphs computed {graphs_done}/{snapshots} snapshots")


@flow(name="study", log_prints=True)
def study(spec: str, warehouse: str | None = None, reports_dir: str | None = None,
          execution: ExecutionSpec | None = None) -> dict:
    """Run every stage; returns the stages' results and the report path. `execution` overrides the spec's."""
    with study_context(spec, warehouse, execution) as context:
        name, wh = context.study.name, context.warehouse
        planned_runs = len(expand_runs(context.study))
        results: dict = {}
        progress = create_progress_artifact(0.0, key=artifact_key(name, "progress"),
                                            description=_progress_text(wh, name, planned_runs, [], len(STAGES)))
        for stage, (flow_name, run) in STAGES.items():
            results[stage] = context.stage(flow_name, run, **({"reports_dir": reports_dir} if stage == "report" else {}))
            update_progress_artifact(progress, 100.0 * len(results) / len(STAGES),
                                     _progress_text(wh, name, planned_runs, list(results), len(STAGES)))
    final = results["report"]
    if final["path"]:
        publish_report(name, final)
        print(format_summary(final["summary"], final["predictor"], final["verdict"]))
        print(f"report: {final['path']}")
    return results


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    checked = load_runnable_study(args.spec, trains=True, cross_validates=True)
    check_warehouse("study", args, checked.name)
    execution = execution_from_args(args, checked)
    if args.restart_triage:
        restart_triage(args.warehouse, checked)
    check_triage(args.warehouse, checked)
    study(args.spec, args.warehouse, execution=execution)


if __name__ == "__main__":
    run_cli(main, user_errors=TRIAGE_ERRORS)
