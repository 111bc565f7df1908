"""Per-scope statistics of node properties, checked against numpy."""
import numpy as np
import polars as pl
import pytest

from pipeline_lib.graphs.properties import PROPERTIES
from pipeline_lib.graphs.summaries import STATISTICS, summarise


def node_frame(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    layer = np.array([0] + [1] * 4 + [2] * 6 + [3] * 3)  # relative depth 0, 1/3, 2/3, 1: bins 0, 1, 2, 3
    n = len(layer)
    frame = {"run_id": ["r"] * n, "epoch": [2] * n, "layer": layer, "relative_depth": layer / 3}
    frame |= {p: rng.gamma(2.0, size=n) for p in PROPERTIES}
    frame["betweenness"] = [None] * n  # skipped
    return pl.DataFrame(frame)


def numpy_statistics(x: np.ndarray) -> dict[str, float | None]:
    share = x / x.sum()
    entropy = -(share * np.log(share)).sum() / np.log(len(x)) if len(x) > 1 else None
    stats = {"mean": x.mean(), "std": x.std(), "min": x.min(), "max": x.max(), "entropy": entropy}
    stats |= {f"q{int(q * 100)}": np.quantile(x, q) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
    return stats


def test_statistics_per_scope_match_numpy():
    nodes = node_frame()
    summary = summarise(nodes)
    layer = nodes["layer"].to_numpy()
    scopes = {"graph": np.ones(len(layer), bool), "depth:0": layer == 0, "depth:1": layer == 1,
              "depth:2": layer == 2, "depth:3": layer == 3, **{f"layer:{i}": layer == i for i in range(4)}}
    assert set(summary["scope"]) == set(scopes)
    assert set(summary["statistic"]) == set(STATISTICS)
    assert "betweenness" not in set(summary["property"])  # a skipped property gives no rows
    assert summary.height == len(scopes) * (len(PROPERTIES) - 1) * len(STATISTICS)
    got = {(r["scope"], r["property"], r["statistic"]): r["value"] for r in summary.iter_rows(named=True)}
    for scope, mask in scopes.items():
        for prop in PROPERTIES[:-1]:
            for stat, expected in numpy_statistics(nodes[prop].to_numpy()[mask]).items():
                value = got[(scope, prop, stat)]
                if expected is None:
                    assert value is None, (scope, prop, stat)
                else:
                    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), (scope, prop, stat)


def test_entropy_is_one_for_even_values_and_null_for_all_zero():
    nodes = node_frame().with_columns(pl.lit(3.0).alias("pagerank"), pl.lit(0.0).alias("hub"))
    summary = summarise(nodes).filter(pl.col("statistic") == "entropy", pl.col("scope") == "graph")
    values = dict(zip(summary["property"], summary["value"]))
    assert values["pagerank"] == pytest.approx(1.0) and values["hub"] is None

