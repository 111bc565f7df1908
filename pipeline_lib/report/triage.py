"""The report's "Triage" section: what a study's `triage:` decided at each rung, where each rung's
scores came from and why, and the compute it saved (epochs, and seconds from `costs`)."""
from __future__ import annotations

import polars as pl

from ..decisions.savings import STRATEGY
from ..vocabulary import RunStatus

HEAD = 10  # decisions shown; the table `triage_decisions` holds them all


def _rung_line(rung: dict) -> str:
    source = {"registered": f"registered predictor `{rung['predictor_id']}`",
              "corpus": f"the corpus predictor `{rung['predictor_id']}`",
              "accuracy": "test accuracy at the rung (i-Epoch rule)"}[rung["source"]]
    differs = f" Differences from the predictor's study: {'; '.join(rung['mismatches'])}." if rung["mismatches"] else ""
    return (f"- Epoch {rung['rung']}: {rung['kept']} of {rung['decided']} runs kept ({rung['keep_policy']}), scored by "
            f"{source} ({rung['source_reason']}); decision work {rung['graph_seconds']:.1f} s of graphs and "
            f"{rung['scoring_seconds']:.1f} s of scoring.{differs}")


def triage_section(runs: pl.DataFrame, rungs: pl.DataFrame, costs: pl.DataFrame) -> list[str]:
    """Markdown lines from every run of the study (epochs, epochs_done, status, final_test_acc) with its
    last decision's columns (NULL for runs not triaged), the rungs' summary (`warehouse.predict.
    report_tables`) and the study's costs; no lines when the study was not triaged."""
    from . import markdown_table  # the package's renderer; imported here, the package imports this module

    decided = runs.filter(pl.col("decision").is_not_null()).sort("rung", "rank", descending=[True, False])
    if decided.is_empty():
        return []
    completed = runs.filter(pl.col("status") == RunStatus.COMPLETED).height
    trained, planned = runs["epochs_done"].sum(), runs["epochs"].sum()
    saved = costs.filter(pl.col("strategy") == STRATEGY)
    seconds = []
    if saved.height:
        row = saved.row(0, named=True)
        seconds = [f"In seconds: {row['detail']} ({row['fraction']:.0%} of training every run to the end, "
                   "decisions included; the `costs` row of strategy `triage`).", ""]
    head = decided.head(HEAD).select(
        "rung", "rank", "run_id", "architecture", "width", "predicted", "low", "high", "p_good", "decision",
        pl.col("final_test_acc").alias("final acc"))
    return [
        "## Triage",
        "",
        f"Runs were decided at epochs {', '.join(map(str, rungs['rung']))}: at each, the runs kept at the one "
        "before (at the first, every run) were scored and the best kept. "
        f"{completed} runs trained to the end; the others have status `stopped` (no final accuracy, so "
        "evaluation and the registry use the kept runs only, and predictors registered from them are marked "
        "`triaged`); runs that failed or diverged before a rung are not decided there.",
        "",
        *[_rung_line(r) for r in rungs.iter_rows(named=True)],
        "",
        f"Epochs trained: {trained} of the {planned} that training every run to the end takes "
        f"({trained / planned:.0%}).",
        "",
        *seconds,
        f"Best {min(HEAD, decided.height)} runs by their last decision (interval: split-conformal at "
        f"{decided['confidence'][0]:g}, none when scored by accuracy; all decisions in the table "
        "`triage_decisions`):",
        "",
        markdown_table(head),
        "",
    ]
