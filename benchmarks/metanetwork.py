"""The graph metanetwork (`pipeline_lib.decisions.metanetwork`) evaluated leave one study out on the
corpus, paired against the hand-built linear predictors and raw test accuracy at k, and on the
held-out studies whose warehouses are here.

    nice .venv/bin/python benchmarks/metanetwork.py --k 1 [2 3] [--ablate] [--seed N] [--studies N] [--steps N] [--warehouses DIR] [--write]

For each k and each corpus study with compact graphs (corpus_data/graphs.parquet), a model is trained
on every other such study and scores the left-out one. Every method's predictions are turned into
within-study percentiles, so the pooled tau ranks all held-out runs on one scale; the baselines'
predictions are the committed leave-one-study-out predictions (corpus_data/loso_predictions.parquet,
linear regression, fitted with every other corpus study). Intervals: configuration bootstrap of the
pooled tau and of the paired differences (`prediction.metrics`), and scipy's bootstrap of the mean of
per-study taus over studies. Hyper-parameters are `MetaConfig`'s defaults, fixed before any run.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import torch
from scipy.stats import bootstrap, kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._output import add_write_argument, save  # noqa: E402
from pipeline_lib.corpus import corpus_dir, corpus_targets, read_corpus, read_corpus_graphs  # noqa: E402
from pipeline_lib.decisions.metanetwork import MetaConfig, fit, graph_tensors, predict, run_set  # noqa: E402
from pipeline_lib.graphs.compact import decode  # noqa: E402
from pipeline_lib.prediction.metrics import comparison_table, evaluation_table, top_kept  # noqa: E402

log = logging.getLogger("metanetwork")
BASELINES = ("learning_curve", "graph+learning_curve")
ME = "metanetwork"
ABLATED = "metanetwork_without_graphs"


def _within_study_percentiles(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    return frame.with_columns(((pl.col(column).rank("average").over("study") - 0.5)
                               / pl.len().over("study")).alias(column))


def tensors_of(table) -> dict:
    return {(g.run_id, g.epoch): graph_tensors(g) for g in decode(table)}


def loso(corpus, graphs: dict, targets: pl.DataFrame, k: int, config: MetaConfig, name: str = ME) -> pl.DataFrame:
    """Prediction rows (the corpus' format; y_pred = within-study percentile of the score) of every
    study with graphs, each predicted by a model trained on the others."""
    studies = sorted({s for s, r in zip(targets["study"], targets["run_id"]) if (r, 0) in graphs})
    runs = corpus.runs.join(targets.select("run_id"), on="run_id").filter(pl.col("study").is_in(studies))
    data = run_set(runs, corpus.curves, graphs, k, targets)
    frames = []
    for fold, study in enumerate(studies):
        start = time.perf_counter()
        test = data.studies == study
        model = fit(data.subset(np.nonzero(~test)[0]), config)
        held = data.subset(np.nonzero(test)[0])
        frames.append(pl.DataFrame({"run_id": held.run_ids, "study": study, "fold": fold, "y_true": held.target,
                                    "y_pred": predict(model, held)}))
        log.info("%s k=%d %s: %.0f s", name, k, study, time.perf_counter() - start)
    return _rows(pl.concat(frames), name, k)


def _rows(frame: pl.DataFrame, feature_set: str, k: int) -> pl.DataFrame:
    frame = _within_study_percentiles(frame, "y_pred")
    return frame.select(pl.lit("regression").alias("task"), pl.lit("loso").alias("predictor"),
                        pl.lit(feature_set).alias("feature_set"), pl.lit(k, pl.Int64).alias("k"),
                        pl.format("loso:{}", "study").alias("split"), "run_id", pl.col("fold").cast(pl.Int64),
                        pl.col("y_true").cast(pl.Float64), pl.col("y_pred").cast(pl.Float64),
                        pl.lit(None, pl.Float64).alias("score"))


def baselines(corpus, mine: pl.DataFrame, targets: pl.DataFrame, k: int) -> pl.DataFrame:
    """The committed LOSO predictions of BASELINES and test accuracy at k (missing: ranks last) on the
    runs the metanetwork predicted."""
    keys = mine.select("run_id", "fold", "y_true", "split")
    committed = (pl.read_parquet(corpus_dir() / "loso_predictions.parquet")
                 .filter((pl.col("task") == "regression") & (pl.col("predictor") == "linear") & (pl.col("k") == k)
                         & pl.col("feature_set").is_in(list(BASELINES))))
    frames = [_rows(keys.join(committed.filter(pl.col("feature_set") == fs).select("run_id", "y_pred"), on="run_id")
                    .with_columns(pl.col("split").str.strip_prefix("loso:").alias("study")), fs, k)
              for fs in BASELINES]
    accuracy = (keys.join(corpus.curves.filter(pl.col("epoch") == k).select("run_id", pl.col("test_acc").alias("y_pred")),
                          on="run_id", how="left").with_columns(pl.col("y_pred").fill_null(0.0),
                                                                pl.col("split").str.strip_prefix("loso:").alias("study")))
    return pl.concat([*frames, _rows(accuracy, f"accuracy@{k}", k)])


def per_study(predictions: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Per split and method: Kendall tau and the share of the true top 5 kept when keeping 1/8."""
    joined = predictions.join(truth.select("run_id", "final_acc"), on="run_id")
    rows = []
    for (split, fs), g in joined.group_by("split", "feature_set", maintain_order=True):
        rows.append({"split": split, "feature_set": fs, "runs": g.height,
                     "tau": float(kendalltau(g["y_pred"], g["final_acc"]).statistic),
                     "top5_keep_1/8": top_kept(g["y_pred"].to_numpy(), g["final_acc"].to_numpy(), 1 / 8)})
    return pl.DataFrame(rows)


def summary(predictions: pl.DataFrame, targets: pl.DataFrame, studies: pl.DataFrame) -> pl.DataFrame:
    """Per method: pooled LOSO tau with its configuration-bootstrap interval, the mean per-study tau with
    scipy's bootstrap interval over studies, the mean top-5 share, and the paired difference to ME."""
    pooled = predictions.with_columns(pl.lit("loso").alias("split"))
    evaluated = evaluation_table(pooled, targets).filter(pl.col("metric") == "kendall_tau")
    compared = comparison_table(pooled, targets).filter((pl.col("metric") == "kendall_tau")
                                                        & (pl.col("feature_set") == ME))
    rows = []
    for fs in predictions["feature_set"].unique(maintain_order=True):
        e = evaluated.filter(pl.col("feature_set") == fs).row(0, named=True)
        taus = studies.filter(pl.col("feature_set") == fs)["tau"].to_numpy()
        ci = bootstrap((taus,), np.mean, n_resamples=2000, random_state=np.random.default_rng(0)).confidence_interval
        c = compared.filter(pl.col("baseline") == fs)
        rows.append({"method": fs, "pooled_tau": e["value"], "pooled_low": e["low"], "pooled_high": e["high"],
                     "mean_study_tau": float(taus.mean()), "mean_low": float(ci.low), "mean_high": float(ci.high),
                     "top5_keep_1/8": float(studies.filter(pl.col("feature_set") == fs)["top5_keep_1/8"].mean()),
                     "metanetwork_minus": c["difference"][0] if c.height else None,
                     "diff_low": c["low"][0] if c.height else None, "diff_high": c["high"][0] if c.height else None})
    return pl.DataFrame(rows)


def heldout(corpus, graphs: dict, targets: pl.DataFrame, k: int, config: MetaConfig, warehouses: Path,
            specs: Path) -> pl.DataFrame:
    """Per held-out study with a warehouse here: the metanetwork fitted on the whole corpus (studies
    with graphs) against test accuracy at k, by tau and top-5 share."""
    from pipeline_lib.graphs.compact import study_compact_graphs
    from pipeline_lib.spec import load_study
    from stages.corpus import _warehouse
    from warehouse.predict import epoch_metrics, snapshot_paths, study_runs

    runs = corpus.runs.join(targets.select("run_id"), on="run_id").filter(
        pl.col("run_id").is_in([r for r, e in graphs if e == 0]))
    model = fit(run_set(runs, corpus.curves, graphs, k, targets), config)
    rows = []
    for spec in sorted(specs.glob("*.yaml")):
        name, path = load_study(spec).name, warehouses / f"{spec.stem}.duckdb"
        if not path.is_file():
            log.warning("held-out study %s: no warehouse %s", name, path)
            continue
        wh = _warehouse(path, name)
        study = study_runs(wh, name)
        if study.is_empty():
            continue
        table = study_compact_graphs(name, snapshot_paths(wh, name), study, wh.data_dir, epochs=sorted({0, k}))
        curves = epoch_metrics(wh, name)
        truth = corpus_targets(study.with_columns(pl.lit(name).alias("study")))
        scores = predict(model, run_set(study, curves, tensors_of(table), k, truth))
        ordered = study.sort("run_id").join(truth.select("run_id", "final_acc"), on="run_id")
        acc = ordered.join(curves.filter(pl.col("epoch") == k).select("run_id", "test_acc"), on="run_id",
                           how="left")["test_acc"].fill_null(0.0).to_numpy()
        y = ordered["final_acc"].to_numpy()
        rows.append({"study": name, "k": k, "runs": len(y), "tau": float(kendalltau(scores, y).statistic),
                     "accuracy_tau": float(kendalltau(acc, y).statistic),
                     "top5_keep_1/8": top_kept(scores, y, 1 / 8), "accuracy_top5_keep_1/8": top_kept(acc, y, 1 / 8)})
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, nargs="+", default=[1])
    parser.add_argument("--warehouses", type=Path, help="held-out studies' warehouses (<spec stem>.duckdb)")
    parser.add_argument("--heldout-specs", type=Path, default=Path("specs/heldout"))
    parser.add_argument("--studies", type=int, help="only the first N corpus studies with graphs (a quick try)")
    parser.add_argument("--steps", type=int, default=MetaConfig.steps, help="training steps per fit")
    parser.add_argument("--seed", type=int, default=MetaConfig.seed, help="the training seed (spread across seeds)")
    parser.add_argument("--ablate", action="store_true", help=f"also {ABLATED}: the same model without graphs")
    add_write_argument(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    config = MetaConfig(seed=args.seed, steps=args.steps)
    corpus = read_corpus()
    targets = corpus_targets(corpus.runs)
    table = read_corpus_graphs()
    if args.studies:
        table = table.filter(pc.is_in(table["study"], pa.array(sorted(set(table["study"].to_pylist()))[:args.studies])))
    graphs = tensors_of(table)
    start = time.perf_counter()
    all_predictions, tables = [], {}
    for k in args.k:
        mine = loso(corpus, graphs, targets, k, config)
        ablated = [loso(corpus, graphs, targets, k, replace(config, use_graphs=False), ABLATED)] if args.ablate else []
        predictions = pl.concat([mine, *ablated, baselines(corpus, mine, targets, k)])
        studies = per_study(predictions, targets)
        tables[f"summary_k{k}"] = summary(predictions, targets, studies)
        tables[f"studies_k{k}"] = studies.pivot(on="feature_set", index=["split", "runs"], values="tau")
        tables[f"top5_k{k}"] = studies.pivot(on="feature_set", index=["split", "runs"], values="top5_keep_1/8")
        if args.warehouses:
            tables[f"heldout_k{k}"] = heldout(corpus, graphs, targets, k, config, args.warehouses, args.heldout_specs)
        all_predictions.append(predictions)
    seconds = time.perf_counter() - start
    with pl.Config(tbl_rows=40, tbl_cols=20, tbl_width_chars=200, float_precision=3):
        for name, table in tables.items():
            print(f"\n{name}\n{table}")
    print(f"\n{seconds:.0f} s; config {json.dumps(config.__dict__)}")
    save(args.write, {"metanetwork_predictions.parquet": lambda p: pl.concat(all_predictions).write_parquet(p),
                      **{f"metanetwork_{n}.csv": (lambda p, t=t: t.write_csv(p)) for n, t in tables.items()}})


if __name__ == "__main__":
    main()
