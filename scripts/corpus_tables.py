"""Print the tables of docs/results/corpus.md from the committed corpus and its LOSO results.

    .venv/bin/python scripts/corpus_tables.py [--corpus corpus] [--k 1 2 3 5]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.corpus import HEADLINE, corpus_dir, curve_crossing, read_corpus  # noqa: E402
from pipeline_lib.features import GRAPH_SETS  # noqa: E402
from pipeline_lib.vocabulary import Split, Task  # noqa: E402


def cell(value, low, high) -> str:
    return "n/a" if value is None else f"{value:.2f} [{low:.2f}, {high:.2f}]" if low is not None else f"{value:.2f}"


def markdown(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    return "\n".join([head, rule, *("| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(corpus_dir()))
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5])
    args = parser.parse_args()
    directory = Path(args.corpus)
    corpus = read_corpus(directory)
    walls = {s["study"]: s.get("wall_seconds", {}) for s in corpus.meta["studies"]}
    crossing = curve_crossing(corpus).with_columns(
        pl.col("study").map_elements(lambda s: f"{sum(walls.get(s, {}).values()) / 60:.1f}", return_dtype=pl.Utf8)
        .alias("wall minutes (train + graphs + features)"),
        pl.col("tau_acc1_final").round(2))
    print("## Corpus\n\n" + markdown(crossing) + "\n")
    evaluations = pl.read_parquet(directory / "loso_evaluations.parquet")
    comparisons = pl.read_parquet(directory / "loso_comparisons.parquet")
    studies = sorted(s for s in evaluations["split"].unique() if s.startswith(Split.LOSO_PREFIX))
    for task in Task:
        metric = HEADLINE[task]
        for predictor in sorted(evaluations["predictor"].unique()):
            for k in args.k:
                rows = evaluations.filter((pl.col("task") == task) & (pl.col("metric") == metric)
                                          & (pl.col("predictor") == predictor) & (pl.col("k") == k))
                if rows.is_empty():
                    continue
                table = (rows.with_columns(pl.struct("value", "low", "high").map_elements(
                    lambda r: cell(r["value"], r["low"], r["high"]), return_dtype=pl.Utf8).alias("cell"))
                    .pivot(on="split", index="feature_set", values="cell")
                    .select("feature_set", *[s for s in studies], Split.LOSO.value)
                    .rename({s: s.removeprefix(Split.LOSO_PREFIX).removeprefix("corpus-") for s in studies}))
                print(f"### {metric}, {predictor}, k = {k}\n\n" + markdown(table) + "\n")
    headline = comparisons.filter(pl.col("metric") == pl.col("task").replace_strict(HEADLINE))
    summary = (headline.group_by("task", "predictor", "k", "feature_set", "baseline")
               .agg(((pl.col("verdict") == "beats") & (pl.col("split") != Split.LOSO)).sum().alias("beats in"),
                    ((pl.col("verdict") == "is beaten by") & (pl.col("split") != Split.LOSO)).sum().alias("beaten in"),
                    (pl.col("split") != Split.LOSO).sum().alias("held-out studies"),
                    pl.col("difference").filter(pl.col("split") == Split.LOSO).first().round(3).alias("pooled difference"),
                    pl.col("verdict").filter(pl.col("split") == Split.LOSO).first().alias("pooled verdict"))
               .sort("task", "predictor", "k", "feature_set"))
    print("## Graph sets against the best non-graph set (paired, headline metric)\n\n" + markdown(summary))
    card = json.loads((directory / "predictor" / "card.json").read_text())
    print("\n## The shipped predictor against test accuracy at k (its accuracy gate)\n")
    for k, entry in sorted(card["predictors"].items(), key=lambda item: int(item[0])):
        gate = entry["accuracy_gate"]
        rows = [{"study": study.replace("heldout:", "held out: ").removeprefix("corpus-"),
                 **{m: f"{ours:.2f} / {accuracy:.2f}" for m, (ours, accuracy) in values.items()}}
                for study, values in gate["studies"].items()]
        print(f"### k = {k}: {entry['feature_set']}, {entry['predictor']}; gate "
              f"{'holds' if gate['holds'] else 'fails on ' + ', '.join(gate['worse_on'])}\n")
        print("predictor / accuracy at k; tau = Kendall tau with the final outcome, top5@N = share of the true top 5 "
              "kept when keeping 1/N\n\n" + markdown(pl.DataFrame(rows)) + "\n")
    print(f"\ngraph sets: {', '.join(GRAPH_SETS)}")


if __name__ == "__main__":
    main()
