"""What makes a stored result current: a fingerprint of the options and the code that made it.

Every stage stores the fingerprint of each unit it computes (a snapshot's graph, a feature set of a
run at k, a prediction stage's inputs) and computes again the units whose stored fingerprint
differs from the one the current spec and code give, so that "done" means the same thing
everywhere and a changed option or function never leaves stale results behind.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from types import ModuleType

from . import features as features_package
from . import graphs as graphs_package
from .spec import GraphOptions

GRAPH_CODE: tuple[ModuleType, ...] = (graphs_package,)
FEATURE_CODE: tuple[ModuleType, ...] = (features_package,)


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


def source_digest(*modules: ModuleType) -> str:
    """Digest of the modules' code; a package stands for every .py file directly in it."""
    files = []
    for module in modules:
        path = Path(module.__file__)
        files += sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
    return digest(*(f"{p.name}:{_code(p)}" for p in files))


def graph_fingerprints(options: GraphOptions, nodes: list[int]) -> dict[int, str]:
    """{node count: fingerprint} of graphs of those sizes under `options` and the current graph code.

    Only what changes a graph of that size counts: the sampled sources of closeness and betweenness
    (0 = exact, as `properties` decides it) and their seed only when sampling, so changing `pivots`
    or `exact_limit` recomputes just the graphs on the sampled side. A graph of some properties only
    (`properties`, set by triage) has its own fingerprint, so the full stage computes it again.
    """
    code = source_digest(*GRAPH_CODE)
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
    code = source_digest(*FEATURE_CODE)
    return [digest("features", feature_set, code, graphs) for graphs in graph_inputs]
