"""Triage at the command line's edge: refuse, before Prefect starts, a triage that cannot run (the
triage itself is a stage of the training sweep: stages/triage.py)."""
from __future__ import annotations

from pathlib import Path

from pipeline_lib.corpus import CorpusStale
from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.decisions.triage import TriageError
from pipeline_lib.spec import Study
from stages import triage
from warehouse.db import Warehouse

TRIAGE_ERRORS = (TriageError, ScoringError, RegistryError, CorpusStale)  # bad input of a triage: exit 2, no traceback


def restart_triage(warehouse: str, study: Study) -> None:
    """--restart-triage: start the study's recorded triage over (`stages.triage.restart`), before it is checked."""
    if study.triage is None:
        raise TriageError(f"--restart-triage: study {study.name!r} has no triage: section")
    if Path(warehouse).is_file():
        triage.restart(Warehouse(warehouse), study)


def check_triage(warehouse: str, study: Study) -> None:
    """Refuse a triage that cannot run: a rung with no usable source of scores (a named predictor in
    a warehouse that does not exist yet, none registered, or of a study that does not fit), or a
    spec that contradicts the recorded decisions. Creates no warehouse."""
    if study.triage is None:
        return
    triage.check(Warehouse(warehouse) if Path(warehouse).is_file() else None, study)
