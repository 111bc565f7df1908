"""The report's figures (matplotlib, headless), drawn from warehouse tables."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
with warnings.catch_warnings():  # Debian's matplotlib beside the venv's cannot offer 3D axes; none are drawn
    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from ..features import FEATURE_SETS, GRAPH_SETS  # noqa: E402
from ..prediction.metrics import metric_values  # noqa: E402
from ..vocabulary import Split, Task  # noqa: E402
from .tables import metric_frame  # noqa: E402

METRIC_TITLES = {"kendall_tau": "Kendall tau (regression)", "r2": "R2 (regression)",
                 "balanced_accuracy": "good-run balanced accuracy", "roc_auc": "good-run ROC AUC"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def predicted_vs_true(predictions: pl.DataFrame, runs: pl.DataFrame, predictor: str, k: int, feature_sets: list[str],
                      path: Path) -> Path:
    """Out-of-fold predicted against true final accuracy, one panel per feature set; colour by width,
    marker by architecture (what a reader compares), not by fold."""
    shapes = dict(zip(sorted(runs["architecture"].unique()), "os^Dv<>"))
    widths = sorted(runs["width"].unique())
    colours = dict(zip(widths, plt.get_cmap("viridis")([i / max(len(widths) - 1, 1) for i in range(len(widths))])))
    fig, axes = plt.subplots(1, len(feature_sets), figsize=(4 * len(feature_sets), 4), squeeze=False)
    for ax, fs in zip(axes[0], feature_sets):
        rows = predictions.filter((pl.col("task") == Task.REGRESSION) & (pl.col("split") == Split.CV)
                                  & (pl.col("predictor") == predictor) & (pl.col("feature_set") == fs)
                                  & (pl.col("k") == k)).join(runs.select("run_id", "architecture", "width"), on="run_id")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        for (arch, width), group in rows.group_by("architecture", "width", maintain_order=True):
            ax.scatter(group["y_true"], group["y_pred"], s=16, marker=shapes[arch], color=colours[width],
                       label=f"{arch} w{width:g}", alpha=0.8)
        if rows.height:
            pooled = metric_values(Task.REGRESSION, rows)
            ax.set_title(f"{fs}, k={k}\npooled R2 {pooled['r2']:.2f}, tau {pooled['kendall_tau']:.2f}",
                         fontsize=9)
        ax.set_xlabel("true final accuracy")
        ax.set_ylabel(f"predicted ({predictor}, out of fold)")
    axes[0][0].legend(fontsize=7, title="architecture, width", title_fontsize=7)
    return _save(fig, path)


TRAJECTORIES = (("strength", "mean", "mean node strength"), ("eigenvector", "std", "spread of eigenvector centrality"),
                ("pagerank", "max", "largest PageRank"), ("authority", "entropy", "entropy of authority"))


def graph_trajectories(summaries: pl.DataFrame, targets: pl.DataFrame, path: Path) -> Path:
    """A few whole-graph properties through training, good against bad runs: median and interquartile
    band over the runs of each class, per epoch (the signal the graph features summarise)."""
    fig, axes = plt.subplots(1, len(TRAJECTORIES), figsize=(4 * len(TRAJECTORIES), 3.4))
    rows = summaries.join(targets.select("run_id", "good"), on="run_id")
    for ax, (prop, statistic, label) in zip(axes, TRAJECTORIES):
        series = rows.filter((pl.col("property") == prop) & (pl.col("statistic") == statistic))
        for good, colour, name in ((1, "tab:green", "good runs"), (0, "tab:red", "other runs")):
            band = (series.filter(pl.col("good") == good).group_by("epoch")
                    .agg(pl.col("value").quantile(q, "linear").alias(n) for q, n in ((0.25, "lo"), (0.5, "mid"), (0.75, "hi")))
                    .sort("epoch"))
            if band.height:
                ax.plot(band["epoch"], band["mid"], color=colour, label=name)
                ax.fill_between(band["epoch"], band["lo"], band["hi"], color=colour, alpha=0.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def metric_vs_k(leaderboard: pl.DataFrame, predictor: str, split: str, path: Path, title: str = "") -> Path:
    """Every headline metric against k, one line per feature set (pooled, error bars: 95%
    configuration-bootstrap interval), the seed agreement dotted."""
    wide = metric_frame(leaderboard, predictor, split)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (metric, label) in zip(axes.flat, METRIC_TITLES.items()):
        for fs in FEATURE_SETS:
            rows = wide.filter(pl.col("feature_set") == fs).sort("k")
            if rows.height and metric in rows.columns:
                value = rows[metric].fill_null(float("nan")).to_numpy()
                yerr = [value - rows[f"{metric}_low"].fill_null(float("nan")).to_numpy(),
                        rows[f"{metric}_high"].fill_null(float("nan")).to_numpy() - value]
                ax.errorbar(rows["k"], value, yerr=yerr, marker="o", ms=3, capsize=2, lw=1.2,
                            label=fs, ls="-" if fs in GRAPH_SETS else "--")
        seed = f"seed_{metric}"
        if seed in wide.columns:
            s = wide.group_by("k").agg(pl.col(seed).first()).sort("k")
            ax.plot(s["k"], s[seed], color="black", ls=":", lw=2, label="seed agreement")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("k (epochs observed)")
        ax.set_xticks(sorted(wide["k"].unique()))
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or f"{predictor}, split {split}", fontsize=11)
    return _save(fig, path)


def compute_saving(cost_table: pl.DataFrame, path: Path) -> Path:
    """Fraction of the train-everything compute each strategy spends, with the best run it keeps."""
    labels = [s if not k else f"{s} k={k} {fs}"
              for s, k, fs in cost_table.select("strategy", "k", "feature_set").iter_rows()]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(labels) + 1.2))
    bars = ax.barh(labels, cost_table["fraction"], color=["tab:blue" if k else "grey" for k in cost_table["k"]])
    for bar, best in zip(bars, cost_table["best_final_acc"]):
        if best is not None:
            ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"best kept {best:.3f}",
                    va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("compute, fraction of training every run to the end")
    ax.set_xlim(0, max(1.25, float(cost_table["fraction"].max() or 0) + 0.25))
    return _save(fig, path)

