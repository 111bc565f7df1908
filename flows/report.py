"""Report flow: the study's Markdown report and figures, and the same tables as Prefect artifacts.

    python -m flows.report --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Writes reports/<study>/report.md with PNG figures beside it (stages/report.py). The report and its
tables are published as artifacts on the run the user started: this flow's when run alone; in a
study, the study run publishes them.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from stages import report as stage
from stages.report import artifact_key

from ._orchestration import run_stage, study_context


def publish_report(study_name: str, result: dict) -> None:
    """The report (figures embedded) and its tables as keyed artifacts of the current flow run; the
    summary table's description carries the verdict."""
    create_markdown_artifact(result["markdown"], key=artifact_key(study_name, "report"),
                             description=f"report of study {study_name} ({result['path']})")
    for name, rows in result["tables"].items():
        if rows:
            description = "\n".join(f"- {line}" for line in result["verdict"]) if name == "summary" else ""
            create_table_artifact(rows, key=artifact_key(study_name, name),
                                  description=f"{name} of study {study_name}\n\n{description}".strip())


@flow(name="report", log_prints=True)
def report(spec: str, warehouse: str | None = None, reports_dir: str | None = None) -> dict:
    """Write and publish the report; returns its path, the summary table (as rows), the verdict, the
    Markdown with embedded figures and the tables."""
    with study_context(spec, warehouse) as context:
        result = run_stage(stage.run, context, {"reports_dir": reports_dir})
    if result["path"]:
        publish_report(context.study.name, result)
    return result


if __name__ == "__main__":
    run_warehouse_stage(report, __spec__.name, __doc__)
