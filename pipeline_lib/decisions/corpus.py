"""The corpus predictor: fitted on every run of the corpus (pipeline_lib/corpus.py), shipped under
corpus_data/predictor/, so that a study with no predictor of its own (no finished runs yet, no earlier
study) can be scored and triaged.

Per k, the (feature set, model) of highest mean leave-one-study-out Kendall tau is fitted on the
whole corpus: a regression on the within-study percentile of final accuracy and its classification
twin (good = above the study's median). Saved with skops (`registry.save`); the card
(corpus_data/predictor/card.json, and README.md written with skops.card) holds the training studies,
the LOSO metrics, the columns in order, the file and code digests, the LOSO residuals (conformal
intervals) and the twin's calibration (P(good)).

Input contract: the runs of ONE study scored together, at least MIN_RUNS of them, each with the
base feature sets of the predictor at epoch k computed by the code the card records for each
(`feature_codes`: a prediction reading a set whose code changed since is refused); every
column is normalized within those runs (mid-rank percentile) as in training. The prediction is a
within-study percentile in (0, 1), not an accuracy: it ranks the runs of the study.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.pipeline import Pipeline

from ..corpus import (HEADLINE, Corpus, check_reads, corpus_designs, corpus_dir, corpus_targets, feature_codes,
                      regression_view, within_study_ranks)
from ..fingerprints import predictor_pins
from ..vocabulary import Split, Task
from . import registry
from .scoring import ScoringError
from .uncertainty import fit_calibration

CORPUS = "corpus"  # the name that selects it: flows.score --predictor corpus, triage: {predictor: corpus}
MIN_RUNS = 8  # below this, within-study percentiles of the features are too coarse to rank by


def predictor_dir() -> Path:
    return corpus_dir() / "predictor"


def choose_units(evaluations: pl.DataFrame, predictions: pl.DataFrame, runs: pl.DataFrame,
                 curves: pl.DataFrame) -> pl.DataFrame:
    """Per k, the regression (feature set, predictor) of highest mean tau over the held-out studies
    among those that pass the accuracy gate there (never trail test accuracy at k by more than
    GATE_TOLERANCE on any held-out study); when none passes, the highest mean tau (its card then says
    the gate fails, and `predictor: auto` uses accuracy). The gate is checked on the same held-out
    predictions the choice is made on: optimistic, so the held-out studies (`stages.corpus.heldout`)
    test it again. Columns k, feature_set, predictor, mean_loso_tau, passes_gate."""
    means = (evaluations.filter((pl.col("task") == Task.REGRESSION) & (pl.col("metric") == HEADLINE[Task.REGRESSION])
                                & pl.col("split").str.starts_with(Split.LOSO_PREFIX))
             .group_by("k", "feature_set", "predictor").agg(pl.col("value").mean().alias("mean_loso_tau")))
    regression = (predictions.filter((pl.col("task") == Task.REGRESSION) & pl.col("split").str.starts_with(Split.LOSO_PREFIX))
                  .join(runs.select("run_id", "study"), on="run_id"))
    passes = []
    for (k, feature_set, predictor), unit in regression.group_by("k", "feature_set", "predictor"):
        gate = accuracy_gate(accuracy_taus(unit, curves, k))
        passes.append({"k": k, "feature_set": feature_set, "predictor": predictor, "passes_gate": gate["holds"]})
    return (means.join(pl.DataFrame(passes), on=["k", "feature_set", "predictor"])
            .sort("passes_gate", "mean_loso_tau", "feature_set", "predictor", descending=[True, True, False, False])
            .group_by("k", maintain_order=True).first().sort("k"))


def _loso_metrics(evaluations: pl.DataFrame, feature_set: str, k: int, predictor: str) -> dict:
    rows = evaluations.filter((pl.col("feature_set") == feature_set) & (pl.col("k") == k)
                              & (pl.col("predictor") == predictor)
                              & pl.col("metric").is_in(list(HEADLINE.values())))
    return {f"{r['split']}|{r['metric']}": [r["value"], r["low"], r["high"]] for r in rows.iter_rows(named=True)}


GATE_TOLERANCE = 0.02  # what the corpus predictor may trail test accuracy at k by, on any held-out study
TOP_KEEPS = (1 / 4, 1 / 8)  # keep fractions of the top-weighted measure (share of the true top 5 kept)


def accuracy_taus(predictions: pl.DataFrame, curves: pl.DataFrame, k: int) -> pl.DataFrame:
    """Per study of `predictions` (run_id, study, y_true, y_pred: one unit's held-out predictions), its
    predictions against the test accuracy at epoch k (the i-Epoch rule; a run with no accuracy at k,
    diverged before it, ranks last), both against the true outcome: Kendall tau (`tau`,
    `accuracy_tau`) and the share of the true top 5 kept when keeping 1/4 and 1/8 (`top5@4`,
    `accuracy_top5@4`, `top5@8`, `accuracy_top5@8`)."""
    from scipy.stats import kendalltau

    from ..prediction.metrics import top_kept

    at_k = curves.filter(pl.col("epoch") == k).select("run_id", pl.col("test_acc").alias("acc"))
    rows = []
    for (study,), group in predictions.join(at_k, on="run_id", how="left").sort("run_id").group_by(
            "study", maintain_order=True):
        accuracy = group["acc"].fill_null(0.0).fill_nan(0.0).to_numpy()
        predicted, truth = group["y_pred"].to_numpy(), group["y_true"].to_numpy()
        row = {"study": study, "tau": float(kendalltau(predicted, truth).statistic),
               "accuracy_tau": float(kendalltau(accuracy, truth).statistic)}
        for keep in TOP_KEEPS:
            row[f"top5@{round(1 / keep)}"] = top_kept(predicted, truth, keep)
            row[f"accuracy_top5@{round(1 / keep)}"] = top_kept(accuracy, truth, keep)
        rows.append(row)
    return pl.DataFrame(rows).sort("study")


def accuracy_gate(taus: pl.DataFrame, tolerance: float = GATE_TOLERANCE) -> dict:
    """Whether the predictor is never worse than test accuracy at k (by more than `tolerance`), by tau
    and by the top-5 share at each keep fraction, on every held-out study of `taus`
    (`accuracy_taus`): `predictor: auto` uses it only where this holds."""
    measures = [m for m in ("tau", *(f"top5@{round(1 / keep)}" for keep in TOP_KEEPS)) if m in taus.columns]
    worse = taus.filter(pl.any_horizontal([pl.col(m) < pl.col(f"accuracy_{m}") - tolerance for m in measures]))
    return {"tolerance": tolerance, "measures": measures, "holds": worse.is_empty() and not taus.is_empty(),
            "worse_on": worse["study"].to_list(),
            "studies": {r["study"]: {m: [r[m], r[f"accuracy_{m}"]] for m in measures} for r in taus.iter_rows(named=True)}}


def fit_corpus_predictors(designs: dict, targets: pl.DataFrame, runs: pl.DataFrame, curves: pl.DataFrame,
                          evaluations: pl.DataFrame, predictions: pl.DataFrame, studies: list[dict],
                          directory: Path | None = None) -> dict:
    """Fit, save and describe the chosen predictor and its twin at every k; returns the card."""
    directory = directory or predictor_dir()
    directory.mkdir(parents=True, exist_ok=True)
    view = regression_view(targets)
    card = {"studies": studies, "feature_codes": feature_codes(), "code_digest": predictor_pins(),
            "datasets": sorted(runs["dataset"].unique().to_list()),
            "architectures": sorted(runs["architecture"].unique().to_list()), "predictors": {}}
    for k, feature_set, predictor, mean_tau, _ in choose_units(evaluations, predictions, runs, curves).iter_rows():
        X, columns = designs[(feature_set, k)]
        unit = predictions.filter((pl.col("feature_set") == feature_set) & (pl.col("k") == k)
                                  & (pl.col("predictor") == predictor) & pl.col("split").str.starts_with(Split.LOSO_PREFIX))
        regression, classification = (unit.filter(pl.col("task") == t) for t in Task)
        entry = {"k": k, "feature_set": feature_set, "predictor": predictor, "mean_loso_tau": mean_tau,
                 "features": columns, "loso": _loso_metrics(evaluations, feature_set, k, predictor),
                 "oof_residuals": (regression["y_true"] - regression["y_pred"]).to_list(),
                 "calibration": fit_calibration(classification["score"].to_numpy(), classification["y_true"].to_numpy()),
                 "accuracy_gate": accuracy_gate(accuracy_taus(
                     regression.join(runs.select("run_id", "study"), on="run_id"), curves, k))}
        for task in Task:
            path = directory / f"k{k}-{task}.skops"
            entry[f"{task}_file"] = path.name
            entry[f"{task}_digest"] = registry.save(registry.fit_on_all(task, predictor, X, view), path)
        card["predictors"][str(k)] = entry
    (directory / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def read_card(directory: Path | None = None) -> dict:
    directory = directory or predictor_dir()
    path = directory / "card.json"
    if not path.is_file():
        raise ScoringError(f"no corpus predictor under {directory}; build it with make corpus "
                           "(python -m flows.corpus)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ScoringError(f"the corpus predictor's card {path} is damaged ({e}); restore it (git checkout -- "
                           f"{directory}) or rebuild it (make corpus)") from None


def predictor_row(k: int, directory: Path | None = None) -> dict:
    """The corpus predictor at k as a registry row (the keys scoring and triage read); ScoringError
    if none was fitted at k, CorpusStale if it reads a base set whose code changed since its fit."""
    directory = directory or predictor_dir()
    card = read_card(directory)
    entry = card["predictors"].get(str(k))
    if entry is None:
        raise ScoringError(f"the corpus predictor is fitted at k in {sorted(map(int, card['predictors']))}, not at "
                           f"k = {k}; score at one of those epochs")
    check_reads(card.get("feature_codes", {}), entry["feature_set"])
    return {"id": f"{CORPUS}-k{k}", "study": CORPUS, "datasets": card["datasets"],
            "architectures": card["architectures"], "task": Task.REGRESSION.value, "code_digest": card["code_digest"],
            "path": str(directory / entry["regression_file"]), "file_digest": entry["regression_digest"],
            "twin_path": str(directory / entry["classification_file"]),
            "twin_digest": entry["classification_digest"], **{key: entry[key] for key in (
                "k", "feature_set", "predictor", "features", "oof_residuals", "calibration")},
            "accuracy_gate": entry.get("accuracy_gate")}


def check_runs(runs: pl.DataFrame, row: dict) -> None:
    """Refuse runs of a dataset or architecture outside the corpus (the least number of runs scored
    together, MIN_RUNS, is its source's `min_cohort`: `sources.CorpusSource`)."""
    for column, seen in (("dataset", row["datasets"]), ("architecture", row["architectures"])):
        if unseen := sorted(set(runs[column]) - set(seen)):
            raise ScoringError(f"runs have {column} {unseen}, but the corpus holds {column} {seen} only; "
                               "choose a predictor registered on such runs")


def _load_shipped(path: str, digest: str, pins: str) -> Pipeline:
    """A shipped corpus model; its failures name the remedy for a shipped file (not re-registering)."""
    try:
        return registry.load(path, digest, pins)
    except registry.RegistryError as e:
        raise registry.RegistryError(f"the shipped corpus predictor cannot be loaded: {str(e).split('; ')[0]}. It "
                                     f"ships with the project: restore it (git checkout -- {Path(path).parent}) or "
                                     "rebuild it (make corpus)") from None


def load_model(row: dict) -> Pipeline:
    return _load_shipped(row["path"], row["file_digest"], row["code_digest"])


def load_twin(row: dict) -> Pipeline:
    """The classification twin (the row's calibration turns its scores into P(good))."""
    return _load_shipped(row["twin_path"], row["twin_digest"], row["code_digest"])


def normalize(X: np.ndarray) -> np.ndarray:
    """The runs scored together are one study: each column as mid-rank percentiles among them."""
    return within_study_ranks(X, np.zeros(len(X)))


def fit_without(corpus: Corpus, study: str, k: int, feature_set: str, predictor: str = "linear"
                ) -> tuple[Pipeline, list[str], str] | None:
    """The corpus' regression predictor of within-study percentile at k, fitted on every corpus study
    but `study` (a transfer predictor that never saw it), with its columns and a description; None
    when the corpus has no such design. Its input contract is the corpus predictor's (`normalize`)."""
    targets = corpus_targets(corpus.runs.filter(pl.col("study") != study))
    design = corpus_designs(corpus, targets, [k], [feature_set]).get((feature_set, k))
    if design is None:
        return None
    X, columns = design
    model = registry.fit_on_all(Task.REGRESSION, predictor, X, regression_view(targets))
    studies = targets["study"].n_unique()
    return model, columns, f"corpus without {study} ({predictor}, {studies} studies, {targets.height} runs)"


def write_model_card(card: dict, directory: Path | None = None) -> Path:
    """corpus_data/predictor/README.md, written with skops.card from the card: what it was trained on,
    how well it ranks held-out studies, and what it expects."""
    from skops.card import Card

    directory = directory or predictor_dir()

    studies = "\n".join(f"- {s['study']}: {s['runs']} runs, {s['configurations']} configurations"
                        for s in card["studies"])
    lines = ["| k | feature set | model | mean LOSO tau | pooled LOSO tau [95% CI] | pooled LOSO balanced accuracy [95% CI] |",
             "|---|---|---|---|---|---|"]
    for k, entry in sorted(card["predictors"].items(), key=lambda item: int(item[0])):
        tau = entry["loso"].get(f"{Split.LOSO}|kendall_tau", [float("nan")] * 3)
        bacc = entry["loso"].get(f"{Split.LOSO}|balanced_accuracy", [float("nan")] * 3)
        lines.append(f"| {k} | {entry['feature_set']} | {entry['predictor']} | {entry['mean_loso_tau']:.3f} | "
                     f"{tau[0]:.3f} [{tau[1]:.3f}, {tau[2]:.3f}] | {bacc[0]:.3f} [{bacc[1]:.3f}, {bacc[2]:.3f}] |")
    files = "\n".join(f"- k = {k}: `{e['regression_file']}` (sha256 {e['regression_digest'][:12]}...), "
                      f"`{e['classification_file']}` (sha256 {e['classification_digest'][:12]}...)"
                      for k, e in sorted(card["predictors"].items(), key=lambda item: int(item[0])))
    model_card = Card(None, template=None, model_diagram=False)
    model_card.add(**{
        "Model description": (
            "Ranks the runs of a study by their predicted final accuracy from their first k epochs, fitted on "
            "every run of the corpus (pipeline_lib/corpus_data/*.parquet; docs/results/corpus.md). Per k, the (feature set, model) "
            "of highest mean leave-one-study-out Kendall tau among those never worse than test accuracy at k on a "
            "left-out study (else the best, its accuracy gate failing), as a regression on the within-study percentile of "
            "final accuracy and a classifier of good runs (above the study's median). Use: "
            "`flows.score --predictor corpus --at-epoch K`, or `triage: {predictor: corpus, ...}` in a spec."),
        "Input contract": (
            f"The runs of one study scored together (at least {MIN_RUNS}), datasets {card['datasets']}, "
            f"architectures {card['architectures']}, each with the predictor's base feature sets at epoch k "
            "computed by the code the card records for each (`feature_codes`; refused otherwise). Every column is "
            "normalized within the scored runs (mid-rank percentile), as in training. The prediction is a "
            "within-study percentile in (0, 1), not an accuracy; intervals are split-conformal from the "
            "leave-one-study-out residuals, P(good) is the classifier's score calibrated on its LOSO scores."),
        "Against test accuracy at k": "\n".join(
            f"- k = {k}: accuracy gate {'holds' if e['accuracy_gate']['holds'] else 'fails'}"
            + (f" (worse on {', '.join(e['accuracy_gate']['worse_on'])})" if e["accuracy_gate"]["worse_on"] else "")
            for k, e in sorted(card["predictors"].items(), key=lambda item: int(item[0])))
            + "\n\n`predictor: auto` uses this predictor at k only where its gate holds.",
        "Training studies": studies,
        "Leave-one-study-out metrics": "\n".join(lines),
        "Files": files + f"\n\nFitted under pins {card['code_digest']}; loading checks the files' "
                         "digests and these pins (pipeline_lib/decisions/registry.py).",
    })
    path = directory / "README.md"
    model_card.save(path)
    return path
