"""A finished Optuna study as a sweep to replay: its trials' intermediate values are the curves.

Only the curves are known (no weights, no features), so the policies that read curves alone are
raced on it: train-all, i-Epoch, Optuna's pruners and the synchronous triage by accuracy
(`replay.policy_grid` with no designs, transfer or oracle). Each trial's seconds are its wall time
spread evenly over its reported steps. Only COMPLETE trials have a final value; pruned or failed
ones are left out (and counted), so on a study that already pruned, the race is among the trials
that survived its pruner.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
import polars as pl

from .replay import Curves, Sweep


class OptunaStudyError(ValueError):
    """A storage or study that cannot be replayed; the message says why and what to do."""


@dataclass(frozen=True)
class OptunaSweep:
    sweep: Sweep
    name: str
    direction: str
    left_out: dict[str, int]  # trial state -> count of trials not replayed


def load(storage: str, study_name: str | None = None) -> optuna.Study:
    """The study `study_name` of the storage; without a name, its only study."""
    try:
        names = optuna.get_all_study_names(storage)
    except Exception as e:  # an unreachable URL or a file that is not an Optuna database
        raise OptunaStudyError(f"cannot read Optuna storage {storage!r}: {type(e).__name__}: {e}") from None
    if study_name is None:
        if len(names) != 1:
            raise OptunaStudyError(f"storage {storage!r} holds {len(names)} studies; name one with --study: "
                                   + (", ".join(names) or "(none)"))
        study_name = names[0]
    if study_name not in names:
        raise OptunaStudyError(f"storage {storage!r} has no study {study_name!r}; it has: {', '.join(names) or '(none)'}")
    return optuna.load_study(study_name=study_name, storage=storage)


def sweep_of(study: optuna.Study) -> OptunaSweep:
    """The complete trials, in trial order, as curves: value at step e (e >= 1) as the accuracy at
    epoch e, the trial's value as its final accuracy; both negated for a study that minimizes, so that
    higher is better for every policy."""
    if len(study.directions) != 1:
        raise OptunaStudyError(f"study {study.study_name!r} has {len(study.directions)} objectives; the replay "
                               "ranks trials by one")
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    complete, left_out = [], {}
    for trial in study.get_trials(deepcopy=False):
        steps = {s: v for s, v in trial.intermediate_values.items() if s >= 1}
        if trial.state == optuna.trial.TrialState.COMPLETE and steps and trial.value is not None:
            complete.append((trial, steps))
        else:
            state = trial.state.name if trial.state != optuna.trial.TrialState.COMPLETE else "COMPLETE without steps"
            left_out[state] = left_out.get(state, 0) + 1
    if len(complete) < 2:
        raise OptunaStudyError(f"study {study.study_name!r} has {len(complete)} complete trial(s) with intermediate "
                               "values (trial.report(value, step) with steps from 1); the replay needs 2 at least")
    metrics, finals = [], []
    for trial, steps in complete:
        per_step = (trial.datetime_complete - trial.datetime_start).total_seconds() / len(steps)
        run_id = f"trial-{trial.number:06d}"
        metrics += [{"run_id": run_id, "epoch": s, "test_acc": sign * v, "seconds": per_step} for s, v in steps.items()]
        finals.append({"run_id": run_id, "final_acc": sign * trial.value})
    final = pl.DataFrame(finals)
    curves = Curves.from_frames(pl.DataFrame(metrics), final, final["run_id"].to_list())
    n = len(curves.run_ids)
    sweep = Sweep(curves=curves, graph_seconds=np.zeros((n, curves.epochs + 1)),
                  config_ids=np.array(curves.run_ids), architectures=np.full(n, "trial"))
    return OptunaSweep(sweep, study.study_name, "maximize" if sign > 0 else "minimize", left_out)
