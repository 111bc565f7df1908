import numpy as np
import polars as pl
import pytest
import torch
from scipy.stats import kurtosis, skew

from pipeline_lib.features import BASE_SETS, base_set_features, temporal_summary
from pipeline_lib.features.weights import snapshot_weight_stats
from pipeline_lib.snapshots import read_snapshot, write_snapshot
from warehouse.predict import epoch_metrics, invariant_graph_summaries, snapshot_paths, study_runs


def _inputs(small_study):
    wh, name = small_study.warehouse, small_study.study.name
    return {"runs": study_runs(wh, name), "epoch_metrics": epoch_metrics(wh, name),
            "graph_summaries": invariant_graph_summaries(wh, name, small_study.study.epochs),
            "snapshot_paths": snapshot_paths(wh, name)}


def _all_sets(k, inputs) -> pl.DataFrame:
    return pl.concat([base_set_features(fs, k, **inputs) for fs in BASE_SETS]).sort("run_id", "feature_set", "feature")


def _scramble_snapshot(path, directory, seed) -> str:
    """A copy of the snapshot with every tensor replaced by noise."""
    gen = torch.Generator().manual_seed(seed)
    state = {n: torch.randn(t.shape, generator=gen) * 5 for n, t in read_snapshot(path).items()}
    return str(write_snapshot(state, directory, f"scrambled{seed}", 0).path)


def _change_after(inputs, k, directory, include_k=False):
    """Every input with what happened after epoch k (or from epoch k, for the control) replaced by noise."""
    rng = np.random.default_rng(0)
    later = pl.col("epoch") >= k if include_k else pl.col("epoch") > k
    noise = lambda frame, cols: frame.with_columns(  # noqa: E731
        [pl.when(later).then(pl.Series(rng.uniform(0, 9, frame.height))).otherwise(pl.col(c)).alias(c) for c in cols])
    paths = inputs["snapshot_paths"]
    scrambled = [(_scramble_snapshot(p, directory, i) if (e >= k if include_k else e > k) else p)
                 for i, (e, p) in enumerate(paths.select("epoch", "path").iter_rows())]
    runs = inputs["runs"].with_columns(  # outcomes known only at the end, and a divergence after k
        pl.lit(0.5).alias("final_test_acc"),
        pl.when(pl.col("diverged_epoch").is_null()).then(pl.lit(k + 1)).otherwise(pl.col("diverged_epoch"))
        .alias("diverged_epoch"))
    return {"runs": runs,
            "epoch_metrics": noise(inputs["epoch_metrics"], ["train_loss", "train_acc", "test_loss", "test_acc"]),
            "graph_summaries": noise(inputs["graph_summaries"], ["value"]),
            "snapshot_paths": paths.with_columns(pl.Series("path", scrambled))}


@pytest.mark.parametrize("k", [1, 3])
def test_features_never_read_past_epoch_k(small_study, tmp_path, k):
    inputs = _inputs(small_study)
    before = _all_sets(k, inputs)
    assert set(before["feature_set"]) == set(BASE_SETS)
    assert before.filter(pl.col("feature_set") != "hparams")["value"].drop_nulls().len() > 0
    after = _all_sets(k, _change_after(inputs, k, tmp_path / "later"))
    assert after.equals(before)
    # control: the same change from epoch k on does change every observing set
    control = _all_sets(k, _change_after(inputs, k, tmp_path / "from_k", include_k=True))
    for fs in ("graph", "early_acc", "learning_curve", "weight_stats"):
        assert not control.filter(pl.col("feature_set") == fs).equals(before.filter(pl.col("feature_set") == fs)), fs


def test_temporal_summary_matches_numpy():
    rng = np.random.default_rng(1)
    values = rng.normal(size=6)
    series = pl.DataFrame({"run_id": "r", "series": "s", "epoch": list(range(6)), "value": values})
    got = dict(temporal_summary(series, 4).select("feature", "value").iter_rows())
    assert got.keys() == {*(f"s@e{j}" for j in range(5)), *(f"s@d{j}" for j in range(1, 5)), "s@slope", "s@logratio"}
    for j in range(5):
        assert got[f"s@e{j}"] == pytest.approx(values[j])
    for j in range(1, 5):
        assert got[f"s@d{j}"] == pytest.approx(values[j] - values[j - 1])
    assert got["s@slope"] == pytest.approx(np.polyfit(np.arange(5), values[:5], 1)[0])
    expected_ratio = np.log(values[4] / values[0]) if values[0] > 0 and values[4] > 0 else None
    assert got["s@logratio"] == (pytest.approx(expected_ratio) if expected_ratio is not None else None)
    # a missing epoch (after divergence) leaves its value, its differences and nothing else out
    gappy = series.filter(pl.col("epoch") != 3).with_columns(pl.when(pl.col("epoch") == 1).then(np.inf)
                                                               .otherwise(pl.col("value")).alias("value"))
    got = dict(temporal_summary(gappy, 4).select("feature", "value").iter_rows())
    assert "s@e3" not in got and "s@d3" not in got and "s@d4" not in got
    assert got["s@e1"] is None and got["s@d1"] is None
    kept = [0, 2, 4]
    assert got["s@slope"] == pytest.approx(np.polyfit(kept, values[kept], 1)[0])


def test_weight_stats_match_numpy(small_study):
    path = small_study.warehouse.query("SELECT path FROM snapshots WHERE epoch = 2 LIMIT 1")["path"][0]
    state = read_snapshot(path)
    kernels = [n for n, t in state.items() if n.endswith(".weight") and t.ndim >= 2]
    got = dict(snapshot_weight_stats(path).iter_rows())
    for i, name in enumerate(kernels):
        b = int((i + 0.5) * 4 / len(kernels))
        layer_names = [n for j, n in enumerate(kernels) if int((j + 0.5) * 4 / len(kernels)) == b]
        for kind, suffix in (("weight", ".weight"), ("bias", ".bias")):
            w = np.concatenate([state[n.removesuffix(".weight") + suffix].numpy().ravel() for n in layer_names]).astype(np.float64)
            assert got[f"order:{b}/{kind}/mean"] == pytest.approx(w.mean(), rel=1e-6, abs=1e-9)
            assert got[f"order:{b}/{kind}/std"] == pytest.approx(w.std(ddof=1), rel=1e-6)
            assert got[f"order:{b}/{kind}/q90"] == pytest.approx(np.quantile(w, 0.9), rel=1e-6)
            assert got[f"order:{b}/{kind}/max"] == pytest.approx(w.max())
            assert got[f"order:{b}/{kind}/mean_abs"] == pytest.approx(np.abs(w).mean(), rel=1e-6)
            assert got[f"order:{b}/{kind}/skew"] == pytest.approx(skew(w), rel=1e-4)
            assert got[f"order:{b}/{kind}/kurtosis"] == pytest.approx(kurtosis(w), rel=1e-4)


def test_divergence_flag_and_hparams(small_study):
    inputs = _inputs(small_study)
    runs = inputs["runs"]
    diverged = set(runs.filter(pl.col("status") == "diverged")["run_id"])
    assert diverged and (runs.filter(pl.col("status") == "diverged")["diverged_epoch"] == 1).all()
    early = base_set_features("early_acc", 1, **inputs)
    flags = dict(early.filter(pl.col("feature") == "diverged_by_k").select("run_id", "value").iter_rows())
    assert {r for r, v in flags.items() if v == 1.0} == diverged
    acc = dict(early.filter(pl.col("feature") == "test_acc@k").select("run_id", "value").iter_rows())
    assert all(acc[r] is None for r in diverged)
    metrics = inputs["epoch_metrics"].filter(pl.col("epoch") == 1)
    for run_id, value in metrics.select("run_id", "test_acc").iter_rows():
        assert acc[run_id] == value
    hp = base_set_features("hparams", 1, **inputs).pivot(on="feature", index="run_id", values="value")
    joined = hp.join(runs, on="run_id")
    assert np.allclose(joined["log10_lr"], np.log10(joined["lr"]))
    assert np.allclose(joined["log2_width"], np.log2(joined["width"]))
    assert (joined["optimizer=sgd"] == 1.0).all() and (joined["optimizer=adam"] == 0.0).all()


def test_a_staged_batch_another_process_loaded_meanwhile_is_skipped(small_study):
    """The same study run twice at once: one process loads and removes a staged batch (graphs file, then
    summaries) while the other is about to read it. The other skips it instead of failing with
    FileNotFoundError, and still loads its own batches; the rows are the same either way."""
    from pipeline_lib.layout import DataLayout
    from warehouse.graphs import load_staged_graphs, stage_graph_batch

    wh, study = small_study.warehouse, small_study.study
    graphs = wh.query("SELECT * EXCLUDE (fingerprint) FROM graphs ORDER BY run_id, epoch LIMIT 4")
    keys = [f"{r}/{e}" for r, e in graphs.select("run_id", "epoch").rows()]
    summaries = wh.query("SELECT * FROM graph_summaries WHERE run_id || '/' || CAST(epoch AS VARCHAR) "
                         "IN (SELECT unnest(?))", [keys])
    before = wh.query("SELECT * FROM graph_summaries ORDER BY ALL")
    staged = DataLayout(wh.data_dir).staged_graphs
    stage_graph_batch(wh.data_dir, graphs, summaries, study.graphs)
    taken = next(staged.glob("*.graphs.parquet"))
    taken.with_name(taken.name.replace(".graphs.", ".summaries.")).unlink()  # the other process is mid-removal
    first = graphs.head(2)
    stage_graph_batch(wh.data_dir, first, summaries.join(first.select("run_id", "epoch"), on=["run_id", "epoch"]),
                      study.graphs)
    assert load_staged_graphs(wh) == 2
    assert wh.query("SELECT * FROM graph_summaries ORDER BY ALL").equals(before)
