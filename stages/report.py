"""Report: the study's Markdown report and figures, and the same tables as rows to publish.

Writes reports/<study>/report.md with PNG figures beside it. Every number is read from the
warehouse (the leaderboard, predictor_standing and best_predictors views, comparisons, predictions,
costs). The orchestration publishes the report and its tables (`flows.report.publish_report`).
"""
from __future__ import annotations

import base64
import logging
import re
from pathlib import Path

import polars as pl

from pipeline_lib.report import ReportInputs, build_report
from warehouse.predict import report_tables

from .context import StudyContext

log = logging.getLogger(__name__)
REPORTS_DIR = Path("reports")


def artifact_key(*parts: str) -> str:
    """A published table's key (lower-case letters, digits and dashes) from its parts, e.g. study and table."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def artifact_rows(frame: pl.DataFrame) -> list[dict]:
    """A frame as the rows of a published table, floats rounded to 4 places."""
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def _embed_figures(markdown: str, out_dir: Path) -> str:
    """The Markdown with each `![..](x.png)` as a data URI: the UI cannot reach files beside the report."""
    def data_uri(m: re.Match) -> str:
        png = base64.b64encode((out_dir / m[2]).read_bytes()).decode()
        return f"![{m[1]}](data:image/png;base64,{png})"
    return re.sub(r"!\[([^\]]*)\]\(([^)\s:]+\.png)\)", data_uri, markdown)


def run(ctx: StudyContext, reports_dir: str | None = None) -> dict:
    """Write the report; returns its path, the summary table (as rows), the verdict, the Markdown with
    embedded figures and the tables."""
    study, wh = ctx.study, ctx.warehouse
    wh.migrate()  # the views it reads as this code defines them, on a file last written by older code too
    out_dir = Path(reports_dir or REPORTS_DIR) / study.name
    inputs = ReportInputs(**report_tables(wh, study.name))
    if inputs.leaderboard.is_empty():
        log.warning("no evaluations for %s yet; run the evaluate flow first", study.name)
        return {"path": None, "summary": [], "predictor": None, "verdict": []}
    markdown, tables, predictor = build_report(study, inputs, out_dir)
    path = out_dir / "report.md"
    path.write_text(markdown)
    # the summary stays unrounded: the printed table rounds once, as the report does
    result = {"path": str(path.resolve()), "summary": tables["summary"].to_dicts(), "predictor": predictor,
              "verdict": tables["verdict"]["verdict"].to_list(), "markdown": _embed_figures(markdown, out_dir),
              "tables": {name: artifact_rows(table) for name, table in tables.items()}}
    log.info("report: %s", path.resolve())
    return result
