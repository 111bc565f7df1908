"""The replay stage: simulate a finished study's sweep under stopping policies, into `replays`.

W parallel workers replay the recorded per-epoch seconds, runs started in the sweep's order and in
seeded random orders, under train-all, i-Epoch, Optuna's pruners, `online` (a predictor refit on the
runs already ended), `transfer` (registered predictors of other studies of the dataset, and the
corpus predictor refit without this study when the corpus covers it: `corpus_transfer`), `oracle`
(this study's out-of-fold predictions: not deployable) and `triage` (the synchronous rung-by-rung
triage of flows.train_sweep, by accuracy at the rung or a registered transfer predictor); see
pipeline_lib/decisions/replay.py and policies.py. The rows replace the study's rows of `replays`;
the report's Decisions section reads them, and the stage writes the same section to
reports/<study>/replay.md with its figure.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import polars as pl

from pipeline_lib.corpus import CorpusStale, check_reads, corpus_dir, read_corpus
from pipeline_lib.decisions import corpus
from pipeline_lib.decisions.replay import RanksAmongSeen, Settings, replay_sweep
from pipeline_lib.decisions.scoring import design_matrix
from pipeline_lib.report.decisions import replay_section
from pipeline_lib.spec import Study
from warehouse.replays import replay_sweep_inputs, write_replays

from .context import StudyContext
from .report import REPORTS_DIR

log = logging.getLogger(__name__)
FEATURE_SETS = ("all_but_graph", "all")  # online/transfer/oracle: without and with graph features (charged)


def corpus_transfer(study: Study) -> Callable[[int, str, pl.DataFrame, list[str]], RanksAmongSeen | None] | None:
    """Transfer from the corpus without this study (leave it out: the predictor never saw it), when
    the corpus holds the study's dataset and architectures; None when it does not. It ranks the runs
    seen at the rung among themselves (its input contract), with corpus.MIN_RUNS of them at least. A
    feature set that reads a stale corpus set is left out, with a warning naming the set and the command
    that refreshes it (as `predictor: auto` falls back then)."""
    if not corpus_dir().joinpath("runs.parquet").is_file():
        return None
    shipped = read_corpus()
    runs = shipped.runs
    if study.dataset.name not in set(runs["dataset"]) or not set(study.architectures) <= set(runs["architecture"]):
        return None

    def predictions(k: int, feature_set: str, rows: pl.DataFrame, run_ids: list[str]) -> RanksAmongSeen | None:
        try:
            check_reads(shipped.meta.get("feature_codes", {}), feature_set)
        except CorpusStale as e:
            log.warning("no transfer from the corpus at k = %d on %s: %s", k, feature_set, e)
            return None
        fitted = corpus.fit_without(shipped, study.name, k, feature_set)
        if fitted is None:
            return None
        model, columns, source = fitted
        log.info("transfer at k = %d on %s: %s", k, feature_set, source)
        return RanksAmongSeen(k, feature_set, model, design_matrix(rows, run_ids, columns), corpus.normalize,
                              corpus.MIN_RUNS, source)

    return predictions


def run(ctx: StudyContext, workers: int = Settings.workers, random_orders: int = Settings.random_orders,
        reports_dir: str | None = None) -> dict:
    """Replay every policy and order, record the rows; returns their count and the headline lines."""
    study, settings = ctx.study, Settings(workers=workers, random_orders=random_orders)
    ks = [k for k in study.predict.k_epochs if k in settings.rungs and k < study.epochs]

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            log.info("replayed %d of %d policy settings x %d orders", done, total, random_orders + 1)

    sweep = replay_sweep_inputs(ctx.warehouse, study, FEATURE_SETS, ks, corpus_transfer(study))
    rows = replay_sweep(sweep, settings, progress)
    write_replays(ctx.warehouse, study.name, rows)
    out_dir = Path(reports_dir or REPORTS_DIR) / study.name
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, headline = replay_section(rows, out_dir)
    (out_dir / "replay.md").write_text("\n".join(lines) + "\n")
    for line in headline:
        log.info("%s", line)
    log.info("replay: %s", (out_dir / "replay.md").resolve())
    return {"rows": rows.height, "headline": headline}
