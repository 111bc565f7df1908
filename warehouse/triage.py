"""Triage in the warehouse (schema/010_triage.sql): the predictor a study's `triage:` section
names, resolved once; the graph properties its scoring needs; the decisions, made once per study
in one transaction from the scores at epoch k and read back by every later run.
"""
from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

from pipeline_lib.decisions.path_cost import columns_used, properties_read
from pipeline_lib.decisions.scoring import ScoringError, check_compatible
from pipeline_lib.decisions.triage import TriageError, decide
from pipeline_lib.features import FEATURE_SETS, GRAPH_BASE_SETS
from pipeline_lib.spec import KeepPGood, Study
from pipeline_lib.vocabulary import FINISHED

from .db import Warehouse, upsert
from .registry import load_predictor
from .scores import choose_predictor, classification_twin, score_study


def recorded_decisions(wh: Warehouse, study: str) -> pl.DataFrame:
    return wh.query("SELECT * FROM triage_decisions WHERE study = ? ORDER BY rank", [study])


def check_recorded(decisions: pl.DataFrame, study: Study) -> None:
    """Refuse a spec whose triage differs from the one already decided (decisions are never remade)."""
    triage = study.triage
    row = decisions.row(0, named=True)
    if (row["at_epoch"], row["keep_policy"]) != (triage.at_epoch, triage.policy):
        raise TriageError(f"study {study.name!r} was triaged at epoch {row['at_epoch']} with keep "
                          f"{row['keep_policy']!r} (predictor {row['predictor_id']}, {row['decided_at']:%Y-%m-%d %H:%M}); the spec now says "
                          f"at_epoch {triage.at_epoch}, keep {triage.policy!r}. Decisions are made once: restore the "
                          f"spec's triage section, or delete the study's rows of triage_decisions to decide again")


def triage_predictor(wh: Warehouse, study: Study) -> dict:
    """The row of the predictor the spec's triage names (best, an id or a study name), checked
    usable for this study before anything trains: regression at k = at_epoch on this dataset and
    these architectures, with residuals for intervals, a calibrated classification twin when
    keeping by P(good), and a file that loads (RegistryError otherwise)."""
    triage = study.triage
    spec_runs = pl.DataFrame({"dataset": study.dataset.name, "architecture": study.architectures})
    row = choose_predictor(wh, triage.predictor, triage.at_epoch, spec_runs)
    check_compatible(spec_runs.with_columns(run_id=pl.lit("(spec)")), row)
    if not row["oof_residuals"]:
        raise ScoringError(f"predictor {row['id']} has no out-of-fold residuals to build intervals from; run the "
                           f"evaluate stage of study {row['study']}, then register again")
    if isinstance(triage.keep, KeepPGood):
        twin = classification_twin(wh, row)
        if twin is None or not twin[1]["calibration"]:
            raise TriageError(f"triage.keep {{p_good: {triage.keep.p_good}}} needs a calibrated classification twin of "
                              f"predictor {row['id']} (study {row['study']}, {row['feature_set']}, k = {row['k']}); "
                              "none is registered: keep a fraction or a number of runs instead")
    load_predictor(wh, row["id"])
    return row


def needed_graph_properties(wh: Warehouse, predictor: dict) -> list[str] | None:
    """Node properties the predictor (and its classification twin) really use, or None when it
    reads no graph set (then no graph needs computing)."""
    if not set(FEATURE_SETS[predictor["feature_set"]]) & set(GRAPH_BASE_SETS):
        return None
    models = [load_predictor(wh, predictor["id"])]
    if (twin := classification_twin(wh, predictor)) is not None:
        models.append(twin)
    return list(properties_read([c for model, row in models for c in columns_used(model, row["features"])]))


def decide_triage(wh: Warehouse, study: Study, predictor_id: str) -> pl.DataFrame:
    """Score every run at epoch k (table `scores`), keep or stop each run that has not diverged by
    the spec's rule, and write the decisions in one transaction; returns them. Refuses while a run
    of the study has not reached epoch k (a decision is final) or when decisions exist already."""
    triage = study.triage
    scores, plan = score_study(wh, study.name, predictor_id, triage.at_epoch, triage.confidence)
    total = wh.query("SELECT count(*) AS n FROM runs WHERE study = ?", [study.name])["n"][0]
    if scores.height < total:
        raise TriageError(f"{total - scores.height} run(s) of study {study.name!r} have not reached epoch "
                          f"{triage.at_epoch} (failed or still training); decisions are made once, for every run: "
                          "run the training again to bring them there")
    live = plan.runs.filter(pl.col("diverged_epoch").is_null())["run_id"]
    decisions = decide(scores.filter(pl.col("run_id").is_in(live.implode())), triage).with_columns(
        pl.lit(study.name).alias("study"), pl.lit(predictor_id).alias("predictor_id"),
        pl.lit(triage.at_epoch, pl.Int32).alias("at_epoch"), pl.lit(triage.confidence).alias("confidence"),
        pl.lit(triage.policy).alias("keep_policy"),
        pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("decided_at"))
    with wh.writer() as con:
        if con.execute("SELECT count(*) FROM triage_decisions WHERE study = ?", [study.name]).fetchall()[0][0]:
            raise TriageError(f"study {study.name!r} has triage decisions already; they are never remade")
        upsert(con, "triage_decisions", decisions)
    return decisions


def undecided_runs(wh: Warehouse, study: str) -> int:
    """Runs of the study neither finished nor triaged (added to the spec after the decisions)."""
    return wh.query("""SELECT count(*) AS n FROM runs WHERE study = ? AND NOT list_contains(?, status)
                       AND run_id NOT IN (SELECT run_id FROM triage_decisions WHERE study = ?)""",
                    [study, list(FINISHED), study])["n"][0]
