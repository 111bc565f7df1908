"""The decision race: the stopping policies that read curves alone (the synchronous triage by accuracy,
asynchronous i-Epoch, PASHA, Optuna's SuccessiveHalving, Hyperband and Median pruners) replayed on
the committed corpus' studies, each family's setting chosen leave one study out; the default keep
rule chosen by the same rule (`pipeline_lib/decisions/race.py` says what and how).

    nice .venv/bin/python benchmarks/decision_race.py [--studies N] [--orders 20] [--rows FILE] [--write [DIR]]

Prints the tables. --write writes docs/results/race.md, docs/results/race.png and
benchmarks/results/decision_race.json (every setting's numbers per study, with their intervals over
orders; the shipped defaults: the triage's, and under "pruner" the asynchronous one `TriagePruner` and `TriageScheduler` take); --write DIR writes
all three to DIR. --rows FILE keeps every replay's row (Parquet): read from FILE when it exists
(the tables made again without replaying; --studies and --orders are then those of FILE, and the
time and load reported those of the replays, kept beside it as FILE.json), else written there. The README quotes the committed race.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._output import RESULTS, add_write_argument  # noqa: E402
from pipeline_lib.decisions import race  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results"
COMMAND = "nice .venv/bin/python benchmarks/decision_race.py --write"
NAMES = {"triage": "triage by accuracy (synchronous, shipped)", "i_epoch": "i-Epoch (asynchronous, the pruner's rule)",
         "pasha": "PASHA", "SuccessiveHalvingPruner": "Optuna SuccessiveHalvingPruner",
         "HyperbandPruner": "Optuna HyperbandPruner", "MedianPruner": "Optuna MedianPruner",
         race.ORACLE: "i-Epoch, hindsight-best per study (oracle, not deployable)", "train_all": "train-all"}


def interval(row: dict, m: str, digits: int = 2) -> str:
    return f"{row[m]:.{digits}f} [{row[f'{m}_low']:.{digits}f}, {row[f'{m}_high']:.{digits}f}]"


def families_table(families: pl.DataFrame) -> list[str]:
    lines = ["| family | setting the rule picks on all studies | top-5 share kept | epochs / train-all | "
             "seconds / train-all | regret | best run kept |", "|---|---|---|---|---|---|---|"]
    for row in families.iter_rows(named=True):
        pick = "(per study)" if row["on_all_studies"] is None else row["on_all_studies"] or "-"
        lines.append(f"| {NAMES.get(row['family'], row['family'])} | {pick} | "
                     f"{interval(row, 'top5_kept')} | {interval(row, 'epochs_fraction')} | {interval(row, 'fraction')} | "
                     f"{interval(row, 'regret', 3)} | {interval(row, 'best_kept_rate')} |")
    return lines


def paired_table(paired: pl.DataFrame) -> list[str]:
    lines = ["| rival | top-5 share kept, rival - triage | epochs / train-all, rival - triage | "
             "best run kept, rival - triage | beats triage | loses to triage |", "|---|---|---|---|---|---|"]
    for row in paired.iter_rows(named=True):
        lines.append(f"| {NAMES.get(row['family'], row['family'])} | {interval(row, 'top5_kept')} | "
                     f"{interval(row, 'epochs_fraction')} | {interval(row, 'best_kept_rate')} | "
                     f"{'yes' if row['beats'] else 'no'} | {'yes' if row['loses'] else 'no'} |")
    return lines


def held_out_table(held_out: pl.DataFrame, studies: dict) -> list[str]:
    lines = ["| study | runs | epochs | family | setting (chosen without the study) | top-5 share kept | "
             "epochs / train-all | seconds / train-all | regret | best run kept |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in held_out.sort("study", maintain_order=True).iter_rows(named=True):
        curves = studies[row["study"]]
        lines.append(f"| {row['study'].removeprefix('corpus-')} | {len(curves.run_ids)} | {curves.epochs} | "
                     f"{row['family']} | {row['label'] or '-'} | {interval(row, 'top5_kept')} | "
                     f"{interval(row, 'epochs_fraction')} | {interval(row, 'fraction')} | {interval(row, 'regret', 3)} | "
                     f"{interval(row, 'best_kept_rate')} |")
    return lines


def front_table(points: pl.DataFrame) -> list[str]:
    lines = ["| family | setting | epochs / train-all | top-5 share kept | best run kept | regret |", "|---|---|---|---|---|---|"]
    for row in points.filter(pl.col("on_front")).sort("epochs_fraction").iter_rows(named=True):
        lines.append(f"| {row['policy']} | {row['label'] or '-'} | {row['epochs_fraction']:.2f} | {row['top5_kept']:.2f} | "
                     f"{row['best_kept_rate']:.2f} | {row['regret']:.3f} |")
    return lines


def aggressive(points: pl.DataFrame) -> str:
    """The triage settings keeping 1/8 or 1/16: each fraction's setting of highest mean top-5 share."""
    parts = []
    for fraction in (0.125, 0.0625):
        group = points.filter((pl.col("policy") == race.SHIPPED) & pl.col("label").str.ends_with(f"keep={fraction}"))
        if group.height:
            row = group.sort(["top5_kept", "epochs_fraction"], descending=[True, False]).row(0, named=True)
            parts.append(f"keeping 1/{round(1 / fraction)}, at best `{row['label']}`: top-5 share {row['top5_kept']:.2f}, "
                         f"best run kept {row['best_kept_rate']:.2f}, {row['epochs_fraction']:.0%} of the epochs")
    return "; ".join(parts)


def verdict(families: pl.DataFrame, paired: pl.DataFrame, default: dict, points: pl.DataFrame) -> list[str]:
    by = {row["family"]: row for row in families.iter_rows(named=True)}
    shipped, oracle = by[race.SHIPPED], by.get(race.ORACLE)
    spec, pruner = default["spec"], default["pruner"]
    rule = f"reduction_factor: {spec['reduction_factor']}" if "reduction_factor" in spec else f"keep: {spec['keep']:g}"
    beating = [NAMES.get(f, f) for f, b in zip(paired["family"], paired["beats"]) if b]
    losing = [NAMES.get(f, f) for f, b in zip(paired["family"], paired["loses"]) if b]
    trading = [row for row in paired.iter_rows(named=True) if not row["beats"] and not row["loses"]
               and (row["epochs_fraction_high"] < 0 or row["top5_kept_low"] > 0)]
    lines = [
        f"- **Ship the synchronous triage by accuracy at `{default['setting']}`** (a spec's `triage:` section: "
        f"`rungs: {spec['rungs']}`, `{rule}`). The rule picks it on all {shipped['studies']} studies "
        + ("(it qualifies: " if default["qualified"] else "(no setting qualifies; the highest top-5 share: ")
        + f"mean top-5 share {default['mean_top5_kept']:.2f}, best run kept {default['mean_best_kept_rate']:.2f}, "
        f"{default['mean_epochs_fraction']:.0%} of train-all's epochs).",
        f"- **`TriagePruner` and `TriageScheduler` default to keep {pruner['keep']:.4g} at rungs {pruner['rungs']}** "
        f"(`{pruner['setting']}`): they decide each trial as it reaches a rung, against the trials seen there, the "
        f"asynchronous i-Epoch of this race, for which the rule picks that setting on all {shipped['studies']} studies "
        + ("(it qualifies: " if pruner["qualified"] else "(no setting qualifies; the highest top-5 share: ")
        + f"mean top-5 share {pruner['mean_top5_kept']:.2f}, best run kept {pruner['mean_best_kept_rate']:.2f}, "
        f"{pruner['mean_epochs_fraction']:.0%} of train-all's epochs).",
        f"- Chosen leave one study out, the triage family keeps {interval(shipped, 'top5_kept')} of the true top 5 and "
        f"the best run in {interval(shipped, 'best_kept_rate')} of orders, for {interval(shipped, 'epochs_fraction')} of "
        f"train-all's epochs ({interval(shipped, 'fraction')} of its seconds, decisions included), regret "
        f"{interval(shipped, 'regret', 3)} (means over studies, 95% bootstrap intervals over studies).",
        "- " + (f"**Beating it** (paired by study, better on top-5 share or epochs with the interval clear of 0 and "
                f"not worse on the other): {', '.join(beating)}." if beating else
                "**No deployable rival beats it**: none is better on the top-5 share or on epochs, paired by study "
                "with the interval clear of 0, without being worse on the other.")
        + (f" Worse than it by that test: {', '.join(losing)}." if losing else "")
        + "".join(f" {NAMES.get(row['family'], row['family'])} trades: {row['epochs_fraction']:+.2f} of train-all's "
                  f"epochs for {row['top5_kept']:+.2f} top-5 share and {row['best_kept_rate']:+.2f} best-run-kept rate."
                  for row in trading),
    ]
    if (text := aggressive(points)):
        lines.append(f"- The aggressive keep rules of the triage stay far below the bar (means over all studies): {text}.")
    if oracle is not None:
        lines.append(f"- The hindsight-best i-Epoch (the rule applied to each study's own outcome: an oracle, not "
                     f"deployable) keeps {interval(oracle, 'top5_kept')} of the top 5 for "
                     f"{interval(oracle, 'epochs_fraction')} of the epochs: what knowing the study would add.")
    return lines


def markdown(meta: dict, families: pl.DataFrame, paired: pl.DataFrame, held_out: pl.DataFrame, points: pl.DataFrame,
             default: dict, studies: dict) -> str:
    s = meta["settings"]
    lines = [
        "# Decision race: curve-only stopping policies on the corpus", "",
        f"> `{COMMAND}` ({meta['measured_at']}, {meta['cores']} cores, load average {meta['load_average_1m_end']:.1f} at "
        f"the end; {meta['wall_seconds'] / 60:.1f} min). {len(studies)} corpus studies "
        f"({sum(len(c.run_ids) for c in studies.values())} runs, their committed curves), {s['workers']} workers, the "
        f"sweep's launch order and {s['random_orders']} seeded random orders. Code: `pipeline_lib/decisions/race.py`; "
        "every setting's numbers per study, with their intervals over orders: "
        "[benchmarks/results/decision_race.json](../../benchmarks/results/decision_race.json).", "",
        "**What is raced**: policies that read accuracies alone. The synchronous triage by accuracy (what "
        "`flows.train_sweep` runs under `predictor: auto` while no predictor passes its gate; "
        f"`replay.simulate_rungs`) at rungs {', '.join(str(tuple(r)) for r in s['triage_rungs'])}, keeping "
        f"{', '.join(f'{f:g}' for f in s['fractions'])} of each cohort or 1/eta for eta "
        f"{', '.join(map(str, s['reduction_factors']))}; asynchronous i-Epoch at epoch "
        f"{', '.join(map(str, s['rungs']))} with the same fractions (the rule of `TriagePruner`); PASHA (Bohdal et al., "
        f"ICLR 2023) at (r_min, eta) in {', '.join(map(str, s['pasha']))}, soft and exact ranking; Optuna's "
        "SuccessiveHalving, Hyperband and Median pruners (`replay.pruner_grid`). **Not raced**: the learned "
        "predictors (registered or the corpus predictor, which fails its accuracy gate, so `auto` decides by "
        "accuracy) and the conformal stop rule.", "",
        "**Measures**, per study and setting over the orders: the share of the true top 5 by final accuracy "
        "trained to their end, epochs and seconds (training plus measured decision seconds) as shares of "
        "train-all's, regret of the best run trained to its end, and the share of orders keeping the best run.", "",
        f"**The rule** (fixed before the race ran): among a family's settings, those whose mean top-5 share is "
        f"at least {race.MIN_TOP5} and whose mean best-run-kept rate is at least {race.MIN_BEST_KEPT}, the one of "
        "fewest mean epochs; with none, the one of highest top-5 share. Leave one study out: for each study the "
        "rule reads the other studies only, and the family scores the chosen setting's numbers on the held-out "
        "study. The hindsight i-Epoch applies the rule to the study itself (an oracle).", "",
        "## Verdict", "", *verdict(families, paired, default, points), "",
        "## Families, each setting chosen leave one study out", "",
        "Means over studies of the held-out numbers, [95% bootstrap interval over studies] (seeded).", "",
        *families_table(families), "",
        "## Each rival against the shipped triage, paired by study", "",
        *paired_table(paired), "",
        "## The deployable Pareto front", "",
        "Every deployable setting's means over all studies: epochs against the top-5 share; the front holds the "
        "settings no other beats on both. The large markers are the families' leave-one-study-out means.", "",
        "![race](race.png)", "",
        *front_table(points), "",
        "## Per study", "",
        "Each family's setting chosen without the study, its numbers on the study: means over orders "
        "[2.5-97.5% over orders; best run kept: 95% Wilson interval over orders].", "",
        "<details><summary>per study and family</summary>", "",
        *held_out_table(held_out, studies), "", "</details>", ""]
    return "\n".join(lines)


def rounded(value):
    """Floats to 6 significant digits, through dicts and lists (the json stays small)."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, help="only the first N corpus studies (a quick try)")
    parser.add_argument("--orders", type=int, default=race.SETTINGS.random_orders, help="seeded random orders")
    parser.add_argument("--rows", type=Path, help="every replay's row: read when the file exists, else written")
    add_write_argument(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    studies = race.corpus_curves(studies=args.studies)
    settings = race.settings_for(args.orders)
    measured = None
    if args.rows is not None and args.rows.exists():
        rows = pl.read_parquet(args.rows)
        studies = {name: curves for name, curves in studies.items() if name in set(rows["study"])}
        settings = race.settings_for(int(rows["order_index"].max()))
        measured = json.loads(args.rows.with_name(args.rows.name + ".json").read_text())
    else:
        rows = race.race(studies, settings, progress=lambda name, s: print(f"  {name}: {s:.1f} s", file=sys.stderr,
                                                                           flush=True))
    summary = race.summarise(rows)
    held_out = race.loso(summary)
    families = race.family_table(held_out, summary)
    paired = race.paired(held_out)
    points = race.front(summary)
    default = race.defaults(summary)
    wall = time.perf_counter() - start
    measured = measured or {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "machine": platform.node(), "cores": os.cpu_count(),
                            "load_average_1m_end": os.getloadavg()[0], "wall_seconds": wall}
    if args.rows is not None and not args.rows.exists():
        rows.write_parquet(args.rows)
        args.rows.with_name(args.rows.name + ".json").write_text(json.dumps(measured) + "\n")
    meta = {**measured,
            "settings": {"workers": settings.workers, "random_orders": settings.random_orders,
                         "fractions": list(settings.fractions), "rungs": list(settings.rungs),
                         "triage_rungs": [list(r) for r in settings.triage_rungs],
                         "reduction_factors": list(settings.reduction_factors), "pasha": [list(p) for p in race.PASHA_GRID],
                         "pruners": list(race.PRUNERS), "min_top5": race.MIN_TOP5, "min_best_kept": race.MIN_BEST_KEPT,
                         "bootstrap": race.BOOTSTRAP, "seed": race.SEED}}
    text = markdown(meta, families, paired, held_out, points, default, studies)
    print(text)
    print(f"race: {wall:.0f} s", file=sys.stderr)
    if args.write is None:
        print("not written: race.md, race.png, decision_race.json (pass --write, or --write DIR)")
        return
    json_dir, docs_dir = (RESULTS, DOCS) if args.write == RESULTS else (args.write, args.write)
    for d in (json_dir, docs_dir):
        d.mkdir(parents=True, exist_ok=True)
    results = {**meta, "studies": {name: {"runs": len(c.run_ids), "epochs": c.epochs} for name, c in studies.items()},
               "default": default, "families": families.to_dicts(), "paired": paired.to_dicts(),
               "held_out": held_out.to_dicts(), "front": points.to_dicts(),
               "summary": summary.to_dict(as_series=False)}  # columns: per study and setting, over orders
    (json_dir / "decision_race.json").write_text(json.dumps(rounded(results), separators=(",", ":")) + "\n")
    (docs_dir / "race.md").write_text(text)
    race.figure(points, families, docs_dir / "race.png")
    for path in (json_dir / "decision_race.json", docs_dir / "race.md", docs_dir / "race.png"):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
