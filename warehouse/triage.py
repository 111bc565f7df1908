"""Triage decisions in the warehouse (schema/010_triage.sql): read back by every run, written once
per study in one transaction (the deciding is `stages.triage`)."""
from __future__ import annotations

import polars as pl

from pipeline_lib.decisions.triage import TriageError
from pipeline_lib.vocabulary import FINISHED

from .db import Warehouse, upsert


def recorded_decisions(wh: Warehouse, study: str) -> pl.DataFrame:
    return wh.query("SELECT * FROM triage_decisions WHERE study = ? ORDER BY rank", [study])


def record_decisions(wh: Warehouse, study: str, decisions: pl.DataFrame) -> None:
    """Write the study's decisions; refused when it has some already (they are never remade)."""
    with wh.writer() as con:
        if con.execute("SELECT count(*) FROM triage_decisions WHERE study = ?", [study]).fetchall()[0][0]:
            raise TriageError(f"study {study!r} has triage decisions already; they are never remade")
        upsert(con, "triage_decisions", decisions)


def undecided_runs(wh: Warehouse, study: str) -> int:
    """Runs of the study neither finished nor triaged (added to the spec after the decisions)."""
    return wh.query("""SELECT count(*) AS n FROM runs WHERE study = ? AND NOT list_contains(?, status)
                       AND run_id NOT IN (SELECT run_id FROM triage_decisions WHERE study = ?)""",
                    [study, list(FINISHED), study])["n"][0]
