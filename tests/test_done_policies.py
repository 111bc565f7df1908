""""Done" is declared per stage (`pipeline_lib.fingerprints`): editing a module outside a stage's list
leaves its results current, editing one inside recomputes them. Checked on a copy of the project
whose code is really edited, each time in a fresh interpreter that imports the copy."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline_lib.fingerprints import graph_fingerprints
from pipeline_lib.spec import GraphOptions
from tests.conftest import add_runs
from warehouse.db import Warehouse, upsert

ROOT = Path(__file__).resolve().parents[1]
NODES = 124

# In the copy: how many snapshots of study "g" the graph stage would compute, and whether each
# registered predictor of study "tiny" loads (True, or the refusal).
PROBE = """
import json, sys
from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.spec import GraphOptions
from warehouse.db import Warehouse
from warehouse.graphs import pending_snapshots
from warehouse.registry import load_predictor

def loads(wh, pid):
    try:
        load_predictor(wh, pid)
        return True
    except RegistryError as e:
        return str(e)

graphs, predictors = Warehouse(sys.argv[1]), Warehouse(sys.argv[2])
print(json.dumps({"pending": pending_snapshots(graphs, "g", GraphOptions()).height,
                  "loads": [loads(predictors, pid) for pid in predictors.query("SELECT id FROM predictors")["id"]]}))
"""


@pytest.fixture()
def graphed(tmp_path) -> Path:
    """A warehouse where run g's snapshots at epochs 0 and 1 have graphs made by this checkout's code."""
    wh = Warehouse(tmp_path / "graphs.duckdb")
    add_runs(wh, "g", [0.5], 1)
    run_id = wh.query("SELECT run_id FROM runs")["run_id"][0]
    with wh.writer() as con:
        upsert(con, "snapshots", pl.DataFrame({"run_id": run_id, "epoch": [0, 1], "path": ["s0", "s1"], "bytes": 1,
                                               "n_params": 1}))
        upsert(con, "graphs", pl.DataFrame({"run_id": run_id, "epoch": [0, 1], "nodes": NODES, "edges": 1,
                                            "seconds": 0.1, "fingerprint": graph_fingerprints(GraphOptions(), [NODES])[NODES]}))
    return wh.path


def _copy(to: Path) -> Path:
    for package in ("pipeline_lib", "stages", "warehouse"):
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "data", "*.duckdb*"))
    return to


def _edit(copy: Path, module: str) -> None:
    """A change of code, not of a comment: a new function at the end of the module."""
    path = copy / module
    path.write_text(path.read_text() + "\n\ndef _edited_in_the_copy():\n    return 1\n")


def _probe(copy: Path, graphs: Path, predictors: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(graphs), str(predictors)], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_unrelated_edits_keep_graphs_and_predictors_and_listed_ones_do_not(graphed, registered_tiny, tmp_path):
    copy = _copy(tmp_path / "copy")
    predictors = registered_tiny.path
    assert _probe(copy, graphed, predictors) == {"pending": 0, "loads": [True] * 8}  # the copy as it is

    # the test-only unrolled graph builder and the degenerate-study guard are in no list
    _edit(copy, "pipeline_lib/graphs/unrolled.py")
    _edit(copy, "pipeline_lib/prediction/guard.py")
    _edit(copy, "stages/score.py")
    assert _probe(copy, graphed, predictors) == {"pending": 0, "loads": [True] * 8}

    _edit(copy, "pipeline_lib/graphs/rolled.py")  # in GRAPHS' list: both graphs are computed again
    assert _probe(copy, graphed, predictors) == {"pending": 2, "loads": [True] * 8}

    _edit(copy, "pipeline_lib/prediction/models.py")  # the code a saved predictor holds: none loads
    refused = _probe(copy, graphed, predictors)["loads"]
    assert len(refused) == 8 and all("other model code or libraries (code " in r for r in refused)
