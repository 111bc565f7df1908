"""When a study cannot support conclusions: too few configurations, most runs at chance, or
outcomes too alike to rank. The flows log the reasons and the report prints them instead of
verdicts (its numbers stay, as a description of this study only)."""
from __future__ import annotations

import polars as pl

MIN_CONFIGURATIONS = 8     # fewer: each grouped fold and each bootstrap resample holds a handful
CHANCE_MARGIN = 0.05       # a run within 5 points of chance accuracy ended at chance
MAX_CHANCE_SHARE = 0.5     # more than half the runs at chance: there is little to rank
MIN_SPREAD = 0.01          # interquartile range of final accuracy below 1 point: nothing to rank


def degenerate_reasons(targets: pl.DataFrame, chance: float) -> list[str]:
    """Why conclusions are not possible (empty when they are). targets: config_id, final_acc."""
    reasons = []
    configs = targets["config_id"].n_unique()
    if configs < MIN_CONFIGURATIONS:
        reasons.append(f"only {configs} configurations (at least {MIN_CONFIGURATIONS} are needed)")
    at_chance = float((targets["final_acc"] <= chance + CHANCE_MARGIN).mean()) if targets.height else 1.0
    if at_chance > MAX_CHANCE_SHARE:
        reasons.append(f"{at_chance:.0%} of the runs ended within {CHANCE_MARGIN:.2f} of chance accuracy ({chance:.2f})")
    spread = targets["final_acc"].quantile(0.75) - targets["final_acc"].quantile(0.25) if targets.height else 0.0
    if spread < MIN_SPREAD:
        reasons.append(f"the final accuracies' interquartile range is {spread:.4f} (< {MIN_SPREAD})")
    return reasons
