"""Triage: decide, at one rung, which runs of its cohort continue, and stop the others.

Run by the training sweep after training the rung's cohort (the runs kept at the rung before; at
the first rung every run) to the rung; not a command of its own. Once per rung: the cohort is
decided when each member has reached the rung or failed (a failed or diverged run gets no decision
and blocks nobody; `decisions.triage.split_cohort`). The rung's source of scores is resolved
(`decisions.predictor_source`: with `auto`, a registered predictor whose study matches, else the
corpus predictor, else the test accuracy at the rung), logged with why and every difference
between the studies by name; with a predictor, the graphs of snapshots 0..rung are computed with
only the node properties it uses (none when it reads no graph set) and the runs scored
(`stages.score`). The keep rule (`decisions.triage.decide`) is applied and the decisions written
in one transaction, with the source, the reason, the differences and the seconds the graphs and
scoring took. Every later run reads them and never decides again (a spec whose rungs or keep rule
changed is refused). Then the runs decided `stop` are recorded as stopped (idempotent), and the
decisions are published as a table.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import polars as pl

from pipeline_lib.corpus import CorpusStale
from pipeline_lib.decisions.keep import kept_count
from pipeline_lib.decisions.predictor_source import auto_source, corpus_predictor, named_source
from pipeline_lib.decisions.savings import triage_savings
from pipeline_lib.decisions.sources import ScoreSource, named_corpus
from pipeline_lib.decisions.triage import TriageError, decide, split_cohort
from pipeline_lib.run_state import RunStore
from pipeline_lib.spec import KeepPGood, Study, expand_runs
from pipeline_lib.vocabulary import Decision, RunStatus
from warehouse.db import Warehouse
from warehouse.registry import ranked_predictors, registered_source
from warehouse.runs import record_runs, recorded_study
from warehouse.triage import (cohort, forget_triage, record_decisions, record_savings, recorded_decisions,
                              savings_inputs, undecided_runs)

from . import graph_metrics
from .context import StudyContext
from .report import artifact_key, artifact_rows
from .score import choose_source, score_study

log = logging.getLogger(__name__)
RESTART = "python -m flows.train_sweep --spec SPEC --warehouse WAREHOUSE --restart-triage"


def check(wh: Warehouse | None, study: Study) -> None:
    """Refuse, before anything trains, a triage that cannot run: a rung with no usable source of
    scores, or a spec that contradicts the recorded decisions. `wh` None: no warehouse yet."""
    decided = recorded_decisions(wh, study.name) if wh is not None else pl.DataFrame()
    if decided.height:
        check_recorded(decided, study)
    for rung, cohort in planned_cohorts(study).items():
        if not decided.height or rung not in set(decided["rung"]):
            rung_source(wh, study, rung, cohort)


def planned_cohorts(study: Study) -> dict[int, int | None]:
    """Per rung, the runs its cohort will hold as far as the spec says: every run at the first rung,
    then what the keep rule keeps (None after a P(good) rule: it keeps an unknown number)."""
    n: int | None = len(expand_runs(study))
    cohorts = {}
    for rung in study.triage.rungs:
        cohorts[rung] = n
        keep = study.triage.keep_rule
        n = None if n is None or isinstance(keep, KeepPGood) else kept_count(keep, n)
    return cohorts


def check_recorded(decisions: pl.DataFrame, study: Study) -> None:
    """Refuse a spec whose triage differs from the one already decided (decisions are never remade)."""
    triage = study.triage
    for rung, policy in decisions.select("rung", "keep_policy").unique().sort("rung").iter_rows():
        if rung not in triage.rungs or policy != triage.policy:
            row = decisions.filter(pl.col("rung") == rung).row(0, named=True)
            raise TriageError(f"study {study.name!r} was triaged at epoch {rung} with keep {policy!r} ({row['source']} "
                              f"{row['predictor_id'] or ''}, {row['decided_at']:%Y-%m-%d %H:%M}); the spec now says "
                              f"rungs {triage.rungs}, keep {triage.policy!r}. Decisions are made once: restore the "
                              f"spec's triage section, or start over with {RESTART} (the runs it stopped train "
                              f"again from the start)")


def restart(wh: Warehouse, study: Study) -> int:
    """Start the study's triage over (`--restart-triage`): forget its decisions, and end the states of
    the runs it stopped (a stopped run keeps no weights to resume), so they train again from the start
    and the next rung decides anew; the kept runs go on as they are. Returns how many runs restart."""
    stopped = wh.query("SELECT run_id FROM runs WHERE study = ? AND status = ?",
                       [study.name, RunStatus.STOPPED.value])["run_id"].to_list()
    for run_id in stopped:
        RunStore(wh.data_dir, run_id).path.unlink(missing_ok=True)
    forget_triage(wh, study.name)
    log.warning("triage of %s started over: its decisions forgotten, %d stopped run(s) will train again from the "
                "start", study.name, len(stopped))
    return len(stopped)


def rung_source(wh: Warehouse | None, study: Study, k: int, cohort: int | None = None) -> ScoreSource:
    """Where the scores at rung k come from (`predictor_source`), checked usable before anything
    trains: a named predictor must exist, fit the study (ScoringError naming what differs), rank no
    more runs together than the cohort holds, have residuals for intervals and load (RegistryError
    otherwise); keeping by P(good) needs a calibrated classification twin (TriageError otherwise,
    also when scoring by accuracy)."""
    triage = study.triage
    if cohort is None:  # not yet trained: as far as the spec says
        cohort = planned_cohorts(study).get(k)
    spec_runs = pl.DataFrame({"run_id": "(spec)", "dataset": study.dataset.name, "architecture": study.architectures})
    if triage.predictor == "auto":
        rows = ranked_predictors(wh, k, [study.dataset.name], study.architectures) if wh is not None else pl.DataFrame()
        candidates = [(registered_source(wh, row["id"]), recorded_study(wh, row["study"]))
                      for row in rows.iter_rows(named=True)]
        try:
            shipped, refused = corpus_predictor(k, study), None
        except CorpusStale as e:
            shipped, refused = None, str(e)
            log.warning("auto at epoch %d: the corpus predictor is refused: %s", k, e)
        source = auto_source(study, k, candidates, shipped, cohort, refused)
        source.check(spec_runs)
    else:  # the corpus predictor ships with the project: no warehouse needed, no one study to compare with
        source = named_corpus(triage.predictor, k)
        if source is None and wh is None:
            raise TriageError(f"triage.predictor {triage.predictor!r} names a registered predictor, but the warehouse "
                              "does not exist yet; register a study of this dataset there first (flows.study or "
                              "flows.register), or use predictor: auto or corpus")
        source = source or choose_source(wh, triage.predictor, k, spec_runs)
        source.check(spec_runs)
        theirs = recorded_study(wh, source.study) if source.study is not None else None
        source = named_source(study, triage.predictor, source, theirs)
        if cohort is not None and cohort < source.min_cohort:
            raise TriageError(f"triage.predictor {triage.predictor} ranks the runs of a cohort among themselves and "
                              f"needs at least {source.min_cohort} of them at epoch {k}; this study's cohort there has "
                              f"{cohort}. Add runs (samples, seeds or widths), keep more of them, or use predictor: "
                              "auto (test accuracy at the rung for so few runs)")
    if isinstance(triage.keep, KeepPGood):
        if cohort is None and source.min_cohort > 1:
            raise TriageError(f"{source.name} ranks the runs of a cohort among themselves (at least "
                              f"{source.min_cohort}), but keep {{p_good: {triage.keep.p_good}}} leaves an unknown "
                              f"number of runs for epoch {k}; decide at one rung, or keep a fraction or a number of runs")
        if not source.has_p_good:
            raise TriageError(source.p_good_refusal(triage.keep.p_good))
    return source


def _previous(study: Study, rung: int) -> int | None:
    rungs = study.triage.rungs
    return rungs[rungs.index(rung) - 1] if rungs.index(rung) else None


def decide_rung(ctx: StudyContext, rung: int) -> pl.DataFrame:
    """Decide the rung's cohort (those of its runs that reached it alive), record the decisions in
    one transaction and return them."""
    study, wh = ctx.study, ctx.warehouse
    triage = study.triage
    ready, excluded = split_cohort(cohort(wh, study.name, _previous(study, rung)), rung)
    for run_id, why in excluded.items():
        log.warning("run %s of %s gets no decision at epoch %d: %s", run_id, study.name, rung, why)
    if not ready:
        raise TriageError(f"no run of study {study.name!r} reached epoch {rung} alive ({len(excluded)} failed, "
                          "diverged or short of it); run the training again")
    source = rung_source(wh, study, rung, len(ready))
    log.info("deciding study %s at epoch %d: scores by %s; %s", study.name, rung, source.kind, source.reason)
    for mismatch in source.mismatches:
        log.warning("predictor %s differs from study %s: %s", source.id, study.name, mismatch)
    graph_seconds = 0.0
    if (properties := source.graph_properties) is not None:
        log.info("predictor %s reads graph features: computing graphs of epochs 0..%d with properties %s",
                 source.id, rung, ", ".join(properties) or "(none: Perron value only)")
        start = time.perf_counter()
        ctx.stage("graph-metrics", graph_metrics.run, until_epoch=rung, properties=properties)
        graph_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scores, _ = score_study(wh, study.name, source, rung, triage.confidence, [str(m) for m in source.mismatches])
    scoring_seconds = time.perf_counter() - start
    decisions = decide(scores.filter(pl.col("run_id").is_in(ready)), triage).with_columns(
        pl.lit(study.name).alias("study"), pl.lit(rung, pl.Int32).alias("rung"), pl.lit(source.kind).alias("source"),
        pl.lit(source.reason).alias("source_reason"), pl.lit(source.id, pl.Utf8).alias("predictor_id"),
        pl.lit([str(m) for m in source.mismatches], pl.List(pl.Utf8)).alias("mismatches"),
        pl.lit(triage.confidence).alias("confidence"), pl.lit(triage.policy).alias("keep_policy"),
        pl.lit(graph_seconds).alias("graph_seconds"), pl.lit(scoring_seconds).alias("scoring_seconds"),
        pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)).alias("decided_at"))
    record_decisions(wh, study.name, rung, decisions)
    return decisions


def run(ctx: StudyContext, rung: int) -> list[str]:
    """Decide rung `rung` (once) and stop the runs decided `stop`; returns the run ids to continue."""
    study, wh = ctx.study, ctx.warehouse
    decisions = recorded_decisions(wh, study.name, rung)
    if decisions.height:
        check_recorded(decisions, study)
        log.info("study %s was triaged at epoch %d on %s: using its %d decisions", study.name, rung,
                 decisions["decided_at"][0], decisions.height)
    else:
        decisions = decide_rung(ctx, rung)
    kept = decisions.filter(decisions["decision"] == Decision.KEEP)["run_id"].to_list()
    first = decisions.row(0, named=True)
    source = f"{first['source']} {first['predictor_id']}" if first["predictor_id"] else first["source"]
    log.info("triage of %s at epoch %d (%s, %s): keep %d of %d runs", study.name, rung, first["keep_policy"], source,
             len(kept), decisions.height)

    stop = set(decisions.filter(decisions["decision"] == Decision.STOP)["run_id"])
    configs = [c for c in expand_runs(study) if c.run_id in stop]
    record_runs(wh, study.name, configs, {c.run_id: RunStore(wh.data_dir, c.run_id).stop() for c in configs})
    if rung == study.triage.rungs[0] and (undecided := undecided_runs(wh, study.name)):
        log.warning("%d run(s) of %s have no triage decision (added to the spec after it was made, or failed "
                    "before it); they stay where they are", undecided, study.name)
    ctx.orchestration.publish_table(
        artifact_rows(decisions.select("rank", "run_id", "decision", "predicted", "low", "high", "p_good")),
        key=artifact_key(study.name, f"triage-{rung}"),
        description=f"triage of study {study.name} at epoch {rung}: {first['keep_policy']}, {source} "
                    f"({first['source_reason']}); kept {len(kept)} of {decisions.height}")
    return kept


def record_triage_savings(ctx: StudyContext, wall_seconds: float | None = None) -> dict:
    """The triage's row of `costs`: seconds trained and spent deciding against training every run; with
    `wall_seconds` (the triaged sweep's wall time in this command, when it trained something), that
    too, beside the training seconds (the wall time counts the pools, the subflows and idle workers)."""
    row = triage_savings(*savings_inputs(ctx.warehouse, ctx.study.name))
    if wall_seconds is not None:
        row["detail"] += f"; wall time of this command's triaged sweep {wall_seconds:.1f} s"
    record_savings(ctx.warehouse, ctx.study.name, row)
    log.info("triage of %s: %s", ctx.study.name, row["detail"])
    return row

