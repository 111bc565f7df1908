""""Done" is declared per stage (`pipeline_lib.fingerprints`): each rule covers the modules its compute
functions import, read here a second way (bytecode, resolved by importlib); editing a module outside
a stage's list leaves its results current, editing one inside recomputes them. Checked on a copy of
the project whose code is really edited, each time in a fresh interpreter that imports the copy."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from modulefinder import ModuleFinder
from pathlib import Path

import polars as pl
import pytest

from pipeline_lib import fingerprints
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
from warehouse.registry import registered_source

def loads(wh, pid):
    try:
        registered_source(wh, pid).model
        return True
    except RegistryError as e:
        return str(e)

graphs, predictors = Warehouse(sys.argv[1]), Warehouse(sys.argv[2])
print(json.dumps({"pending": pending_snapshots(graphs, "g", GraphOptions()).height,
                  "loads": [loads(predictors, pid) for pid in predictors.query("SELECT id FROM predictors")["id"]]}))
"""


def _bytecode_imports(name: str) -> set[str]:
    """The library modules that module `name` imports, found in its bytecode (every function's too) and
    resolved by importlib: `from pkg import x` counts pkg.x when that is a module, else pkg."""
    spec = importlib.util.find_spec(name)
    package = name if spec.submodule_search_locations else name.rpartition(".")[0]
    codes, found = [compile(Path(spec.origin).read_text(), spec.origin, "exec")], set()
    while codes:
        code = codes.pop()
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
        for kind, args in ModuleFinder().scan_opcodes(code):
            if kind not in ("absolute_import", "relative_import"):
                continue
            level, fromlist, target = args if kind == "relative_import" else (0, *args)
            base = importlib.util.resolve_name("." * level + (target or ""), package).rstrip(".") if level else target
            if not base.startswith("pipeline_lib"):
                continue
            is_package = importlib.util.find_spec(base).submodule_search_locations is not None
            for item in fromlist or [None]:
                sub = f"{base}.{item}" if item else None
                found.add(sub if sub and is_package and importlib.util.find_spec(sub) else base)
    return found


POLICIES = {"GRAPHS": fingerprints.GRAPHS, "EVALUATE": fingerprints.EVALUATE,
            "WIDTH_TRANSFER": fingerprints.WIDTH_TRANSFER, "REGISTER": fingerprints.REGISTER,
            "PREDICTOR": fingerprints.PREDICTOR, **{f"FEATURES[{b}]": p for b, p in fingerprints.FEATURES.items()}}


@pytest.mark.parametrize("name", POLICIES)
def test_each_rule_covers_every_library_module_its_compute_code_imports(name):
    policy = POLICIES[name]
    reached, todo = set(), list(policy.entries)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(_bytecode_imports(module) - set(fingerprints.NOT_SHAPING))
    assert set(policy.modules) == reached | set(policy.alone)
    assert len(policy.modules) == len(set(policy.modules))


def test_the_graph_rule_covers_the_snapshot_reader_and_the_models_the_template_traces():
    from pipeline_lib.graphs.snapshot_metrics import process_snapshots  # what the graph stage's units call

    graphs = fingerprints.GRAPHS
    assert process_snapshots.__module__ in graphs.entries
    models = {"pipeline_lib.models", *(f"pipeline_lib.models.{m}" for m in
                                       ("_common", "alexnet", "dropout", "lenet", "resnet", "vgg"))}
    assert {"pipeline_lib.snapshots", "pipeline_lib.graphs.rolled", "pipeline_lib.graphs.template",
            "pipeline_lib.graphs.tracing", *models} <= set(graphs.modules)
    assert "pipeline_lib.graphs.unrolled" not in graphs.modules  # the test-only builder makes no stored graph
    # a saved predictor's pins: the classes its file holds, as before (registered files stay loadable)
    assert fingerprints.PREDICTOR.modules == ("pipeline_lib.prediction.models",)


def test_each_base_feature_set_is_covered_by_its_own_code_only():
    features = fingerprints.FEATURES
    assert "pipeline_lib.features.graph" not in features["tse"].modules
    assert "pipeline_lib.features.weights" not in features["hparams"].modules
    assert "pipeline_lib.features.sets" not in {m for p in features.values() for m in p.modules}  # the unions
    assert {"pipeline_lib.features.weights", "pipeline_lib.features.curves"} <= set(features["weight_stats"].modules)
    assert "pipeline_lib.spec" in features["hparams"].modules  # its one-hot columns are the spec's choices


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
