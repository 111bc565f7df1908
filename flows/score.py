"""Scoring flow: rank the runs of a study at epoch k with a registered predictor, into `scores`.

    .venv/bin/python -m flows.score --spec SPEC --warehouse FILE --predictor <id|best> --at-epoch K [--confidence 0.9]

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

from prefect import flow

from pipeline_lib.decisions.registry import RegistryError
from pipeline_lib.decisions.scoring import ScoringError
from stages import score as stage

from ._cli import run_cli, study_arguments
from ._orchestration import run_stage, study_context


@flow(name="score", log_prints=True)
def score(spec: str, warehouse: str | None = None, predictor: str = "best", at_epoch: int = 2,
          confidence: float = 0.9) -> dict:
    """Score the study's runs that reached epoch `at_epoch`; returns the predictor and how many were scored."""
    return run_stage(stage.run, study_context(spec, warehouse),
                     {"predictor": predictor, "at_epoch": at_epoch, "confidence": confidence})


def main() -> None:
    parser = study_arguments(__doc__.splitlines()[0], execution=False)
    parser.add_argument("--predictor", default="best", help="a registered predictor's id, a study name (its best "
                        "predictor), or best (default)")
    parser.add_argument("--at-epoch", type=int, required=True, help="the epoch k to score at")
    parser.add_argument("--confidence", type=float, default=0.9, help="of the intervals (default: %(default)s)")
    args = parser.parse_args()
    context = study_context(args.spec, args.warehouse)
    plan = stage.plan_scoring(context.warehouse, context.study.name, args.predictor, args.at_epoch)
    stage.study_differences(context, plan.predictor)  # refusals before Prefect starts
    score(args.spec, args.warehouse, args.predictor, args.at_epoch, args.confidence)


if __name__ == "__main__":
    run_cli(main, user_errors=(ScoringError, RegistryError))
