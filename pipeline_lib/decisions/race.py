"""The decision race (issue #27, items 3-5): the stopping policies that read curves alone, replayed on
every study of the committed corpus (`pipeline_lib/corpus_data/`: its curves, nothing else, so it
runs from a fresh clone), each family's setting chosen leave one study out, and the shipped default
keep rule chosen by the same rule. Plain functions; `benchmarks/decision_race.py` runs it and writes
docs/results/race.md.

Per study: the runs in the spec's launch order (`spec.expand_runs` of specs/corpus/<study>.yaml), a
diverged run's final accuracy at chance (`prediction.targets.run_targets`), replayed by `replay` with
4 workers over the sweep's order and 20 seeded random orders (`replay.orders`), every epoch's
recorded seconds and every decision's measured seconds charged. The families (`FAMILIES`):

- `triage`: the synchronous triage `flows.train_sweep` runs (`replay.simulate_rungs`: a barrier at
  each rung, `decisions.triage.decide` on the accuracy at the rung, as `predictor: auto` decides
  while no predictor passes its gate), at rungs (1), (2), (1, 2), (1, 3), keeping 1/16, 0.1, 1/8,
  0.2, 0.3 or 0.5 of each cohort or 1/eta for eta 2, 3, 4: the shipped path;
- `i_epoch`: asynchronous i-Epoch at epoch 1, 2 or 3, the same keep fractions, ASHA-like (the rule
  `TriagePruner` applies: `policies.promotes`);
- Optuna's `SuccessiveHalvingPruner`, `HyperbandPruner` and `MedianPruner` through Optuna's API
  (`replay.pruner_grid`);
- `pasha`: PASHA (Bohdal et al., ICLR 2023; `policies.Pasha`) at r_min, eta in `PASHA_GRID`, soft
  ranking (the paper's epsilon) and exact ranking;
- `train_all`, the reference, and `i_epoch (hindsight)`: the i-Epoch setting the rule picks on the
  study itself, an oracle that cannot be deployed (it reads the study's own outcome).

Not raced: the learned predictors (registered or corpus; `predictor: auto` falls back to accuracy
because the corpus predictor fails its accuracy gate) and the conformal stop rule.

Measures per replay (`replay.judge`): epochs and seconds (training + decisions) as shares of
train-all's, regret of the best run trained to its end, whether the best run was, and the share of
the true top 5 by final accuracy trained to their end (`top5_kept`); per study and setting, means
over the orders with their 2.5-97.5% range over orders (the best-run-kept rate with a 95% Wilson
interval over orders).

THE RULE (fixed before the race was run): from a family's settings raced on every one of the
studies it may read (and that can run on the study chosen for: a rung below its epochs), take those whose mean (over those studies) share of the true top 5 kept is at
least `MIN_TOP5` (0.8) and whose mean best-run-kept rate is at least `MIN_BEST_KEPT` (0.9); of them
the one of fewest mean epochs (share of train-all's); if none qualifies, the one of highest mean
top-5 share (then fewest epochs). Ties: fewer epochs, then higher top-5 share, then the label.
Leave one study out: for each study, the rule reads the OTHER studies only, and the chosen setting's
numbers on the held-out study are what the family scores there (`loso`). Across studies: the mean
of the held-out numbers with a seeded bootstrap interval over studies (`family_table`); each rival
against the shipped triage, paired by study (`paired`). The default to ship: the rule applied to
all studies (`defaults`).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
from scipy.stats import binomtest

from pipeline_lib.corpus import Corpus, read_corpus
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import expand_runs, load_study

from . import policies, replay
from .replay import Curves, Settings, Sweep, spread

log = logging.getLogger(__name__)

SPECS_DIR = Path(__file__).resolve().parents[2] / "specs" / "corpus"  # the checkout's corpus specs
FRACTIONS = (1 / 16, 0.1, 1 / 8, 0.2, 0.3, 0.5)  # the replay stage's fractions and the aggressive 1/8, 1/16
SETTINGS = Settings(fractions=FRACTIONS)  # 4 workers, 20 seeded orders, i-Epoch at 1, 2, 3, triage rungs, eta 2-4
PRUNERS = ("SuccessiveHalvingPruner", "HyperbandPruner", "MedianPruner")
PASHA_GRID = ((1, 2), (1, 3), (1, 4), (2, 2))  # (r_min, eta): three rungs at least below 6 epochs and more
SHIPPED = "triage"
PRUNER_RULE = "i_epoch"  # the asynchronous rule of TriagePruner and TriageScheduler
ORACLE = "i_epoch (hindsight)"
FAMILIES = (SHIPPED, "i_epoch", "pasha", *PRUNERS)  # the deployable families the rule chooses for
MIN_TOP5 = 0.8
MIN_BEST_KEPT = 0.9
BOOTSTRAP = 10_000
SEED = 0
MEASURES = ("top5_kept", "epochs_fraction", "fraction", "regret", "best_kept_rate")


# The studies -----------------------------------------------------------------------------------------

def corpus_curves(specs_dir: Path = SPECS_DIR, corpus: Corpus | None = None,
                  studies: int | None = None) -> dict[str, Curves]:
    """Per corpus study with a spec in `specs_dir` (name order; the first `studies` only when given),
    its curves in the spec's launch order."""
    corpus = corpus or read_corpus()
    names = set(corpus.runs["study"].unique())
    out: dict[str, Curves] = {}
    for path in sorted(specs_dir.glob("*.yaml")):
        study = load_study(path)
        if study.name not in names:
            log.warning("spec %s: study %s is not in the corpus; left out", path, study.name)
            continue
        runs = corpus.runs.filter(pl.col("study") == study.name)
        final = run_targets(runs).select("run_id", "final_acc")
        metrics = corpus.curves.join(runs.select("run_id"), on="run_id").select("run_id", "epoch", "test_acc",
                                                                                  "seconds")
        out[study.name] = Curves.from_frames(metrics, final, [r.run_id for r in expand_runs(study)])
        if studies is not None and len(out) == studies:
            break
    return out


# Replaying ------------------------------------------------------------------------------------------

def curves_only(curves: Curves) -> Sweep:
    """A sweep of curves alone: no graph seconds, features or predictors; each run its own configuration."""
    n = len(curves.run_ids)
    return Sweep(curves, np.zeros((n, curves.epochs + 1)), np.array(curves.run_ids), np.zeros(n))


def race_grid(curves: Curves, settings: Settings = SETTINGS,
              pasha: tuple[tuple[int, int], ...] = PASHA_GRID) -> list[tuple[dict, Callable]]:
    """(labels, factory) of every raced setting: `replay.policy_grid`'s train-all, i-Epoch, the three
    Optuna pruners and the triage by accuracy (a sweep with no features or predictors), and PASHA."""
    grid = [(labels, make) for labels, make in replay.policy_grid(curves_only(curves), settings)
            if labels["policy"] in ("train_all", "i_epoch", SHIPPED, *PRUNERS)]
    for r_min, eta in pasha:
        for soft in (True, False):
            labels = replay._labels("pasha", "pasha", f"r_min={r_min},eta={eta},ranking={'soft' if soft else 'exact'}",
                                    True, rung=r_min)
            grid.append((labels, lambda seed, r_min=r_min, eta=eta, soft=soft:
                         policies.Pasha(curves.epochs, r_min=r_min, eta=eta, soft=soft)))
    return grid


def label_column() -> pl.Expr:
    """One text per setting within its family: i-Epoch's rung with its rule, else the setting."""
    return (pl.when(pl.col("policy") == "i_epoch").then(pl.format("rung={} {}", pl.col("rung"), pl.col("setting")))
            .otherwise(pl.col("setting")).alias("label"))


def race(studies: dict[str, Curves], settings: Settings = SETTINGS,
         pasha: tuple[tuple[int, int], ...] = PASHA_GRID,
         progress: Callable[[str, float], None] | None = None) -> pl.DataFrame:
    """One row per study, setting and order (`replay.replay_sweep`'s columns, `study` and `label`)."""
    frames = []
    for name, curves in studies.items():
        start = time.perf_counter()
        rows = replay.replay_sweep(curves_only(curves), settings, grid=race_grid(curves, settings, pasha))
        frames.append(rows.with_columns(pl.lit(name).alias("study"), label_column()))
        if progress:
            progress(name, time.perf_counter() - start)
    return pl.concat(frames, how="diagonal_relaxed")


def summarise(rows: pl.DataFrame) -> pl.DataFrame:
    """Per study and setting over its orders: means with the 2.5-97.5% range over orders of the epochs
    and seconds (shares of train-all's), regret and top-5 share kept; the best-run-kept rate with its
    95% Wilson interval over orders; runs kept, wall and decision seconds (means)."""
    out = rows.group_by("study", "policy", "label", "deployable", maintain_order=True).agg(
        pl.len().alias("orders"), *spread("top5_kept"), *spread("epochs_fraction"), *spread("fraction"),
        *spread("regret"), pl.col("best_kept").mean().alias("best_kept_rate"), pl.col("best_kept").sum().alias("_kept"),
        pl.col("keep_fraction").first(), pl.col("runs_kept").mean(), pl.col("wall_seconds").mean(),
        pl.col("decision_seconds").mean())
    bounds = [binomtest(int(k), n).proportion_ci(method="wilson") for k, n in zip(out["_kept"], out["orders"])]
    return out.with_columns(pl.Series("best_kept_rate_low", [b.low for b in bounds]),
                            pl.Series("best_kept_rate_high", [b.high for b in bounds])).drop("_kept")


# Choosing -------------------------------------------------------------------------------------------

def choose(summary: pl.DataFrame, among: set[str] | None = None) -> dict:
    """THE RULE (module docstring) on one family's per-study summary rows of the studies it may read:
    the chosen label with its means over those studies and whether it qualified. `among`: the labels
    that can run on the study chosen for (its grid: a rung or warm-up below its epochs)."""
    studies = summary["study"].n_unique()
    if among is not None:
        summary = summary.filter(pl.col("label").is_in(sorted(among)))
    means = (summary.group_by("label", maintain_order=True)
             .agg(pl.col("study").n_unique().alias("studies"), *(pl.col(m).mean() for m in MEASURES))
             .filter(pl.col("studies") == studies))
    qualified = means.filter((pl.col("top5_kept") >= MIN_TOP5 - 1e-12) & (pl.col("best_kept_rate") >= MIN_BEST_KEPT - 1e-12))
    if qualified.height:
        row = qualified.sort(["epochs_fraction", "top5_kept", "label"], descending=[False, True, False]).row(0, named=True)
    else:
        row = means.sort(["top5_kept", "epochs_fraction", "label"], descending=[True, False, False]).row(0, named=True)
    return {**row, "qualified": bool(qualified.height)}


def loso(summary: pl.DataFrame) -> pl.DataFrame:
    """Per family and study: the setting the rule picks from the OTHER studies and its numbers on this
    one; the hindsight i-Epoch (the rule on the study itself) and train-all beside them."""
    rows = []
    studies = summary["study"].unique(maintain_order=True).to_list()
    for family in (*FAMILIES, ORACLE, "train_all"):
        policy = "i_epoch" if family == ORACLE else family
        own = summary.filter(pl.col("policy") == policy)
        for held in studies:
            reads = own.filter(pl.col("study") == held) if family in (ORACLE, "train_all") else \
                own.filter(pl.col("study") != held)
            if reads.is_empty():
                continue
            chosen = choose(reads, set(own.filter(pl.col("study") == held)["label"]))
            numbers = own.filter((pl.col("study") == held) & (pl.col("label") == chosen["label"])).row(0, named=True)
            rows.append({"family": family, "deployable": family != ORACLE, "study": held, "label": chosen["label"],
                         "qualified": chosen["qualified"], **{k: v for k, v in numbers.items()
                                                              if k not in ("study", "policy", "label", "deployable")}})
    return pl.DataFrame(rows)


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, draws: int = BOOTSTRAP) -> tuple[float, float]:
    """2.5-97.5% percentile interval of the mean over a bootstrap of the values (studies)."""
    idx = rng.integers(0, len(values), size=(draws, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def family_table(held_out: pl.DataFrame, summary: pl.DataFrame, seed: int = SEED) -> pl.DataFrame:
    """Per family: the mean over studies of its held-out numbers, each with a seeded bootstrap interval
    over studies, and the setting the rule picks on all studies (what would ship)."""
    rows = []
    for family, group in held_out.group_by("family", maintain_order=True):
        family = family[0]
        rng = np.random.default_rng(seed)
        row = {"family": family, "deployable": bool(group["deployable"][0]), "studies": group.height}
        for m in MEASURES:
            values = group[m].cast(pl.Float64).to_numpy()
            low, high = bootstrap_mean(values, rng)
            row.update({m: float(values.mean()), f"{m}_low": low, f"{m}_high": high})
        if family in FAMILIES or family == "train_all":
            row["on_all_studies"] = choose(summary.filter(pl.col("policy") == family))["label"]
        else:
            row["on_all_studies"] = None
        rows.append(row)
    return pl.DataFrame(rows)


def paired(held_out: pl.DataFrame, against: str = SHIPPED, seed: int = SEED) -> pl.DataFrame:
    """Each deployable rival minus `against`, study by study (held-out numbers): mean differences in
    top-5 share, epochs and best-run-kept rate with seeded bootstrap intervals over studies, and
    `beats`: better on top-5 share or on epochs with its interval clear of 0, and not worse on the
    other with its interval clear of 0 (fewer epochs are better)."""
    base = held_out.filter(pl.col("family") == against).select("study", *MEASURES)
    rows = []
    for family in (f for f in FAMILIES if f != against):
        joined = held_out.filter(pl.col("family") == family).join(base, on="study", suffix="_base")
        if joined.is_empty():
            continue
        rng = np.random.default_rng(seed)
        row = {"family": family, "studies": joined.height}
        for m in ("top5_kept", "epochs_fraction", "best_kept_rate"):
            diff = (joined[m].cast(pl.Float64) - joined[f"{m}_base"].cast(pl.Float64)).to_numpy()
            low, high = bootstrap_mean(diff, rng)
            row.update({m: float(diff.mean()), f"{m}_low": low, f"{m}_high": high})
        better = row["top5_kept_low"] > 0 or row["epochs_fraction_high"] < 0
        worse = row["top5_kept_high"] < 0 or row["epochs_fraction_low"] > 0
        row["beats"] = better and not worse
        row["loses"] = worse and not better
        rows.append(row)
    return pl.DataFrame(rows)


def front(summary: pl.DataFrame) -> pl.DataFrame:
    """Every deployable setting's means over all studies (epochs share, top-5 share, ...) and whether it
    is on the Pareto front (no other has fewer or equal epochs and a higher or equal top-5 share)."""
    means = (summary.filter(pl.col("deployable"))
             .group_by("policy", "label", maintain_order=True)
             .agg(pl.col("study").n_unique().alias("studies"), *(pl.col(m).mean() for m in MEASURES))
             .filter(pl.col("studies") == summary["study"].n_unique()))
    points = replay.pareto_front(list(zip(means["epochs_fraction"], -means["top5_kept"])))
    on = {(x, -y) for x, y in points}
    return means.with_columns(pl.Series("on_front", [(x, y) in on for x, y in
                                                     zip(means["epochs_fraction"], means["top5_kept"])]))


def triage_default(label: str) -> dict:
    """A triage label ("rungs=1,3 keep=0.125" or "rungs=1 reduction_factor=3") as rungs and keep rule:
    `keep` a fraction (1/eta for a reduction factor), and the spec's triage section's keys."""
    rungs_text, rule = label.split()
    rungs = [int(r) for r in rungs_text.removeprefix("rungs=").split(",")]
    key, value = rule.split("=")
    if key == "reduction_factor":
        return {"setting": label, "rungs": rungs, "keep": 1 / int(value),
                "spec": {"rungs": rungs, "reduction_factor": int(value)}}
    return {"setting": label, "rungs": rungs, "keep": float(value), "spec": {"rungs": rungs, "keep": float(value)}}


def defaults(summary: pl.DataFrame) -> dict:
    """The shipped default keep rules: the rule applied on all studies to the triage family (a spec's
    synchronous triage), and under `pruner` to the asynchronous i-Epoch (what `TriagePruner` and
    `TriageScheduler` apply: each trial decided as it reaches a rung, against those seen there)."""
    chosen = choose(summary.filter(pl.col("policy") == SHIPPED))
    pruner = choose(summary.filter(pl.col("policy") == PRUNER_RULE))
    rung, fraction = (part.split("=")[1] for part in pruner["label"].split())
    return {**triage_default(chosen["label"]), "qualified": chosen["qualified"],
            **{f"mean_{m}": chosen[m] for m in MEASURES},
            "pruner": {"setting": pruner["label"], "rungs": [int(rung)], "keep": float(fraction),
                       "qualified": pruner["qualified"], **{f"mean_{m}": pruner[m] for m in MEASURES}}}


# The figure -----------------------------------------------------------------------------------------

def figure(points: pl.DataFrame, families: pl.DataFrame, path: Path) -> Path:
    """Mean epochs (share of train-all's) against mean top-5 share kept, over all studies: every
    deployable setting (small), the deployable Pareto front (line), and per family its leave-one-
    study-out numbers (large, bars = bootstrap intervals over studies; the hindsight i-Epoch hollow)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6.5))
    colours = dict(zip((*FAMILIES, "train_all"), plt.get_cmap("tab10").colors))
    for policy, group in points.group_by("policy", maintain_order=True):
        ax.scatter(group["epochs_fraction"], group["top5_kept"], s=14, alpha=0.45, color=colours.get(policy[0], "grey"))
    on = points.filter(pl.col("on_front")).sort("epochs_fraction")
    ax.step(on["epochs_fraction"], on["top5_kept"], where="post", color="black", linewidth=1.5,
            label="deployable Pareto front (settings' means)")
    for row in families.iter_rows(named=True):
        family = row["family"]
        colour = colours.get(family, colours["i_epoch"])
        xerr = np.clip([[row["epochs_fraction"] - row["epochs_fraction_low"]],
                        [row["epochs_fraction_high"] - row["epochs_fraction"]]], 0, None)
        yerr = np.clip([[row["top5_kept"] - row["top5_kept_low"]], [row["top5_kept_high"] - row["top5_kept"]]], 0, None)
        ax.errorbar([row["epochs_fraction"]], [row["top5_kept"]], xerr=xerr, yerr=yerr, fmt="D", ms=9, color=colour,
                    mfc=colour if row["deployable"] else "none", capsize=3,
                    label=("train-all" if family == "train_all" else f"{family}, leave one study out")
                    if row["deployable"] else f"{family} (oracle, not deployable)")
    ax.set(xlabel="epochs trained / train-all's (mean over studies)",
           ylabel="share of the true top 5 trained to their end (mean)", xlim=(0, 1.05), ylim=(0, 1.05))
    ax.axhline(MIN_TOP5, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Curve-only stopping policies on the corpus studies (4 workers, sweep order + seeded orders)",
                 fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def settings_for(orders: int) -> Settings:
    """The race's settings with `orders` seeded random orders."""
    return replace(SETTINGS, random_orders=orders)
