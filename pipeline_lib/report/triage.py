"""The report's "Triage" section: what a study's `triage:` decided and the compute it saved."""
from __future__ import annotations

import polars as pl

from ..vocabulary import Decision

HEAD = 10  # decisions shown; the table `triage_decisions` holds them all


def triage_section(runs: pl.DataFrame) -> list[str]:
    """Markdown lines from every run of the study (epochs, epochs_done, status, final_test_acc) with its
    decision's columns (NULL for runs not triaged); no lines when the study was not triaged."""
    from . import markdown_table  # the package's renderer; imported here, the package imports this module

    decided = runs.filter(pl.col("decision").is_not_null()).sort("rank")
    if decided.is_empty():
        return []
    first = decided.row(0, named=True)
    kept = decided.filter(pl.col("decision") == Decision.KEEP).height
    trained, planned = runs["epochs_done"].sum(), runs["epochs"].sum()
    head = decided.head(HEAD).select(
        "rank", "run_id", "architecture", "width", "predicted", "low", "high", "p_good", "decision",
        pl.col("final_test_acc").alias("final acc"))
    return [
        "## Triage",
        "",
        f"Every run was trained to epoch {first['at_epoch']} and scored by registered predictor "
        f"`{first['predictor_id']}`; keep rule `{first['keep_policy']}`: {kept} of {decided.height} runs kept and "
        f"trained to the end, {decided.height - kept} stopped (status `stopped`; runs that diverged by then are not "
        f"triaged). Epochs trained: {trained} of the {planned} that training every run to the end takes "
        f"({trained / planned:.0%}). Stopped runs have no final accuracy, so evaluation and the registry use the "
        "kept runs only.",
        "",
        f"Best {min(HEAD, decided.height)} by predicted final accuracy (interval: split-conformal at "
        f"{first['confidence']:g}; all decisions in the table `triage_decisions`):",
        "",
        markdown_table(head),
        "",
    ]
