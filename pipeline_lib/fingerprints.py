"""What makes a stored result current: one declared policy per stage, as Prefect's cache policies do.

Every stage stores the fingerprint of each unit it computes (a snapshot's graph, a feature set of a
run at k, a prediction stage's inputs, a saved predictor) and computes again the units whose stored
fingerprint differs from the one the current spec and code give, so that "done" means the same
thing everywhere and a changed option or function never leaves stale results behind.

A `DonePolicy` names what a unit depends on: the spec's options, the inputs it reads, an explicit
list of the modules whose code made it (a module not listed never invalidates it: editing the
test-only unrolled graph builder recomputes no graph) and, for files that outlive this checkout,
the library versions that read them back. The policies of every stage are below, in one place.
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel

from .spec import GraphOptions

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def digest(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def _code(path: Path) -> str:
    """The file's syntax tree without docstrings: comments, layout and documentation never recompute."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def module_path(name: str) -> Path:
    """The source file of a project module, found without importing it ('pkg' is pkg/__init__.py)."""
    path = PROJECT_ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def source_digest(*paths: Path) -> str:
    """Digest of the files' code (each named by its file name, so moving a file keeps its digest)."""
    return digest(*(f"{p.name}:{_code(p)}" for p in paths))


@dataclass(frozen=True)
class DonePolicy:
    """When a stage's stored unit is current: the same `options` of the spec, the same `inputs`, the
    same code of exactly `modules` (dotted names of project modules, in this order) and the same
    versions of `libraries` (distribution names)."""

    stage: str
    options: tuple[str, ...]
    inputs: tuple[str, ...]
    modules: tuple[str, ...]
    libraries: tuple[str, ...] = ()

    def code(self) -> str:
        """Digest of the declared modules' code."""
        return source_digest(*(module_path(m) for m in self.modules))

    def option_values(self, spec: BaseModel) -> list[str]:
        """The declared options (sections of the study spec) as JSON, in declared order."""
        return [getattr(spec, name).model_dump_json() for name in self.options]

    def pins(self) -> dict[str, str]:
        """What a file made under this policy needs to be read back as it was made: the code's digest
        and each library's installed version."""
        return {"code": self.code(), **{library: version(library) for library in self.libraries}}


GRAPHS = DonePolicy(
    "graph_metrics", options=("graphs",), inputs=("snapshot file", "node count"),
    modules=tuple(f"pipeline_lib.graphs.{m}" for m in
                  ("layered", "properties", "rolled", "snapshot_metrics", "summaries", "template", "tracing")))
FEATURES = DonePolicy(
    "features", options=(), inputs=("runs", "epoch_metrics", "snapshots", "fingerprints of the graphs read"),
    modules=("pipeline_lib.features", *(f"pipeline_lib.features.{m}" for m in
                                        ("curves", "graph", "hparams", "temporal", "weights"))))
_FITTING = tuple(f"pipeline_lib.prediction.{m}" for m in ("evaluation", "metrics", "models", "targets"))
EVALUATE = DonePolicy(
    "evaluate", options=("predict",), inputs=("features", "runs", "graph seconds"),
    modules=(*_FITTING, "pipeline_lib.prediction.costs", "stages.evaluate"))
WIDTH_TRANSFER = DonePolicy(
    "width_transfer", options=("predict", "width_transfer"), inputs=("features", "runs", "graph seconds"),
    modules=(*_FITTING, "stages.width_transfer"))
REGISTER = DonePolicy(
    "register", options=("predict", "graphs"), inputs=("the evaluate stage's fingerprint",),
    modules=("pipeline_lib.decisions.registry", "pipeline_lib.decisions.uncertainty",
             "pipeline_lib.decisions.path_cost", "pipeline_lib.prediction.models", "pipeline_lib.prediction.targets",
             "stages.register"))
# A saved predictor: the code of the classes its file holds (the pipeline's steps, the rank scorer)
# and the libraries that write and read it.
PREDICTOR = DonePolicy(
    "predictor", options=(), inputs=("skops file",), modules=("pipeline_lib.prediction.models",),
    libraries=("scikit-learn", "skops", "numpy", "scipy"))


def graph_fingerprints(options: GraphOptions, nodes: list[int]) -> dict[int, str]:
    """{node count: fingerprint} of graphs of those sizes under `options` and the current graph code.

    Only what changes a graph of that size counts: the sampled sources of closeness and betweenness
    (0 = exact, as `properties` decides it) and their seed only when sampling, so changing `pivots`
    or `exact_limit` recomputes just the graphs on the sampled side. A graph of some properties only
    (`properties`, set by triage) has its own fingerprint, so the full stage computes it again.
    """
    code = GRAPHS.code()
    common = options.model_dump(exclude={"exact_limit", "pivots", "seed", "properties"})
    if options.properties is not None:  # unset, the fingerprints of graphs made before the option stay
        common["properties"] = sorted(options.properties)
    out = {}
    for n in nodes:
        sources = 0 if n <= options.exact_limit or options.pivots >= n else options.pivots
        used = {**common, "sources": sources, **({"seed": options.seed} if sources else {})}
        out[n] = digest("graph", code, repr(sorted(used.items())))
    return out


def feature_fingerprints(feature_set: str, graph_inputs: list[str]) -> list[str]:
    """Fingerprints of a base feature set under the current feature code, one per run; `graph_inputs`
    holds per run the fingerprints of the graphs the set read ('' for a set that reads none), so
    recomputed graphs recompute the graph sets built on them."""
    code = FEATURES.code()
    return [digest("features", feature_set, code, graphs) for graphs in graph_inputs]


def predictor_pins() -> str:
    """The pins a saved predictor is recorded with (`PREDICTOR`), as JSON."""
    return json.dumps(PREDICTOR.pins(), sort_keys=True)
