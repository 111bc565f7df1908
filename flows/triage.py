"""Triage flow: decide which runs of a study continue past epoch k, and stop the others.

Run by `train_sweep` between training every run to `triage.at_epoch` and continuing the kept ones;
not a command of its own. Once per study: computes the graphs of snapshots 0..k with only the node
properties the predictor uses (none when it reads no graph set), scores every run at k
(`scores`), applies the keep rule and writes `triage_decisions` in one transaction. Every later
run reads those decisions and never decides again (a spec whose triage section changed is
refused). Then the runs decided `stop` are recorded as stopped (idempotent), and the decisions are
published as a table artifact. Logic: warehouse/triage.py, pipeline_lib/decisions/triage.py.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.decisions.triage import TriageError
from pipeline_lib.run_state import RunStore
from pipeline_lib.spec import ExecutionSpec, Study, expand_runs, load_study
from pipeline_lib.vocabulary import Decision
from warehouse.db import Warehouse
from warehouse.runs import record_runs
from warehouse.triage import (check_recorded, decide_triage, needed_graph_properties, recorded_decisions,
                             triage_predictor, undecided_runs)

from ._runtime import open_warehouse
from .graph_metrics import graph_metrics
from .report import artifact_key, artifact_rows

TRIAGE_ERRORS = (TriageError, ScoringError, RegistryError)  # bad input of a triage: exit 2, no traceback


def check_triage(warehouse: str, study: Study) -> None:
    """Refuse, before Prefect starts, a triage that cannot run: no warehouse with registered
    predictors, no usable predictor, or a spec that contradicts the recorded decisions."""
    if study.triage is None:
        return
    if not Path(warehouse).is_file():
        raise TriageError(f"triage needs registered predictors, but warehouse {warehouse} does not exist; register "
                          "a study of this dataset there first (flows.study or flows.register)")
    wh = Warehouse(warehouse)
    decisions = recorded_decisions(wh, study.name)
    if decisions.height:
        check_recorded(decisions, study)
    else:
        triage_predictor(wh, study)


@flow(name="triage", log_prints=True)
def triage(spec: str, warehouse: str | None = None, execution: ExecutionSpec | None = None) -> list[str]:
    """Decide (once) and stop the runs decided `stop`; returns the run ids to continue."""
    logger = get_run_logger()
    study = load_study(spec)
    wh = open_warehouse(warehouse, execution or study.execution, study.name)
    k = study.triage.at_epoch
    decisions = recorded_decisions(wh, study.name)
    if decisions.height:
        check_recorded(decisions, study)
        logger.info("study %s was triaged at %s: using its %d decisions", study.name, decisions["decided_at"][0],
                    decisions.height)
    else:
        predictor = triage_predictor(wh, study)
        properties = needed_graph_properties(wh, predictor)
        if properties is not None:
            logger.info("predictor %s reads graph features: computing graphs of epochs 0..%d with properties %s",
                        predictor["id"], k, ", ".join(properties) or "(none: Perron value only)")
            graph_metrics(spec, warehouse, execution=execution, until_epoch=k, properties=properties)
        decisions = decide_triage(wh, study, predictor["id"])
    kept = decisions.filter(decisions["decision"] == Decision.KEEP)["run_id"].to_list()
    logger.info("triage of %s at epoch %d (%s, predictor %s): keep %d of %d runs", study.name, k,
                decisions["keep_policy"][0], decisions["predictor_id"][0], len(kept), decisions.height)

    stop = set(decisions.filter(decisions["decision"] == Decision.STOP)["run_id"])
    configs = [c for c in expand_runs(study) if c.run_id in stop]
    record_runs(wh, study.name, configs, {c.run_id: RunStore(wh.data_dir, c.run_id).stop() for c in configs})
    undecided = undecided_runs(wh, study.name)
    if undecided:
        logger.warning("%d run(s) of %s have no triage decision (added to the spec after it was made); they stay "
                       "at epoch %d", undecided, study.name, k)
    create_table_artifact(artifact_rows(decisions.select("rank", "run_id", "decision", "predicted", "low", "high",
                                                         "p_good")),
                          key=artifact_key(study.name, "triage"),
                          description=f"triage of study {study.name} at epoch {k}: {decisions['keep_policy'][0]}, predictor "
                                      f"{decisions['predictor_id'][0]}; kept {len(kept)} of {decisions.height}")
    return kept
