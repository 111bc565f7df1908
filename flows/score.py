"""Scoring flow: rank the runs of a study at epoch k with a registered predictor, into `scores`.

    .venv/bin/python -m flows.score --spec SPEC --warehouse FILE --predictor <id|best> --at-epoch K [--confidence 0.9]

Scores every run of the spec's study that has reached epoch K (finished or still training) with the
predictor chosen by id, by a study name (that study's best), or with `best`: the regression predictor fitted at k = K on this dataset and
these architectures with the highest pooled out-of-fold Kendall tau, from any study. Each score has
a split-conformal interval of the final accuracy and, when a classification twin is registered, a
calibrated P(good). Refuses (exit 2) when the needed features cannot be computed or a run's dataset
or architecture was not in the predictor's training data. Logic: warehouse/scores.py.
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow, get_run_logger

from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.spec import load_study
from warehouse.scores import plan_scoring, score_study

from ._runtime import open_warehouse


@flow(name="score", log_prints=True)
def score(spec: str, warehouse: str | None = None, predictor: str = "best", at_epoch: int = 2,
          confidence: float = 0.9) -> dict:
    """Score the study's runs that reached epoch `at_epoch`; returns the predictor and how many were scored."""
    logger = get_run_logger()
    study = load_study(spec)
    wh = open_warehouse(warehouse, study.execution, study.name)
    scores, plan = score_study(wh, study.name, predictor, at_epoch, confidence)
    chosen = plan.predictor
    logger.info("scored %d runs of %s at epoch %d with predictor %s (%s, %s, fitted on study %s)%s", scores.height,
                study.name, at_epoch, chosen["id"], chosen["feature_set"], chosen["predictor"], chosen["study"],
                f"; {plan.waiting} runs have not reached epoch {at_epoch} yet" if plan.waiting else "")
    return {"predictor": chosen["id"], "scored": scores.height, "waiting": plan.waiting}


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    study = load_study(args.spec)
    check_warehouse("score", args, study.name)
    wh = open_warehouse(args.warehouse, study.execution, study.name)
    plan_scoring(wh, study.name, args.predictor, args.at_epoch)  # refusals before Prefect starts
    score(args.spec, args.warehouse, args.predictor, args.at_epoch, args.confidence)


if __name__ == "__main__":
    run_cli(main, user_errors=(ScoringError, RegistryError))
