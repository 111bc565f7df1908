"""Triage at the command line's edge: refuse, before Prefect starts, a triage that cannot run (the
triage itself is a stage of the training sweep: stages/triage.py)."""
from __future__ import annotations

from pathlib import Path

from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.decisions.triage import TriageError
from pipeline_lib.spec import Study
from stages import triage
from warehouse.db import Warehouse

TRIAGE_ERRORS = (TriageError, ScoringError, RegistryError)  # bad input of a triage: exit 2, no traceback


def check_triage(warehouse: str, study: Study) -> None:
    """Refuse a triage that cannot run: no warehouse with registered predictors, no usable predictor,
    or a spec that contradicts the recorded decisions."""
    if study.triage is None:
        return
    if not Path(warehouse).is_file():
        raise TriageError(f"triage needs registered predictors, but warehouse {warehouse} does not exist; register "
                          "a study of this dataset there first (flows.study or flows.register)")
    triage.check(Warehouse(warehouse), study)
