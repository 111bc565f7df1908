"""Report flow: the study's Markdown report and figures, and the same tables as Prefect artifacts.

    python -m flows.report --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Writes reports/<study>/report.md with PNG figures beside it. Every number is read from the
warehouse (the leaderboard and predictor_standing views, comparisons, predictions, costs). The report
and its tables are published as artifacts on the run the user started: this flow's when run alone;
in a study, the study run publishes them.
"""
from __future__ import annotations

from ._cli import answer_early, run_warehouse_stage

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

import base64
import re
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext

from pipeline_lib.report import ReportInputs, build_report
from pipeline_lib.spec import load_study
from warehouse.predict import report_tables

from ._runtime import open_warehouse

REPORTS_DIR = Path("reports")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lower-case letters, digits and dashes) from its parts, e.g. study and table."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def artifact_rows(frame: pl.DataFrame) -> list[dict]:
    """A frame as the rows of a table artifact, floats rounded to 4 places."""
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def _embed_figures(markdown: str, out_dir: Path) -> str:
    """The Markdown with each `![..](x.png)` as a data URI: the UI cannot reach files beside the report."""
    def data_uri(m: re.Match) -> str:
        png = base64.b64encode((out_dir / m[2]).read_bytes()).decode()
        return f"![{m[1]}](data:image/png;base64,{png})"
    return re.sub(r"!\[([^\]]*)\]\(([^)\s:]+\.png)\)", data_uri, markdown)


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
    """Write the report; returns its path, the summary table (as rows), the verdict, the Markdown with
    embedded figures and the tables, which are published here unless a parent flow (the study) does."""
    study = load_study(spec)
    wh = open_warehouse(warehouse, study.execution, study.name)
    wh.migrate()  # the views it reads as this code defines them, on a file last written by older code too
    out_dir = Path(reports_dir or REPORTS_DIR) / study.name
    inputs = ReportInputs(**report_tables(wh, study.name))
    if inputs.leaderboard.is_empty():
        get_run_logger().warning("no evaluations for %s yet; run the evaluate flow first", study.name)
        return {"path": None, "summary": [], "predictor": None, "verdict": []}
    markdown, tables, predictor = build_report(study, inputs, out_dir)
    path = out_dir / "report.md"
    path.write_text(markdown)
    # the summary stays unrounded: the printed table rounds once, as the report does
    result = {"path": str(path.resolve()), "summary": tables["summary"].to_dicts(), "predictor": predictor,
              "verdict": tables["verdict"]["verdict"].to_list(), "markdown": _embed_figures(markdown, out_dir),
              "tables": {name: artifact_rows(table) for name, table in tables.items()}}
    if FlowRunContext.get().flow_run.parent_task_run_id is None:
        publish_report(study.name, result)
    get_run_logger().info("report: %s", path.resolve())
    return result


if __name__ == "__main__":
    run_warehouse_stage(report, __spec__.name, __doc__)
