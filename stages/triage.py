"""Triage: decide which runs of a study continue past epoch k, and stop the others.

Run by the training sweep between training every run to `triage.at_epoch` and continuing the kept
ones; not a command of its own. Once per study: resolves the predictor the spec's `triage:` names
(checked usable before anything trains), computes the graphs of snapshots 0..k with only the node
properties it uses (none when it reads no graph set), scores every run at k (`stages.score`),
applies the keep rule (`pipeline_lib.decisions.triage`) and writes `triage_decisions` in one
transaction. Every later run reads those decisions and never decides again (a spec whose triage
section changed is refused). Then the runs decided `stop` are recorded as stopped (idempotent),
and the decisions are published as a table.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import polars as pl

from pipeline_lib.decisions.path_cost import columns_used, properties_read
from pipeline_lib.decisions.scoring import ScoringError, check_compatible
from pipeline_lib.decisions.triage import TriageError, decide
from pipeline_lib.features import FEATURE_SETS, GRAPH_BASE_SETS
from pipeline_lib.run_state import RunStore
from pipeline_lib.spec import KeepPGood, Study, expand_runs
from pipeline_lib.vocabulary import Decision
from warehouse.db import Warehouse
from warehouse.registry import classification_twin, load_predictor
from warehouse.runs import record_runs
from warehouse.triage import record_decisions, recorded_decisions, undecided_runs

from . import graph_metrics
from .context import StudyContext
from .report import artifact_key, artifact_rows
from .score import choose_predictor, score_study

log = logging.getLogger(__name__)


def check(wh: Warehouse, study: Study) -> None:
    """Refuse a triage that cannot run: no usable predictor, or a spec that contradicts the recorded
    decisions."""
    decisions = recorded_decisions(wh, study.name)
    if decisions.height:
        check_recorded(decisions, study)
    else:
        triage_predictor(wh, study)


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
    record_decisions(wh, study.name, decisions)
    return decisions


def run(ctx: StudyContext) -> list[str]:
    """Decide (once) and stop the runs decided `stop`; returns the run ids to continue."""
    study, wh = ctx.study, ctx.warehouse
    k = study.triage.at_epoch
    decisions = recorded_decisions(wh, study.name)
    if decisions.height:
        check_recorded(decisions, study)
        log.info("study %s was triaged at %s: using its %d decisions", study.name, decisions["decided_at"][0],
                 decisions.height)
    else:
        predictor = triage_predictor(wh, study)
        properties = needed_graph_properties(wh, predictor)
        if properties is not None:
            log.info("predictor %s reads graph features: computing graphs of epochs 0..%d with properties %s",
                     predictor["id"], k, ", ".join(properties) or "(none: Perron value only)")
            ctx.stage("graph-metrics", graph_metrics.run, until_epoch=k, properties=properties)
        decisions = decide_triage(wh, study, predictor["id"])
    kept = decisions.filter(decisions["decision"] == Decision.KEEP)["run_id"].to_list()
    log.info("triage of %s at epoch %d (%s, predictor %s): keep %d of %d runs", study.name, k,
             decisions["keep_policy"][0], decisions["predictor_id"][0], len(kept), decisions.height)

    stop = set(decisions.filter(decisions["decision"] == Decision.STOP)["run_id"])
    configs = [c for c in expand_runs(study) if c.run_id in stop]
    record_runs(wh, study.name, configs, {c.run_id: RunStore(wh.data_dir, c.run_id).stop() for c in configs})
    undecided = undecided_runs(wh, study.name)
    if undecided:
        log.warning("%d run(s) of %s have no triage decision (added to the spec after it was made); they stay "
                    "at epoch %d", undecided, study.name, k)
    ctx.orchestration.publish_table(
        artifact_rows(decisions.select("rank", "run_id", "decision", "predicted", "low", "high", "p_good")),
        key=artifact_key(study.name, "triage"),
        description=f"triage of study {study.name} at epoch {k}: {decisions['keep_policy'][0]}, predictor "
                    f"{decisions['predictor_id'][0]}; kept {len(kept)} of {decisions.height}")
    return kept
