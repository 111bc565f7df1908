"""The corpus pipeline: train the corpus and held-out studies, export the corpus tables, fit the corpus
predictor leave-one-study-out, and compare it with test accuracy on every study it never saw.

Each step skips what is done: the studies' own stages skip finished runs, graphs and features (their
done rules); the export is written only when its rows changed; the leave-one-study-out fits and the
predictor are made again only when the exported corpus or the pins changed (`corpus_digest`); the
held-out comparison only when the predictor or a held-out study changed. A corpus study without a
warehouse here keeps its rows of the committed corpus of the base sets whose code has not changed
(so the corpus extends without training its older studies again); its stale sets' rows are dropped.

What `predictor: auto` may use follows from the last step: the card's `accuracy_gate` per k lists
every study the predictor was tested on (each corpus study left out, and the held-out studies) and
holds only when it trails test accuracy at k on none of them (`decisions.corpus.accuracy_gate`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline_lib.corpus import (CORPUS_ENV, GRAPHS_FILE, CorpusStale, corpus_designs, corpus_targets, loso_evaluation,
                                 loso_predictions, read_corpus, stale_message, stale_sets, write_corpus)
from pipeline_lib.decisions import corpus as corpus_predictor
from pipeline_lib.fingerprints import predictor_pins
from pipeline_lib.graphs.compact import NODE_FEATURES, TOP_M, study_compact_graphs
from pipeline_lib.spec import load_study
from warehouse.corpus import corpus_tables
from warehouse.db import Warehouse
from warehouse.predict import epoch_metrics, snapshot_paths, study_runs

from . import features, graph_metrics, train_sweep
from .context import owned_data_dir
from .local import local_context

log = logging.getLogger("stages")


@dataclass(frozen=True)
class CorpusPlan:
    """Where the corpus pipeline reads and writes: the spec folders, one warehouse per study, the corpus."""

    corpus_specs: Path
    heldout_specs: Path
    warehouses: Path
    out: Path
    jobs: int = 2
    train: bool = True
    predictors: tuple[str, ...] = ("linear",)  # what the shipped predictor is fitted with
    studies: list[str] = field(default_factory=list)  # spec stems to train (default: all)

    def specs(self, folder: Path) -> list[Path]:
        return sorted(folder.glob("*.yaml"))

    def warehouse(self, spec: Path) -> Path:
        return self.warehouses / f"{spec.stem}.duckdb"


def train_study(spec: Path, warehouse: Path) -> dict:
    """The study's training, graphs (epochs 0..its largest k) and features, in this process; each
    stage skips what is done. Returns each stage's wall seconds."""
    seconds = {}
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with local_context(spec, warehouse) as ctx:
        for name, run, options in (("train_sweep", train_sweep.run, {}),
                                   ("graph_metrics", graph_metrics.run,
                                    {"until_epoch": max(ctx.study.predict.k_epochs)}),
                                   ("features", features.run, {})):
            start = time.perf_counter()
            run(ctx, **options)
            seconds[name] = round(time.perf_counter() - start, 1)
    return seconds


def _warehouse(path: Path, study: str) -> Warehouse:
    """The study's warehouse with the data directory the study owns (its snapshots and node metrics)."""
    return Warehouse(path, data_dir=owned_data_dir(path, study, None))


def _digest(*frames: pl.DataFrame) -> str:
    sha = hashlib.sha256()
    for frame in frames:
        sha.update(frame.hash_rows().sort().to_numpy().tobytes())
    return sha.hexdigest()


def export(plan: CorpusPlan, walls: dict[str, dict]) -> bool:
    """The corpus tables from the corpus studies' warehouses (or, for a study without one here, its rows
    of the committed corpus of the base sets whose code has not changed); True when they changed."""
    try:
        previous = read_corpus(plan.out)
    except FileNotFoundError:
        previous = None
    stale = stale_sets(previous.meta.get("feature_codes", {})) if previous is not None else []
    parts, facts = [], []
    for spec in plan.specs(plan.corpus_specs):
        name = load_study(spec).name
        path = plan.warehouse(spec)
        if path.is_file():
            runs, curves, feats, fact = corpus_tables(_warehouse(path, name), name)
            fact["wall_seconds"] = walls.get(spec.stem) or _previous_walls(previous, name)
        elif previous is not None and name in set(previous.runs["study"]):
            ids = previous.runs.filter(pl.col("study") == name)["run_id"]
            runs = previous.runs.filter(pl.col("study") == name)
            curves = previous.curves.filter(pl.col("run_id").is_in(ids))
            feats = previous.features.filter(pl.col("run_id").is_in(ids) & ~pl.col("feature_set").is_in(stale))
            fact = next(s for s in previous.meta["studies"] if s["study"] == name)
            log.info("corpus study %s: no warehouse %s here; its %d runs of the committed corpus are kept", name,
                     path, runs.height)
            if stale:
                log.warning("corpus study %s: its rows of stale feature set(s) %s are dropped; train it (python -m "
                            "flows.corpus without --no-train) to compute them again", name, ", ".join(stale))
        else:
            log.warning("corpus study %s: no warehouse %s and no rows in the committed corpus; train it "
                        "(python -m flows.corpus without --no-train)", name, path)
            continue
        parts.append((runs, curves, feats))
        facts.append(fact)
    if not parts:
        raise CorpusStale(f"no corpus study has a warehouse under {plan.warehouses} or rows in {plan.out}")
    runs, curves, feats = (pl.concat([p[i] for p in parts], how="diagonal_relaxed") for i in range(3))
    digest = _digest(runs.select("run_id", "final_test_acc"), curves.select("run_id", "epoch", "test_acc"),
                     feats.select("run_id", "k", "feature", pl.col("value").cast(pl.Float32)))
    if previous is not None and previous.meta.get("rows_digest") == digest and not stale:
        log.info("corpus tables up to date (%d runs of %d studies)", runs.height, len(facts))
        return False
    write_corpus(plan.out, runs, curves, feats, {"studies": facts, "rows_digest": digest})
    log.info("corpus tables written: %d runs of %d studies in %s", runs.height, len(facts), plan.out)
    return True


GRAPH_EPOCHS = range(4)
GRAPHS_META = b"compact_graphs"


def export_graphs(plan: CorpusPlan) -> bool:
    """corpus_data/graphs.parquet: the compact rolled graphs (epochs 0..3, `graphs.compact`) of the
    corpus' runs. A study with a warehouse here is rebuilt only when the stamp of its graphs (their
    graph-stage fingerprints, the top-m rule) changed; one without keeps its committed rows. The file
    is outside `rows_digest`: it refits nothing. True when written."""
    runs = read_corpus(plan.out).runs
    path = plan.out / GRAPHS_FILE
    previous = pq.read_table(path) if path.is_file() else None
    old = json.loads(previous.schema.metadata[GRAPHS_META])["studies"] if previous is not None else {}
    parts, stamps = [], {}
    for spec in plan.specs(plan.corpus_specs):
        name = load_study(spec).name
        ids = runs.filter(pl.col("study") == name)["run_id"].to_list()
        warehouse = plan.warehouse(spec)
        stamp = _graphs_stamp(_warehouse(warehouse, name), ids) if warehouse.is_file() and ids else None
        if stamp is not None and stamp != old.get(name):
            wh = _warehouse(warehouse, name)
            study_rows = study_runs(wh, name).filter(pl.col("run_id").is_in(ids))
            parts.append(study_compact_graphs(name, snapshot_paths(wh, name), study_rows, wh.data_dir, GRAPH_EPOCHS))
            log.info("compact graphs of %s: %d snapshots", name, parts[-1].num_rows)
        elif name in old:
            parts.append(previous.filter(pc.equal(previous["study"], name)))
            stamp = old[name]
        else:
            log.warning("corpus study %s: no graphs here or in the committed corpus; its runs have no compact graphs",
                        name)
            continue
        stamps[name] = stamp
    if previous is not None and stamps == old:
        log.info("compact graphs up to date (%d studies)", len(stamps))
        return False
    table = pa.concat_tables(parts).sort_by([("study", "ascending"), ("run_id", "ascending"), ("epoch", "ascending")])
    meta = {"top_m": TOP_M, "epochs": list(GRAPH_EPOCHS), "node_features": list(NODE_FEATURES), "studies": stamps}
    pq.write_table(table.replace_schema_metadata({GRAPHS_META: json.dumps(meta)}), path, compression="zstd",
                   compression_level=19)
    log.info("compact graphs written: %d snapshots of %d studies in %s", table.num_rows, len(stamps), path)
    return True


def _graphs_stamp(wh: Warehouse, ids: list[str]) -> str | None:
    """A digest of the study's computed graphs of epochs 0..3 of `ids` (run, epoch, graph-stage
    fingerprint) and the top-m rule; None when it has none."""
    graphs = wh.query("SELECT run_id, epoch, fingerprint FROM graphs WHERE error IS NULL AND epoch <= ? "
                      "AND run_id IN (SELECT unnest(?)) ORDER BY run_id, epoch", [max(GRAPH_EPOCHS), ids])
    if graphs.is_empty():
        return None
    return hashlib.sha256(f"{TOP_M}:{NODE_FEATURES}".encode() + graphs.write_csv().encode()).hexdigest()


def _previous_walls(previous, name: str) -> dict:
    if previous is None:
        return {}
    return next((s.get("wall_seconds", {}) for s in previous.meta["studies"] if s["study"] == name), {})


def fit(plan: CorpusPlan) -> bool:
    """Leave-one-study-out predictions and evaluations of every design, then the corpus predictor and
    its model card; skipped when the card was fitted on these rows under these pins. True if fitted."""
    from threadpoolctl import threadpool_limits

    corpus = read_corpus(plan.out)
    if stale := stale_sets(corpus.meta.get("feature_codes", {})):
        raise CorpusStale(stale_message(stale))
    stamp = {"rows_digest": corpus.meta["rows_digest"], "pins": predictor_pins(), "predictors": list(plan.predictors)}
    card_path = plan.out / "predictor" / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if card.get("fitted_on") == stamp:
        if card.get("feature_codes") != corpus.meta["feature_codes"]:  # the same rows, from code changed since
            card["feature_codes"] = corpus.meta["feature_codes"]
            card_path.write_text(json.dumps(card, indent=1) + "\n")
        log.info("corpus predictor up to date")
        return False
    start = time.perf_counter()
    with threadpool_limits(1):
        targets = corpus_targets(corpus.runs)
        designs = corpus_designs(corpus, targets)
        predictions = loso_predictions(designs, targets, plan.predictors, n_jobs=plan.jobs)
        log.info("%d leave-one-study-out predictions in %.0f s", predictions.height, time.perf_counter() - start)
        evaluations, comparisons = loso_evaluation(predictions, targets)
        for name, frame in (("loso_evaluations", evaluations), ("loso_comparisons", comparisons),
                            ("loso_predictions", predictions)):
            frame.write_parquet(plan.out / f"{name}.parquet", compression="zstd")
        card = corpus_predictor.fit_corpus_predictors(designs, targets, corpus.runs, corpus.curves, evaluations,
                                                      predictions, corpus.meta["studies"], plan.out / "predictor")
    card["fitted_on"] = stamp
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    corpus_predictor.write_model_card(card, plan.out / "predictor")
    log.info("corpus predictor fitted in %.0f s", time.perf_counter() - start)
    return True


def heldout(plan: CorpusPlan) -> pl.DataFrame:
    """Per held-out study (trained here) and k: the Kendall tau of the corpus predictor's ranking, as
    `flows.score --predictor corpus` scores it, and of test accuracy at k, against the final accuracy;
    their per-study taus join the card's accuracy gate. Returns the table (also corpus_data/heldout.parquet)."""
    from stages.score import score_study

    card_path = plan.out / "predictor" / "card.json"
    card = json.loads(card_path.read_text())
    committed = pl.read_parquet(plan.out / "heldout.parquet") if (plan.out / "heldout.parquet").is_file() else None
    before = dict((card.get("heldout_of") or {}).get("studies") or [])
    studies, kept = [], {}
    for spec in plan.specs(plan.heldout_specs):
        name, path = load_study(spec).name, plan.warehouse(spec)
        if path.is_file():
            studies.append((name, path, study_runs(_warehouse(path, name), name).height))
        elif committed is not None and name in set(committed["study"]) and name in before:
            kept[name] = before[name]  # no warehouse here: its committed rows stand, for the predictor they were made by
        else:
            log.warning("held-out study %s: no warehouse %s and no committed rows; train it first", spec.stem, path)
    stamp = {"fitted_on": card.get("fitted_on"),
             "studies": sorted([[n, r] for n, _, r in studies] + [[n, r] for n, r in kept.items()])}
    if card.get("heldout_of") == stamp:
        log.info("held-out comparison up to date (%d studies)", len(stamp["studies"]))
        return committed
    if kept and before and card.get("heldout_of", {}).get("fitted_on") != card.get("fitted_on"):
        log.warning("held-out studies %s have no warehouse here and their rows were made by another predictor: "
                    "left out of the comparison; train them (python -m flows.corpus)", ", ".join(kept))
        kept = {}
        stamp["studies"] = sorted([n, r] for n, _, r in studies)
    rows = []
    for name, path, _ in studies:
        wh = _warehouse(path, name)
        finished = study_runs(wh, name).select("run_id", pl.col("final_test_acc").alias("y_true"))
        for k in map(int, card["predictors"]):
            scores, _ = score_study(wh, name, "corpus", k)
            made = (finished.join(scores.select("run_id", pl.col("predicted").alias("y_pred")), on="run_id")
                    .with_columns(pl.lit(name).alias("study")))
            for r in corpus_predictor.accuracy_taus(made, epoch_metrics(wh, name), k).iter_rows(named=True):
                rows.append({**r, "k": k, "runs": made.height})
    table = pl.DataFrame(rows)
    if kept:
        table = pl.concat([table, committed.filter(pl.col("study").is_in(list(kept)))], how="diagonal_relaxed") \
            if table.height else committed.filter(pl.col("study").is_in(list(kept)))
    table = table.sort("study", "k")
    table.write_parquet(plan.out / "heldout.parquet")
    for k, entry in card["predictors"].items():
        gate = entry["accuracy_gate"]
        loso = [{"study": s, **{m: v[0] for m, v in values.items()}, **{f"accuracy_{m}": v[1] for m, v in values.items()}}
                for s, values in gate["studies"].items() if not s.startswith("heldout:")]
        held = table.filter(pl.col("k") == int(k)).with_columns(pl.format("heldout:{}", "study").alias("study"))
        entry["accuracy_gate"] = corpus_predictor.accuracy_gate(
            pl.concat([pl.DataFrame(loso), held.select(pl.DataFrame(loso).columns)], how="vertical_relaxed"))
    card["heldout_of"] = stamp
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    corpus_predictor.write_model_card(card, card_path.parent)
    return table


def _committed_studies(out: Path) -> set[str]:
    """The studies whose rows the corpus at `out` holds with current code (corpus studies with no stale
    base set, and held-out studies): a clone without their warehouses need not train them again."""
    try:
        corpus = read_corpus(out)
    except FileNotFoundError:
        return set()
    names = set() if stale_sets(corpus.meta.get("feature_codes", {})) else set(corpus.runs["study"])
    if (out / "heldout.parquet").is_file():
        names |= set(pl.read_parquet(out / "heldout.parquet")["study"])
    return names


@contextmanager
def _scoring_with(out: Path):
    """The corpus at `out` is the one `--predictor corpus` scores with, while inside."""
    before = os.environ.get(CORPUS_ENV)
    os.environ[CORPUS_ENV] = str(out)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CORPUS_ENV)
        else:
            os.environ[CORPUS_ENV] = before


def run(plan: CorpusPlan) -> dict:
    """Every step, each skipping what is done; returns what each did."""
    walls = {}
    if plan.train:
        committed = _committed_studies(plan.out)
        for spec in plan.specs(plan.corpus_specs) + plan.specs(plan.heldout_specs):
            if plan.studies and spec.stem not in plan.studies:
                continue
            if not plan.studies and not plan.warehouse(spec).is_file() and load_study(spec).name in committed:
                log.info("study %s: in the committed corpus, no warehouse %s here; not trained again (name it with "
                         "--study to train it)", spec.stem, plan.warehouse(spec))
                continue
            log.info("study %s", spec.stem)
            walls[spec.stem] = train_study(spec, plan.warehouse(spec))
    exported = export(plan, walls)
    graphs = export_graphs(plan)
    fitted = fit(plan)
    with _scoring_with(plan.out):
        table = heldout(plan)
    return {"trained": sorted(walls), "exported": exported, "graphs": graphs, "fitted": fitted,
            "heldout_studies": table["study"].n_unique()}
