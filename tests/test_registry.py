"""Predictor registry: fitted on all finished runs, saved with skops, refused when changed."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from pipeline_lib.decisions import registry
from pipeline_lib.fingerprints import predictor_pins
from pipeline_lib.prediction.evaluation import feature_matrix
from pipeline_lib.prediction.targets import run_targets
from pipeline_lib.spec import Study
from tests.conftest import TINY_STUDY
from warehouse.db import Warehouse, upsert
from stages.register import register_study
from warehouse.registry import registered, registered_source

N_CONFIGS, SEEDS = 6, 2


@pytest.fixture(scope="module")
def study() -> Study:
    return Study.model_validate({**TINY_STUDY, "predict": {"k_epochs": [1], "n_folds": 2}})


@pytest.fixture()
def wh(tmp_path, study) -> Warehouse:
    """12 finished runs (6 configurations x 2 seeds) with early_acc and hparams features at k=1
    (nothing else, so only those two feature sets can be registered), and one evaluation row."""
    rng = np.random.default_rng(0)
    runs, features = [], []
    for c in range(N_CONFIGS):
        for seed in range(SEEDS):
            run_id, acc1 = f"r{c}s{seed}", 0.3 + 0.1 * c + 0.01 * seed
            runs.append({"study": study.name, "run_id": run_id, "config_id": f"c{c}", "architecture": "lenet",
                         "width": 1.0, "depth": 1, "dataset": "digits", "lr": 0.01 * (c + 1), "dropout": 0.0,
                         "weight_decay": 0.0, "optimizer": "sgd", "batch_size": 64, "seed": seed, "epochs": 3,
                         "status": "completed", "epochs_done": 3, "final_test_acc": acc1 + 0.3 + rng.normal(0, 0.01),
                         "updated_at": datetime(2026, 1, 1)})
            features += [(run_id, "early_acc", "test_acc@k", acc1), (run_id, "early_acc", "diverged_by_k", 0.0),
                         (run_id, "hparams", "log10_lr", float(np.log10(0.01 * (c + 1))))]
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.writer() as con:
        upsert(con, "runs", pl.DataFrame(runs))
        upsert(con, "features", pl.DataFrame(features, schema=["run_id", "feature_set", "feature", "value"], orient="row")
               .with_columns(pl.lit(study.name).alias("study"), pl.lit(1).alias("k")))
        upsert(con, "evaluations", pl.DataFrame([
            {"study": study.name, "task": "regression", "predictor": "linear", "feature_set": "early_acc", "k": 1,
             "split": s, "metric": "kendall_tau", "value": v, "low": v - 0.1, "high": v + 0.05, "mean": m, "std": sd,
             "n": 12, "folds": f}
            for s, v, m, sd, f in (("cv", 0.85, 0.8, 0.1, 2), ("width_transfer", 0.5, 0.5, None, 1))]))
    return wh


def test_registers_every_covered_unit_and_reloads_what_was_fitted(wh, study):
    rows = register_study(wh, study)
    assert sorted(set(rows["feature_set"])) == ["early_acc", "hparams"]  # graph sets etc. lack features
    assert rows.height == 2 * 2 * 2  # feature sets x tasks x predictors
    table = registered(wh, study.name)
    assert table.height == 8 and set(table["id"]) == set(rows["id"])
    row = table.filter((pl.col("feature_set") == "early_acc") & (pl.col("task") == "regression")
                       & (pl.col("predictor") == "linear")).row(0, named=True)
    assert row["runs_used"] == 12 and row["architectures"] == ["lenet"] and row["widths"] == [1.0]
    assert row["features"] == ["diverged_by_k", "test_acc@k"]
    assert row["file_digest"] == hashlib.sha256(open(row["path"], "rb").read()).hexdigest()
    assert json.loads(row["metrics_json"]) == {"kendall_tau": {"value": 0.85, "low": 0.75, "high": 0.9,
                                                               "fold_mean": 0.8, "fold_std": 0.1, "folds": 2}}

    loaded = registered_source(wh, row["id"])
    model, loaded_row = loaded.model, loaded.row
    assert loaded_row["id"] == row["id"]
    targets = run_targets(wh.query("SELECT * FROM runs"))
    features = wh.query("SELECT run_id, feature, value FROM features WHERE feature_set = 'early_acc'")
    X, columns = feature_matrix(features, targets["run_id"].to_list())
    assert columns == row["features"]
    fresh = registry.fit_on_all("regression", "linear", X, targets)  # the same fit, made here
    np.testing.assert_allclose(model.predict(X), fresh.predict(X))
    # fitted on every run, it follows the early accuracy that the final accuracy was built from
    assert np.corrcoef(model.predict(X), targets["final_acc"])[0, 1] > 0.5

    again = register_study(wh, study)  # re-registering replaces, same ids
    assert registered(wh, study.name).height == 8 and set(again["id"]) == set(rows["id"])


def test_refuses_a_changed_file_and_changed_code(wh, study):
    rows = register_study(wh, study)
    row, other = rows.row(0, named=True), rows.row(1, named=True)
    with open(row["path"], "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(registry.RegistryError, match="sha256 .* was registered: the file was changed"):
        registered_source(wh, row["id"]).model
    registered_source(wh, other["id"]).model  # untouched: loads
    pins = json.loads(other["code_digest"])
    assert set(pins) == {"code", "scikit-learn", "skops", "numpy", "scipy"}
    with wh.writer() as con:  # fitted under another scikit-learn
        con.execute("UPDATE predictors SET code_digest = ? WHERE id = ?",
                    [json.dumps({**pins, "scikit-learn": "0.0"}), other["id"]])
    with pytest.raises(registry.RegistryError, match=r"other model code or libraries \(scikit-learn 0.0 -> "):
        registered_source(wh, other["id"]).model
    with wh.writer() as con:  # registered before the pins: a digest of the whole prediction package
        con.execute("UPDATE predictors SET code_digest = 'feedbeef' WHERE id = ?", [other["id"]])
    with pytest.raises(registry.RegistryError, match="pins feedbeef... .from before model code and library"):
        registered_source(wh, other["id"]).model
    with pytest.raises(registry.RegistryError, match="no registered predictor 'nope'"):
        registered_source(wh, "nope")


def _untrusted(x):
    return x


def test_refuses_untrusted_types_even_with_the_right_digest(tmp_path):
    path = tmp_path / "m.skops"
    digest = registry.save(Pipeline([("f", FunctionTransformer(_untrusted))]), path)
    assert "tests.test_registry._untrusted" in sio.get_untrusted_types(file=path)
    with pytest.raises(registry.RegistryError, match="not trusted: tests.test_registry._untrusted"):
        registry.load(path, digest, predictor_pins())


def test_the_register_stage_refits_a_missing_or_changed_file_that_the_advice_sends_it_to(tmp_path):
    """'re-register' works: the stage, up to date by its fingerprint, still fits again a predictor whose
    file was deleted or changed, and the file then loads."""
    import yaml

    from stages import register
    from stages.local import local_context
    from tests.conftest import registered_warehouse

    wh = registered_warehouse(tmp_path / "w.duckdb", 1)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({**TINY_STUDY, "predict": {"k_epochs": [1], "n_folds": 3}}))
    with local_context(spec, wh.path) as ctx:
        register.run(ctx)
        assert register.run(ctx) == {"up_to_date": True}
        row = wh.query("SELECT id, path FROM predictors ORDER BY id LIMIT 1").row(0, named=True)
        Path(row["path"]).unlink()
        with pytest.raises(registry.RegistryError, match="flows.register --spec SPEC"):
            registered_source(wh, row["id"]).model
        assert "predictors" in register.run(ctx)
    registered_source(wh, wh.query("SELECT id FROM predictors WHERE path = ?", [row["path"]])["id"][0]).model


def test_a_damaged_shipped_corpus_file_names_itself_and_the_remedy(tmp_path, monkeypatch):
    import shutil

    from pipeline_lib.corpus import CORPUS_ENV, corpus_dir
    from pipeline_lib.decisions import corpus
    from pipeline_lib.decisions.scoring import ScoringError

    copy = tmp_path / "corpus"
    shutil.copytree(corpus_dir(), copy)
    monkeypatch.setenv(CORPUS_ENV, str(copy))
    row = corpus.predictor_row(1)
    Path(row["path"]).write_bytes(b"not a model")
    with pytest.raises(registry.RegistryError, match="ships with the project: restore it .* or rebuild it"):
        corpus.load_model(row)
    (copy / "predictor" / "card.json").write_text("{ damaged")
    with pytest.raises(ScoringError, match="card .*card.json is damaged"):
        corpus.predictor_row(1)
