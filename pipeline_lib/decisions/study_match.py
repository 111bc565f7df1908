"""Does a predictor's study match the study it would score? Every difference named, never silent.

A predictor learns "final accuracy from the first k epochs" on its own study: the same features
mean the same thing on another study only if the runs are alike. Some differences make the scores
meaningless and are refused (`Mismatch.refused`): another dataset, an architecture the predictor
never saw, or training metrics taken another way (`train_metrics`: the train_* features change
meaning). Others are warned and recorded: other widths (width transfer is what RQ2 measures), a
different number of epochs (the predicted "final" accuracy is at the predictor study's last
epoch), another dataset subset, and, for a predictor that reads graph features, graph options that
change the computed properties. `predictor: auto` takes only a predictor with no difference at all.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline_lib.spec import Study

# graph options that change the node properties a graph feature is computed from
UNSEEN = ("architectures", "widths")  # compared as: ours not among theirs
GRAPH_OPTIONS = ("fold_batchnorm", "exact_limit", "pivots", "betweenness", "katz_factor", "pagerank_damping", "seed")


@dataclass(frozen=True)
class Mismatch:
    """One difference between the scored study (`ours`) and the predictor's study (`theirs`)."""

    name: str
    ours: object
    theirs: object
    refused: bool

    def __str__(self) -> str:
        """As recorded: 'epochs 10 here, 8 in the predictor's study'; for architectures and widths,
        those the predictor never saw."""
        if self.name in UNSEEN:
            return f"{self.name} {self.ours} not seen by the predictor"
        return f"{self.name} {self.ours!r} here, {self.theirs!r} in the predictor's study"


def mismatches(ours: Study, theirs: Study, reads_graphs: bool) -> list[Mismatch]:
    """Every way the predictor's study differs from ours that changes what its scores mean."""
    found = []

    def differ(name: str, a, b, refused: bool) -> None:
        if a != b:
            found.append(Mismatch(name, a, b, refused))

    differ("dataset", ours.dataset.name, theirs.dataset.name, True)
    unseen = sorted(set(ours.architectures) - set(theirs.architectures))
    differ("architectures", unseen, [], True)
    differ("train_metrics", ours.train_metrics, theirs.train_metrics, True)
    differ("epochs", ours.epochs, theirs.epochs, False)
    differ("dataset.subset", ours.dataset.subset, theirs.dataset.subset, False)
    differ("widths", sorted(set(ours.widths) - set(theirs.widths)), [], False)
    if "resnet" in ours.architectures:
        differ("depth", ours.depth, theirs.depth, False)
    if reads_graphs:
        for option in GRAPH_OPTIONS:
            differ(f"graphs.{option}", getattr(ours.graphs, option), getattr(theirs.graphs, option), False)
    return found

