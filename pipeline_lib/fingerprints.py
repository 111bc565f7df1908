"""What makes a stored result current: one declared policy per stage, as Prefect's cache policies do.

Every stage stores the fingerprint of each unit it computes (a snapshot's graph, a feature set of a
run at k, a prediction stage's inputs, a saved predictor) and computes again the units whose stored
fingerprint differs from the one the current spec and code give, so that "done" means the same
thing everywhere and a changed option or function never leaves stale results behind.

A `DonePolicy` names what a unit depends on: the spec's options, the inputs it reads, the modules
holding its compute functions (`entries`: their code and that of every library module they import,
found by reading their imports, `import_closure`; a module they do not reach never invalidates it:
editing the test-only unrolled graph builder recomputes no graph) and, for files that outlive this
checkout, the library versions that read them back. The policies of every stage are below, in one
place; `DonePolicy.modules` lists what each covers.
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel

from .features import COMPUTE, BASE_SETS
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


# Imports are followed within the library only: it computes every stored value. Stage modules may be
# entries (a stage's own fitting loop), but their imports of stages.* orchestrate units and those of
# warehouse.* store and query them; what a stage reads from the warehouse is a declared input,
# fingerprinted by its values.
LIBRARY = "pipeline_lib"
# Library modules that a compute function imports but that shape no stored value, with why.
NOT_SHAPING = {
    "pipeline_lib.fingerprints": "the done rules themselves: what each covers is digested, not how it is found",
    "pipeline_lib.files": "atomic writes, quarantine, and reads through a reader the caller passes",
    "pipeline_lib.layout": "where a study's files lie, not what they hold",
    "pipeline_lib.placement": "which worker computes a unit, not what it computes",
}


def imported_modules(name: str) -> set[str]:
    """The library modules that module `name` imports anywhere in its code (a function's lazy import
    too), read from its syntax tree, not imported; `from pkg import sub` counts the module pkg.sub."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if module_path(f"{base}.{alias.name}").is_file() else base)
    return {m for m in found if m.split(".")[0] == LIBRARY and module_path(m).is_file()}


def import_closure(entries: tuple[str, ...]) -> tuple[str, ...]:
    """`entries` and every library module they import, transitively, less NOT_SHAPING; sorted."""
    seen, todo = set(), list(entries)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(imported_modules(name) - set(NOT_SHAPING))
    return tuple(sorted(seen))


def source_digest(*paths: Path) -> str:
    """Digest of the files' code (each named by its file name, so moving a file keeps its digest)."""
    return digest(*(f"{p.name}:{_code(p)}" for p in paths))


@dataclass(frozen=True)
class DonePolicy:
    """When a stage's stored unit is current: the same `options` of the spec, the same `inputs`, the
    same code of `modules` and the same versions of `libraries` (distribution names). `entries` are
    the modules holding the compute functions, counted with what they import; `alone` modules count
    without their imports (a dispatcher that imports every unit's code, the classes a file holds)."""

    stage: str
    options: tuple[str, ...]
    inputs: tuple[str, ...]
    entries: tuple[str, ...]
    libraries: tuple[str, ...] = ()
    alone: tuple[str, ...] = ()

    @cached_property
    def modules(self) -> tuple[str, ...]:
        """The dotted names of the modules whose code the unit depends on, in digest order."""
        return (*self.alone, *(m for m in import_closure(self.entries) if m not in self.alone))

    def code(self) -> str:
        """Digest of the modules' code."""
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
    entries=("pipeline_lib.graphs.snapshot_metrics",))
# One policy per base feature set, so that a change to one set's code recomputes that set only: the
# module of its compute function (`features.COMPUTE`) and the dispatcher, which imports every set's.
FEATURES = {base: DonePolicy(
    "features", options=(), inputs=("runs", "epoch_metrics", "snapshots", "fingerprints of the graphs read"),
    entries=(COMPUTE[base][0].__module__,), alone=("pipeline_lib.features",)) for base in BASE_SETS}
EVALUATE = DonePolicy(
    "evaluate", options=("predict",), inputs=("features", "runs", "graph seconds"), entries=("stages.evaluate",))
WIDTH_TRANSFER = DonePolicy(
    "width_transfer", options=("predict", "width_transfer"), inputs=("features", "runs", "graph seconds"),
    entries=("stages.width_transfer",))
REGISTER = DonePolicy(
    "register", options=("predict", "graphs"), inputs=("the evaluate stage's fingerprint",),
    entries=("stages.register",))
# A saved predictor: whether its file loads and predicts as it did depends on the code of the classes
# it holds (the pipeline's steps, the rank scorer), not on the code that chose them (REGISTER's), and
# on the libraries that write and read it.
PREDICTOR = DonePolicy(
    "predictor", options=(), inputs=("skops file",), entries=(), alone=("pipeline_lib.prediction.models",),
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
    """Fingerprints of a base feature set under the current code of that set, one per run; `graph_inputs`
    holds per run the fingerprints of the graphs the set read ('' for a set that reads none), so
    recomputed graphs recompute the graph sets built on them."""
    code = FEATURES[feature_set].code()
    return [digest("features", feature_set, code, graphs) for graphs in graph_inputs]


def predictor_pins() -> str:
    """The pins a saved predictor is recorded with (`PREDICTOR`), as JSON."""
    return json.dumps(PREDICTOR.pins(), sort_keys=True)
