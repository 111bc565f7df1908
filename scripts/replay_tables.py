"""Print the cross-study replay table of docs/results/replay.md from the `replays` rows of finished
replays (flows.replay; scripts/replay_corpus.sh for the corpus), one warehouse per study or several.

    .venv/bin/python scripts/replay_tables.py WAREHOUSE.duckdb [...]

Per study: Kendall tau between accuracy at epoch 1 and the final outcome (below 0.5, curves cross),
the best i-Epoch setting (the reference), and per policy kind and feature set the least share of
i-Epoch's epochs any of its settings needs to reach i-Epoch's mean regret, with the share of orders
that setting keeps the best run in (`replay.study_verdict`; of Optuna's pruners the one needing the
fewest). Reads only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.decisions.replay import study_verdict, summarise  # noqa: E402
from pipeline_lib.prediction.targets import run_targets  # noqa: E402
from warehouse.db import Warehouse  # noqa: E402
from warehouse.predict import epoch_metrics, study_runs  # noqa: E402

FIXED = ["study", "runs", "tau(acc1, final)", "best i-Epoch", "i-Epoch epochs", "i-Epoch best kept"]
TAILS = ["meets goal", "stop rule within alpha", "stop rule miss rate / alpha"]


def crossing(wh: Warehouse, study: str) -> tuple[int, float]:
    """Runs, and Kendall tau of accuracy at epoch 1 against the final outcome (diverged: chance)."""
    targets = run_targets(study_runs(wh, study))
    at_1 = epoch_metrics(wh, study).filter(pl.col("epoch") == 1).select("run_id", "test_acc")
    joined = targets.join(at_1, on="run_id", how="left").with_columns(pl.col("test_acc").fill_null(0.1))
    return targets.height, float(kendalltau(joined["test_acc"], joined["final_acc"]).statistic)


def cell(value) -> str:
    """A verdict's value: (share of i-Epoch's epochs, best-kept rate), (count, of), a float or text."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return f"{value[0]}/{value[1]}" if isinstance(value[0], int) else f"{value[0]:.2f} ({value[1]:.0%})"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouses", nargs="+")
    args = parser.parse_args()
    rows = []
    for path in args.warehouses:
        wh = Warehouse(path)
        replays = wh.query("SELECT * FROM replays")
        for (study,), group in replays.group_by("study", maintain_order=True):
            runs, tau = crossing(wh, study)
            verdict = study_verdict(summarise(group.drop("study", "replayed_at")))
            pruners = {key: value for key, value in verdict.items() if key.endswith("Pruner")}
            best = min(pruners, key=lambda key: pruners[key][0]) if pruners else None
            verdict = {key: value for key, value in verdict.items() if key not in pruners}
            rows.append({"study": study.removeprefix("corpus-"), "runs": runs, "tau(acc1, final)": tau, **verdict,
                         "Optuna, best pruner": f"{cell(pruners[best])} {best.removesuffix('Pruner')}" if best else ""})
    kinds = sorted({key for row in rows for key in row} - set(FIXED) - set(TAILS) - {"i-Epoch regret"})
    columns = FIXED + kinds + TAILS
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in sorted(rows, key=lambda r: r["study"]):
        miss = row.get("stop rule miss rate / alpha")
        row["stop rule miss rate / alpha"] = f"{miss[0]:.1f}-{miss[1]:.1f}" if miss else ""
        print("| " + " | ".join(cell(row.get(c)) for c in columns) + " |")


if __name__ == "__main__":
    main()
