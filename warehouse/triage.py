"""Triage decisions in the warehouse (schema/010_triage.sql, 021_triage_rungs.sql): per rung, read
back by every run and written once in one transaction (the deciding is `stages.triage`); the
cohort a rung decides among; the triage's row of `costs`."""
from __future__ import annotations

import polars as pl

from pipeline_lib.decisions.savings import STRATEGY
from pipeline_lib.decisions.triage import TriageError
from pipeline_lib.vocabulary import FINISHED

from .db import Warehouse, replace_where, upsert


def recorded_decisions(wh: Warehouse, study: str, rung: int | None = None) -> pl.DataFrame:
    """The study's decisions at `rung` (None: at every rung), by rung and rank."""
    return wh.query("SELECT * FROM triage_decisions WHERE study = ? AND rung = coalesce(?, rung) ORDER BY rung, rank",
                    [study, rung])


def record_decisions(wh: Warehouse, study: str, rung: int, decisions: pl.DataFrame) -> None:
    """Write the study's decisions at a rung; refused when it has some there already (never remade)."""
    with wh.writer() as con:
        if con.execute("SELECT count(*) FROM triage_decisions WHERE study = ? AND rung = ?",
                       [study, rung]).fetchall()[0][0]:
            raise TriageError(f"study {study!r} has triage decisions at epoch {rung} already; they are never remade")
        upsert(con, "triage_decisions", decisions)


def cohort(wh: Warehouse, study: str, previous_rung: int | None) -> pl.DataFrame:
    """The runs a rung decides among, each with its status, last epoch of metrics (-1: none) and
    diverged_epoch: those kept at the previous rung, or at the first rung every run of the study."""
    return wh.query("""SELECT r.run_id, r.status, r.diverged_epoch, coalesce(max(m.epoch), -1) AS last_epoch
                       FROM runs r LEFT JOIN epoch_metrics m USING (run_id)
                       WHERE r.study = ? AND (?::INTEGER IS NULL OR r.run_id IN (
                           SELECT run_id FROM triage_decisions WHERE study = ? AND rung = ? AND decision = 'keep'))
                       GROUP BY ALL ORDER BY r.run_id""", [study, previous_rung, study, previous_rung])


def undecided_runs(wh: Warehouse, study: str) -> int:
    """Runs of the study neither finished nor triaged (added to the spec after the first rung's
    decisions, or failed before it and trained since)."""
    return wh.query("""SELECT count(*) AS n FROM runs WHERE study = ? AND NOT list_contains(?, status)
                       AND run_id NOT IN (SELECT run_id FROM triage_decisions WHERE study = ?)""",
                    [study, list(FINISHED), study])["n"][0]


def was_triaged(wh: Warehouse, study: str) -> bool:
    """Whether a triage stopped some of the study's runs (its finished runs are then the kept ones only)."""
    return wh.query("SELECT count(*) AS n FROM triage_decisions WHERE study = ? AND decision = 'stop'",
                    [study])["n"][0] > 0


def savings_inputs(wh: Warehouse, study: str) -> tuple[pl.DataFrame, pl.DataFrame, float]:
    """What `savings.triage_savings` reads: the study's runs, their recorded epoch seconds, and the
    decisions' graph and scoring seconds summed over rungs."""
    runs = wh.query("SELECT run_id, status, epochs, epochs_done, final_test_acc FROM runs WHERE study = ?", [study])
    epochs = wh.query("""SELECT m.run_id, m.epoch, m.seconds FROM epoch_metrics m JOIN runs r USING (run_id)
                         WHERE r.study = ?""", [study])
    work = wh.query("""SELECT coalesce(sum(seconds), 0) AS s FROM (SELECT rung, any_value(graph_seconds + scoring_seconds)
                       AS seconds FROM triage_decisions WHERE study = ? GROUP BY rung)""", [study])
    return runs, epochs, float(work["s"][0])


def forget_triage(wh: Warehouse, study: str) -> None:
    """Drop the study's triage decisions and its triage row of `costs` (a triage started over)."""
    with wh.writer() as con:
        con.execute("DELETE FROM triage_decisions WHERE study = ?", [study])
        con.execute("DELETE FROM costs WHERE study = ? AND strategy = ?", [study, STRATEGY])


def record_savings(wh: Warehouse, study: str, row: dict) -> None:
    """Replace the study's triage row of `costs`."""
    frame = pl.DataFrame([{**row, "study": study}])
    with wh.writer() as con:
        replace_where(con, "costs", frame, "study = ? AND strategy = ?", [study, STRATEGY])
