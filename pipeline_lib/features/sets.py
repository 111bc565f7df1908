"""The names of the feature sets: base sets (each computed and stored on its own) and their unions,
assembled when evaluating. Kept apart from the code that computes the sets, so that editing a union
recomputes no stored feature (`fingerprints.FEATURES`)."""
from __future__ import annotations

GRAPH_BASE_SETS = ("graph", "graph_compact")
BASELINES = ("early_acc", "tse", "tse_ema", "learning_curve", "weight_stats", "hparams")
BASE_SETS = (*GRAPH_BASE_SETS, *BASELINES)
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in BASELINES},
    "all_but_graph": BASELINES,
    "graph": ("graph",),
    "graph_compact": ("graph_compact",),
    "graph+learning_curve": ("graph", "learning_curve"),
    "all": BASE_SETS,
}
GRAPH_SETS = tuple(name for name, bases in FEATURE_SETS.items() if set(bases) & set(GRAPH_BASE_SETS))
