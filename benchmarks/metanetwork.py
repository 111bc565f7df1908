"""The graph metanetwork (`pipeline_lib.decisions.metanetwork`) evaluated leave one study out on the
corpus, paired against the hand-built linear predictors and raw test accuracy at k, and on the
held-out studies whose warehouses are here.

    nice .venv/bin/python benchmarks/metanetwork.py --k 1 [2 3] [--ablate] [--seed N] [--studies N] [--steps N] [--warehouses DIR] [--figure] [--within STUDY] [--skip-loso] [--write]

For each k and each corpus study with compact graphs (corpus_data/graphs.parquet), a model is trained
on every other such study and scores the left-out one. Every method's predictions are turned into
within-study percentiles, so the pooled tau ranks all held-out runs on one scale; the baselines'
predictions are the committed leave-one-study-out predictions (corpus_data/loso_predictions.parquet,
linear regression, fitted with every other corpus study). Intervals: configuration bootstrap of the
pooled tau and of the paired differences (`prediction.metrics`), and scipy's bootstrap of the mean of
per-study taus over studies. Hyper-parameters are `MetaConfig`'s defaults, fixed before any run.

--warehouses also writes the held-out studies' per-run predictions (metanetwork_heldout_predictions
.parquet) and, with --figure, their predicted against true percentile at the first k, one panel per
study (metanetwork_heldout_k<k>.png). A held-out study is looked up in <spec stem>.duckdb, else in
any warehouse of the folder that holds its runs.

--within STUDY: grouped cross-validation inside one corpus study (GroupKFold by configuration,
--folds folds), the metanetwork and the linear baselines each fitted on the study's other folds only
(`study`) and on every other corpus study plus those folds (`corpus+study`). A fold model's scores
are mapped to their mid-rank percentile among the scores it gives the study's training runs, so the
folds' predictions share one scale and pool; pooled out-of-fold tau with configuration-bootstrap
intervals and the paired differences (metanetwork_within_*.csv).
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
from scipy.stats import bootstrap, kendalltau, rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._output import add_write_argument, save  # noqa: E402
from pipeline_lib.corpus import (corpus_designs, corpus_dir, corpus_targets, read_corpus,  # noqa: E402
                                 read_corpus_graphs, regression_view)
from pipeline_lib.decisions.metanetwork import MetaConfig, fit, graph_tensors, predict, run_set  # noqa: E402
from pipeline_lib.graphs.compact import decode  # noqa: E402
from pipeline_lib.prediction.evaluation import grouped_folds, transfer_predictions  # noqa: E402
from pipeline_lib.prediction.metrics import comparison_table, evaluation_table, top_kept  # noqa: E402
from pipeline_lib.vocabulary import Task  # noqa: E402

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


def _study_warehouse(warehouses: Path, stem: str, name: str):
    """(warehouse, its runs of `name`) from <stem>.duckdb, else from the first warehouse of the folder
    holding runs of that study (a held-out sweep recorded beside a corpus study); None if none does."""
    from stages.corpus import _warehouse
    from warehouse.predict import study_runs

    first = warehouses / f"{stem}.duckdb"
    for path in [first, *sorted(p for p in warehouses.glob("*.duckdb") if p != first)]:
        if path.is_file():
            wh = _warehouse(path, name)
            study = study_runs(wh, name)
            if not study.is_empty():
                return wh, study
    return None


def _mid_percentiles(values: np.ndarray) -> np.ndarray:
    return (rankdata(values) - 0.5) / len(values)


def heldout(corpus, graphs: dict, targets: pl.DataFrame, k: int, config: MetaConfig, warehouses: Path,
            specs: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per held-out study with a warehouse here: the metanetwork fitted on the whole corpus (studies
    with graphs) against test accuracy at k, by tau and top-5 share; and the per-run predictions
    (score and within-study percentile of each, true percentile of final accuracy)."""
    from pipeline_lib.graphs.compact import study_compact_graphs
    from pipeline_lib.spec import load_study
    from warehouse.predict import epoch_metrics, snapshot_paths

    runs = corpus.runs.join(targets.select("run_id"), on="run_id").filter(
        pl.col("run_id").is_in([r for r, e in graphs if e == 0]))
    model = fit(run_set(runs, corpus.curves, graphs, k, targets), config)
    rows, per_run = [], []
    for spec in sorted(specs.glob("*.yaml")):
        name = load_study(spec).name
        found = _study_warehouse(warehouses, spec.stem, name)
        if found is None:
            log.warning("held-out study %s: no warehouse in %s holds its runs", name, warehouses)
            continue
        wh, study = found
        log.info("held-out study %s: %d runs in %s", name, study.height, wh.path.name)
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
        per_run.append(pl.DataFrame({"study": name, "k": k, "run_id": ordered["run_id"], "final_acc": y,
                                     "true_percentile": _mid_percentiles(y), "score": scores.astype(np.float64),
                                     "predicted_percentile": _mid_percentiles(scores), "accuracy": acc,
                                     "accuracy_percentile": _mid_percentiles(acc)}))
    return pl.DataFrame(rows), pl.concat(per_run) if per_run else pl.DataFrame()


def heldout_figure(per_run: pl.DataFrame, summary: pl.DataFrame, k: int, path: Path) -> Path:
    """Predicted against true within-study percentile of final accuracy, one panel per held-out study:
    the metanetwork (filled) and raw test accuracy at epoch k (hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    studies = per_run["study"].unique(maintain_order=True).to_list()
    columns = 3
    rows = -(-len(studies) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.5 * rows), squeeze=False)
    for ax, study in zip(axes.flat, studies):
        g = per_run.filter(pl.col("study") == study)
        s = summary.filter(pl.col("study") == study).row(0, named=True)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.scatter(g["true_percentile"], g["accuracy_percentile"], s=22, facecolors="none", edgecolors="tab:orange",
                   lw=0.9, label=f"test accuracy at epoch {k} (tau {s['accuracy_tau']:.2f})")
        ax.scatter(g["true_percentile"], g["predicted_percentile"], s=14, color="tab:blue",
                   label=f"metanetwork (tau {s['tau']:.2f})")
        ax.set_title(f"{study.removeprefix('corpus-')} ({g.height} runs)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("true percentile of final accuracy", fontsize=8)
        ax.set_ylabel(f"predicted percentile (k = {k})", fontsize=8)
        ax.legend(fontsize=6.5, loc="upper left", framealpha=0.85)
    for ax in list(axes.flat)[len(studies):]:
        ax.axis("off")
    fig.suptitle("held-out studies: metanetwork fitted on the corpus, ranks within each study", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _calibrated(train_scores: np.ndarray, test_scores: np.ndarray) -> np.ndarray:
    """Each test score's mid-rank percentile among the training scores (share below, ties count half)."""
    ordered = np.sort(train_scores)
    below = np.searchsorted(ordered, test_scores, "left")
    not_above = np.searchsorted(ordered, test_scores, "right")
    return (below + not_above) / 2 / len(ordered)


WITHIN_VARIANTS = ("study", "corpus+study")


def within_study(corpus, graphs: dict, targets: pl.DataFrame, k: int, config: MetaConfig, study: str,
                 n_folds: int, ablate: bool) -> pl.DataFrame:
    """Out-of-fold prediction rows (predictor = the variant, split = within:<study>) of the runs of
    `study`, grouped K-fold by configuration; see the module docstring."""
    studies = sorted({s for s, r in zip(targets["study"], targets["run_id"]) if (r, 0) in graphs})
    if study not in studies:
        raise SystemExit(f"--within {study}: not a corpus study with graphs ({', '.join(studies)})")
    labelled = targets.filter(pl.col("study").is_in(studies)).sort("study", "run_id")
    runs = corpus.runs.join(labelled.select("run_id"), on="run_id")
    data = run_set(runs, corpus.curves, graphs, k, labelled)
    assert data.run_ids == labelled["run_id"].to_list()
    folded = grouped_folds(labelled.filter(pl.col("study") == study), n_folds)
    fold_of = dict(zip(folded["run_id"], folded["fold"]))
    fold = np.array([fold_of.get(r, -1) for r in data.run_ids])
    in_study = data.studies == study
    mine = np.nonzero(in_study)[0]
    designs = corpus_designs(corpus, labelled, [k], list(BASELINES))
    missing = [fs for fs in BASELINES if (fs, k) not in designs]
    if missing:
        raise SystemExit(f"--within: the corpus lacks {missing} at k={k} for some runs")
    view = regression_view(labelled)
    accuracy = (labelled.select("run_id").join(
        corpus.curves.filter(pl.col("epoch") == k).select("run_id", "test_acc"), on="run_id", how="left")
        ["test_acc"].fill_null(0.0).to_numpy())
    models = {ME: config, **({ABLATED: replace(config, use_graphs=False)} if ablate else {})}
    frames = []
    for variant in WITHIN_VARIANTS:
        for f in np.unique(fold[in_study]):
            start = time.perf_counter()
            train = (fold != f) & (in_study if variant == "study" else True)
            calib, test = (fold[mine] != f), (fold[mine] == f)
            scores = {}
            for name, cfg in models.items():
                model = fit(data.subset(np.nonzero(train)[0]), cfg)
                scores[name] = predict(model, data.subset(mine))
            for fs in BASELINES:
                made = transfer_predictions(Task.REGRESSION, "linear", designs[(fs, k)][0], view, train, in_study)
                assert made["run_id"].to_list() == [data.run_ids[i] for i in mine]
                scores[fs] = made["y_pred"].to_numpy()
            for name, s in scores.items():
                frames.append(pl.DataFrame({"predictor": variant, "feature_set": name, "run_id": labelled["run_id"].to_numpy()[mine][test],
                                            "fold": int(f), "y_true": data.target[mine][test],
                                            "y_pred": _calibrated(s[calib], s[test])}))
            frames.append(pl.DataFrame({"predictor": variant, "feature_set": f"accuracy@{k}",
                                        "run_id": labelled["run_id"].to_numpy()[mine][test], "fold": int(f),
                                        "y_true": data.target[mine][test], "y_pred": accuracy[mine][test]}))
            log.info("within %s %s k=%d fold %d: %.0f s", study, variant, k, f, time.perf_counter() - start)
    return (pl.concat(frames).select(pl.lit("regression").alias("task"), "predictor", "feature_set",
                                     pl.lit(k, pl.Int64).alias("k"), pl.lit(f"within:{study}").alias("split"), "run_id",
                                     pl.col("fold").cast(pl.Int64), pl.col("y_true").cast(pl.Float64),
                                     pl.col("y_pred").cast(pl.Float64), pl.lit(None, pl.Float64).alias("score")))


def within_summary(predictions: pl.DataFrame, targets: pl.DataFrame) -> pl.DataFrame:
    """Per variant and method: pooled out-of-fold tau [configuration bootstrap], the mean of the
    per-fold taus, the top-5 share kept at 1/8 of the pooled predictions, and ME minus it."""
    evaluated = evaluation_table(predictions, targets).filter(pl.col("metric") == "kendall_tau")
    compared = comparison_table(predictions, targets).filter((pl.col("metric") == "kendall_tau")
                                                             & (pl.col("feature_set") == ME))
    truth = predictions.join(targets.select("run_id", "final_acc"), on="run_id")
    rows = []
    for e in evaluated.iter_rows(named=True):
        c = compared.filter((pl.col("predictor") == e["predictor"]) & (pl.col("baseline") == e["feature_set"]))
        g = truth.filter((pl.col("predictor") == e["predictor"]) & (pl.col("feature_set") == e["feature_set"]))
        rows.append({"variant": e["predictor"], "k": e["k"], "method": e["feature_set"], "runs": e["n"],
                     "configs": e["configs"], "pooled_tau": e["value"], "pooled_low": e["low"],
                     "pooled_high": e["high"], "fold_mean_tau": e["mean"], "folds": e["folds"],
                     "top5_keep_1/8": top_kept(g["y_pred"].to_numpy(), g["final_acc"].to_numpy(), 1 / 8),
                     "metanetwork_minus": c["difference"][0] if c.height else None,
                     "diff_low": c["low"][0] if c.height else None, "diff_high": c["high"][0] if c.height else None})
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
    parser.add_argument("--figure", action="store_true",
                        help="with --warehouses: the held-out studies' predicted vs true percentile at the first k (PNG)")
    parser.add_argument("--within", metavar="STUDY", help="grouped CV inside this corpus study (see above)")
    parser.add_argument("--folds", type=int, default=5, help="--within: grouped folds (by configuration)")
    parser.add_argument("--skip-loso", action="store_true", help="leave the leave-one-study-out evaluation out")
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
    all_predictions, heldout_runs, within_predictions, tables = [], [], [], {}
    for k in args.k:
        if not args.skip_loso:
            mine = loso(corpus, graphs, targets, k, config)
            ablated = [loso(corpus, graphs, targets, k, replace(config, use_graphs=False), ABLATED)] if args.ablate else []
            predictions = pl.concat([mine, *ablated, baselines(corpus, mine, targets, k)])
            studies = per_study(predictions, targets)
            tables[f"summary_k{k}"] = summary(predictions, targets, studies)
            tables[f"studies_k{k}"] = studies.pivot(on="feature_set", index=["split", "runs"], values="tau")
            tables[f"top5_k{k}"] = studies.pivot(on="feature_set", index=["split", "runs"], values="top5_keep_1/8")
            all_predictions.append(predictions)
        if args.warehouses:
            tables[f"heldout_k{k}"], per_run = heldout(corpus, graphs, targets, k, config, args.warehouses,
                                                       args.heldout_specs)
            heldout_runs.append(per_run)
        if args.within:
            within = within_study(corpus, graphs, targets, k, config, args.within, args.folds, args.ablate)
            tables[f"within_k{k}"] = within_summary(within, targets)
            within_predictions.append(within)
    seconds = time.perf_counter() - start
    with pl.Config(tbl_rows=40, tbl_cols=20, tbl_width_chars=200, float_precision=3):
        for name, table in tables.items():
            print(f"\n{name}\n{table}")
    print(f"\n{seconds:.0f} s; config {json.dumps(config.__dict__)}")
    files = {f"metanetwork_{n}.csv": (lambda p, t=t: t.write_csv(p)) for n, t in tables.items()}
    if all_predictions:
        files["metanetwork_predictions.parquet"] = lambda p: pl.concat(all_predictions).write_parquet(p)
    if heldout_runs:
        files["metanetwork_heldout_predictions.parquet"] = lambda p: pl.concat(heldout_runs).write_parquet(p)
        if args.figure:
            k = args.k[0]
            files[f"metanetwork_heldout_k{k}.png"] = lambda p: heldout_figure(heldout_runs[0], tables[f"heldout_k{k}"], k, p)
    if within_predictions:
        files["metanetwork_within_predictions.parquet"] = lambda p: pl.concat(within_predictions).write_parquet(p)
    save(args.write, files)

if __name__ == "__main__":
    main()
