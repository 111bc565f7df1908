"""Scoring flow: rank the runs of a study at epoch k with a registered predictor, into `scores`.

    .venv/bin/python -m flows.score --spec SPEC --warehouse FILE --predictor <id|best|corpus> --at-epoch K [--confidence 0.9]

Scores every run of the spec's study that has reached epoch K (finished or still training) with the
predictor chosen by id, by a study name (that study's best), or with `best`: the regression predictor fitted at k = K on this dataset and
these architectures with the highest pooled out-of-fold Kendall tau, from any study. Each score has
a split-conformal interval of the final accuracy and, when a classification twin is registered, a
calibrated P(good). Refuses (exit 2) when the needed features cannot be computed, a run's dataset
or architecture was not in the predictor's training data, or the predictor's study took its
training metrics another way (train_metrics); every other difference between the two studies
(epochs, widths, dataset subset, graph options) is warned by name and recorded in
`scores.mismatches`. The stage: stages/score.py.
"""
from __future__ import annotations

from ._cli import answer_early, check_warehouse, parse_arguments, run_cli

answer_early(__name__, __spec__.name, __doc__)  # --help and usage errors before the heavy imports below

from prefect import flow

from pipeline_lib.corpus import CorpusStale
from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.decisions.scoring import ScoringError
from pipeline_lib.spec import load_study
from stages import score as stage

from ._orchestration import run_stage, study_context


@flow(name="score", log_prints=True)
def score(spec: str, warehouse: str | None = None, predictor: str = "best", at_epoch: int = 2,
          confidence: float = 0.9) -> dict:
    """Score the study's runs that reached epoch `at_epoch`; returns the predictor and how many were scored."""
    with study_context(spec, warehouse) as context:
        return run_stage(stage.run, context,
                         {"predictor": predictor, "at_epoch": at_epoch, "confidence": confidence})


def main() -> None:
    args = parse_arguments(__spec__.name, __doc__)
    check_warehouse("score", args, load_study(args.spec).name)
    with study_context(args.spec, args.warehouse) as context:
        plan = stage.plan_scoring(context.warehouse, context.study.name, args.predictor, args.at_epoch)
        stage.study_differences(context, plan.source)  # refusals before Prefect starts
    score(args.spec, args.warehouse, args.predictor, args.at_epoch, args.confidence)


if __name__ == "__main__":
    run_cli(main, user_errors=(ScoringError, RegistryError, CorpusStale))
