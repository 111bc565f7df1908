"""The one keep count: how many of n ranked runs a keep rule keeps. Triage, the pruner, the scheduler,
the replay and the spec's check of what a triage lets finish all count with it. No imports of the
project, so the spec can use it."""
from __future__ import annotations

import math


def kept_count(keep: float | int, n: int) -> int:
    """The best fraction rounded up (rounded first, so that 1/3 x 9 keeps 3, not 4), or the top N."""
    return math.ceil(round(keep * n, 9)) if isinstance(keep, float) else min(keep, n)
