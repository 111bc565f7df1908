"""Report flow: the study's Markdown report and figures, and the same tables as Prefect artifacts.

    python -m flows.report --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

Writes reports/<study>/report.md with PNG figures beside it. Every number is read from the
warehouse (evaluations, predictions, costs).
"""
from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline_lib.report import ReportInputs, build_report
from pipeline_lib.spec import load_study
from warehouse.db import Warehouse
from warehouse.predict import report_tables

from ._cli import run_warehouse_stage

REPORTS_DIR = Path("reports")


def _artifact_key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def _rows(frame: pl.DataFrame) -> list[dict]:
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


@flow(name="report", log_prints=True)
def report(spec: str, warehouse: str | None = None, reports_dir: str | None = None) -> dict:
    """Write the report; returns its path and the summary table (as rows)."""
    study = load_study(spec)
    wh = Warehouse(warehouse) if warehouse else Warehouse()
    out_dir = Path(reports_dir or REPORTS_DIR) / study.name
    inputs = ReportInputs(**report_tables(wh, study.name))
    if inputs.evaluations.is_empty():
        get_run_logger().warning("no evaluations for %s yet; run the evaluate flow first", study.name)
        return {"path": None, "summary": [], "predictor": None, "verdict": []}
    markdown, tables, predictor = build_report(study, inputs, out_dir)
    path = out_dir / "report.md"
    path.write_text(markdown)
    create_markdown_artifact(markdown, key=_artifact_key(study.name, "report"),
                             description=f"report of study {study.name} ({path})")
    for name, table in tables.items():
        if table.height:
            create_table_artifact(_rows(table), key=_artifact_key(study.name, name),
                                  description=f"{name} of study {study.name}")
    get_run_logger().info("report: %s", path.resolve())
    return {"path": str(path.resolve()), "summary": _rows(tables["summary"]), "predictor": predictor,
            "verdict": tables["verdict"]["verdict"].to_list()}


if __name__ == "__main__":
    run_warehouse_stage(report, __doc__.splitlines()[0])
