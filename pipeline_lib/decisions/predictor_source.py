"""Where a triage's score at a rung comes from, and why: a registered predictor, the shipped corpus
predictor, or the test accuracy at the rung (the i-Epoch rule, which needs nothing registered).

`predictor: auto` takes the first that fits, in this order: the best registered predictor at
k = rung whose study matches this one exactly (`study_match.mismatches` finds nothing) and that was
not fitted on a triaged study's kept runs only, with out-of-fold residuals; else the corpus predictor
when this checkout ships one covering the dataset and architectures (`corpus_predictor`), reading no
stale corpus feature set, and it is never worse than test accuracy at k on any held-out study (its
card's `accuracy_gate`); else accuracy, with the reason (a refused corpus predictor: the stale sets
and the command that refreshes them). A predictor named
in the spec (best, an id, a study) is used as named: a refused difference raises, the others are
kept on the source to be warned and recorded.
"""
from __future__ import annotations

from pipeline_lib.spec import Study

from . import corpus
from .scoring import ScoringError
from .sources import AccuracySource, CorpusSource, RegisteredSource, ScoreSource
from .study_match import Mismatch, mismatches


def corpus_predictor(k: int, study: Study) -> CorpusSource | None:
    """The shipped corpus predictor at k, when this checkout has one that covers the study's dataset
    and architectures; None otherwise (no card, not fitted at k). CorpusStale when it reads a base
    feature set whose code changed since it was fitted."""
    try:
        row = corpus.predictor_row(k)
    except ScoringError:
        return None
    if study.dataset.name not in row["datasets"] or not set(study.architectures) <= set(row["architectures"]):
        return None
    return CorpusSource(row)


def _describe(predictor: dict) -> str:
    return f"{predictor['id']} (study {predictor['study']}, {predictor['predictor']} on {predictor['feature_set']})"


def auto_source(study: Study, k: int, candidates: list[tuple[RegisteredSource, Study | None]],
                corpus_source: CorpusSource | None, cohort: int | None = None,
                corpus_refused: str | None = None) -> ScoreSource:
    """`predictor: auto` at rung k: `candidates` are the registered regression predictors at k on this
    dataset and architectures, best first, each with its study's spec (None when not recorded);
    `cohort`: the runs to decide, when known (the corpus predictor ranks its `min_cohort` at least);
    `corpus_refused`: why the corpus predictor is refused (`corpus_predictor`'s CorpusStale), if it is."""
    passed = []
    for source, theirs in candidates:
        row = source.row
        if row.get("triaged"):
            passed.append(f"{row['id']}: fitted on the kept runs of triaged study {row['study']}")
        elif not row.get("oof_residuals"):
            passed.append(f"{row['id']}: no out-of-fold residuals to build intervals from")
        elif theirs is None:
            passed.append(f"{row['id']}: study {row['study']}'s spec is not recorded")
        elif found := mismatches(study, theirs, source.reads_graphs):
            passed.append(f"{row['id']}: {'; '.join(map(str, found))}")
        else:
            return source.chosen(f"auto: registered predictor {_describe(row)} at k = {k}, its study matches")
    skipped = f" ({' | '.join(passed)})" if passed else ""
    none = f"auto: no registered predictor at k = {k} matches this study{skipped}"
    if corpus_refused:
        return AccuracySource(k, f"{none}; the corpus predictor is refused ({corpus_refused}): test accuracy "
                                 f"at epoch {k} (i-Epoch rule)")
    if corpus_source is None:
        return AccuracySource(k, f"{none}, and no corpus predictor covers dataset {study.dataset.name} at k = {k}: "
                                 f"test accuracy at epoch {k} (i-Epoch rule)")
    gate = corpus_source.row.get("accuracy_gate") or {}
    if not gate.get("holds"):
        worse = f"ranks worse than test accuracy at epoch {k} (tau or top-5 kept) on held-out stud{'y' if len(gate.get('worse_on', [])) == 1 else 'ies'} " \
                f"{', '.join(gate['worse_on'])}" if gate.get("worse_on") else "has no held-out comparison with test accuracy"
        return AccuracySource(k, f"{none}; the corpus predictor {corpus_source.id} {worse} "
                                 f"(docs/results/corpus.md): test accuracy at epoch {k} (i-Epoch rule)")
    if cohort is not None and cohort < corpus_source.min_cohort:
        return AccuracySource(k, f"{none}; the corpus predictor ranks {corpus_source.min_cohort} runs together at "
                                 f"least, the cohort has {cohort}: test accuracy at epoch {k} (i-Epoch rule)")
    return corpus_source.chosen(f"{none}; the shipped corpus predictor {corpus_source.id} covers it and ranks no "
                                f"held-out study worse than test accuracy at epoch {k}")


def differences(study: Study, source: ScoreSource, theirs: Study | None) -> list[Mismatch]:
    """How the source's study (`theirs`, None when its spec is not recorded) differs from `study`;
    ScoringError naming the differences that make its scores meaningless. A source of no one study
    (the corpus predictor, accuracy) has none: its input contract is its `check`."""
    if source.study is None:
        return []
    if theirs is None:
        return [Mismatch("study spec", "recorded", "not recorded", False)]
    found = mismatches(study, theirs, source.reads_graphs)
    if refused := [m for m in found if m.refused]:
        raise ScoringError(f"predictor {_describe(source.row)} does not fit study {study.name!r}: "
                           f"{'; '.join(map(str, refused))}; choose a predictor of a study like this one, or auto")
    return found


def named_source(study: Study, which: str, source: ScoreSource, theirs: Study | None) -> ScoreSource:
    """The source the spec names (`which`: corpus, best, an id or a study), refused on a difference
    that makes its scores meaningless; the other differences are kept to be warned and recorded."""
    return source.chosen(f"named in the spec: {which}", tuple(differences(study, source, theirs)))
