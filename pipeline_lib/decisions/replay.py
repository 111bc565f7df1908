"""Replaying a finished sweep as it would have run: W parallel workers, runs started in a given order,
each epoch taking its recorded seconds, and a stopping policy asked after every epoch.

The simulation is event-driven: a worker trains one run epoch by epoch; after each epoch the policy
decides continue or stop, seeing only what exists at that simulated moment (the run's own accuracy
at that epoch, and the final accuracy of runs that have already ended: `Policy.finished`). A worker
whose run stops or ends takes the next run of the order. The policies are in `policies.py`.

Beside them, the synchronous triage `flows.train_sweep` runs (`simulate_rungs`, the `triage` family):
phase by phase, the cohort trained to the rung on W workers, a barrier, then one decision for the
whole cohort by `decisions.triage.decide` on the scores of the shipped code (`rung_scores`: the
accuracy at the rung through `AccuracySource`, or a fixed predictor), timed and charged.

What a replay costs (`Outcome`): training seconds of every epoch trained; the recorded graph seconds
of the snapshots a policy's features need (on the timeline: the worker computes them after the
epoch); the decision seconds a policy spends (scoring, refits), measured around each call and added
to the wall time as if serial (an upper bound: they are small and do not reorder events, so the
decisions stay reproducible; the synchronous triage adds each decision's measured seconds to the
wall at its barrier). What it buys, against the truth of training every run to the end:
regret of the best run trained to its end, recall of the true top 10%, the share of the true top 5
trained to their end, whether the best run survived.

A policy that pauses runs and resumes them later (promotion-type successive halving: `policies.Pasha`)
says no at a rung like any other (the run is stopped for now) and offers, through an optional
`resume()`, a paused run for a free worker to train on before the worker takes the next run of the
order (also asked for idle workers after every event); an optional `answer()`, asked once the sweep
has drained, names a run to train on to its end (its pick), trained then on one worker.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import optuna
import polars as pl
from threadpoolctl import threadpool_limits

from pipeline_lib.features import GRAPH_SETS
from pipeline_lib.spec import TriageSpec
from pipeline_lib.vocabulary import Decision

from . import policies
from .policies import embed
from .rung_scores import FixedScores, Scorer, accuracy_scorer
from .scoring import design_matrix
from .triage import decide

TOP_SHARE = 0.1
TOP_N = 5  # the true top 5 by final accuracy: the share of them trained to their end (`top5_kept`)


@dataclass(frozen=True)
class Curves:
    """Recorded curves of finished runs, one row per run in launch order, columns epochs 1..E.

    A run that diverged at epoch d has `epochs_done` d, NaN accuracy after d and 0 seconds after d.
    `final` is the final accuracy (chance for a diverged run)."""
    run_ids: tuple[str, ...]
    acc: np.ndarray
    seconds: np.ndarray
    epochs_done: np.ndarray
    final: np.ndarray

    @classmethod
    def from_frames(cls, metrics: pl.DataFrame, final: pl.DataFrame, order: list[str]) -> Curves:
        """metrics: run_id, epoch, test_acc, seconds; final: run_id, final_acc.

        Runs are those of `final`, in the order of `order` (runs absent from it go last)."""
        rank = {run_id: i for i, run_id in enumerate(order)}
        run_ids = sorted(final["run_id"].to_list(), key=lambda r: (rank.get(r, len(rank)), r))
        m = metrics.filter((pl.col("epoch") >= 1) & pl.col("run_id").is_in(run_ids))
        epochs = int(m["epoch"].max())
        row = {r: i for i, r in enumerate(run_ids)}
        rows = m["run_id"].replace_strict(row, return_dtype=pl.Int64).to_numpy()
        cols = m["epoch"].to_numpy() - 1
        arrays = {}
        for name, column, empty in (("acc", "test_acc", np.nan), ("seconds", "seconds", 0.0)):
            a = np.full((len(run_ids), epochs), empty)
            a[rows, cols] = m[column].cast(pl.Float64).fill_null(empty).to_numpy()
            arrays[name] = a
        done = np.zeros(len(run_ids), dtype=np.int64)
        np.maximum.at(done, rows, cols + 1)
        finals = dict(zip(final["run_id"], final["final_acc"]))
        return cls(tuple(run_ids), arrays["acc"], arrays["seconds"], done,
                   np.array([finals[r] for r in run_ids], dtype=np.float64))

    @property
    def epochs(self) -> int:
        return self.acc.shape[1]

    @property
    def total_seconds(self) -> float:
        """Training every run to its end: the compute of train-all, the denominator of fractions."""
        return float(self.seconds.sum())


def orders(n_runs: int, n_random: int) -> list[np.ndarray]:
    """Launch orders as permutations of the sweep's rows: index 0 the sweep's own order, then
    `n_random` permutations seeded 1..n_random."""
    return [np.arange(n_runs)] + [np.random.default_rng(seed).permutation(n_runs) for seed in range(1, n_random + 1)]


class Policy(Protocol):
    """A stopping policy. The simulation calls, in simulated time order: `started` when a worker takes
    a run; `continues` after each epoch before the run's last (its accuracy then; True = train on);
    `stopped` when it said no; `finished` when the run ends (its final accuracy: a label it may learn
    from from then on). `graph_epochs` = snapshots 0..graph_epochs of every run need a graph (0: none).
    An optional `charged_seconds`, read at the end: decision work done outside these calls (scores
    made ahead of time), added to the measured decision seconds. Optional `resume()` and `answer()`:
    a paused run to train on, and the run to finish once the sweep has drained (`simulate`)."""
    graph_epochs: int

    def started(self, run: int) -> None: ...
    def continues(self, run: int, epoch: int, acc: float) -> bool: ...
    def stopped(self, run: int) -> None: ...
    def finished(self, run: int, final: float, diverged: bool) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What one replay did: epochs each run trained (in the sweep's rows), which runs reached their
    end, and the seconds: training, recorded graph work, measured decision work, simulated wall time."""
    epochs: np.ndarray
    kept: np.ndarray
    train_seconds: float
    graph_seconds: float
    decision_seconds: float
    wall_seconds: float


def simulate(curves: Curves, order: np.ndarray, policy: Policy, workers: int,
             graph_seconds: np.ndarray | None = None) -> Outcome:
    """Run the sweep under `policy` with `workers` parallel workers, runs started in `order`.

    graph_seconds: (runs, epochs + 1) recorded graph seconds per snapshot 0..E, charged for the
    snapshots 0..policy.graph_epochs of every epoch trained (snapshot 0 with epoch 1)."""
    n, g = len(curves.run_ids), policy.graph_epochs
    epochs = np.zeros(n, dtype=np.int64)
    kept = np.zeros(n, dtype=bool)
    graph = np.zeros((n, curves.epochs + 1)) if graph_seconds is None or g == 0 else graph_seconds
    spent = {"graph": 0.0, "decision": 0.0}
    events: list[tuple[float, int, int]] = []  # (time, run's place in the order, run): epoch end events
    queue = iter(order)

    def timed(call, *args):
        start = time.perf_counter()
        result = call(*args)
        spent["decision"] += time.perf_counter() - start
        return result

    def train_next_epoch(run: int, now: float) -> None:
        e = epochs[run] + 1  # the epoch to train
        extra = ((graph[run, 0] if e == 1 else 0.0) + graph[run, e]) if e <= g else 0.0
        spent["graph"] += extra
        epochs[run] = e
        heapq.heappush(events, (now + curves.seconds[run, e - 1] + extra, place[run], run))

    def take_paused(now: float) -> bool:
        run = timed(resume) if resume is not None else None
        if run is not None:
            train_next_epoch(int(run), now)
        return run is not None

    def start_next(now: float) -> None:
        if take_paused(now):
            return
        run = next(queue, None)
        if run is None:
            idle[0] += 1
            return
        timed(policy.started, int(run))
        train_next_epoch(int(run), now)

    resume, answer = getattr(policy, "resume", None), getattr(policy, "answer", None)
    idle = [max(workers - n, 0)]  # workers with nothing to train
    place = {int(r): i for i, r in enumerate(order)}
    for _ in range(min(workers, n)):
        start_next(0.0)
    now = 0.0
    while events or answer is not None:
        if not events:  # drained: the policy's pick trains on to its end
            pick = timed(answer)
            if pick is None:
                break
            train_next_epoch(int(pick), now)
            continue
        now, _, run = heapq.heappop(events)
        e = epochs[run]
        if e >= curves.epochs_done[run]:
            kept[run] = True
            timed(policy.finished, run, float(curves.final[run]), bool(curves.epochs_done[run] < curves.epochs))
            start_next(now)
        elif timed(policy.continues, run, int(e), float(curves.acc[run, e - 1])):
            train_next_epoch(run, now)
        else:
            timed(policy.stopped, run)
            start_next(now)
        while idle[0] and take_paused(now):
            idle[0] -= 1
    trained = np.arange(curves.epochs)[None, :] < epochs[:, None]
    spent["decision"] += getattr(policy, "charged_seconds", 0.0)
    return Outcome(epochs, kept, float(curves.seconds[trained].sum()), spent["graph"], spent["decision"],
                   now + spent["decision"])


@dataclass(frozen=True)
class RungTriage:
    """A synchronous triage to replay (`simulate_rungs`): the spec's rungs and keep rule, the scorer
    of a rung's ready runs (`rung_scores`), and the snapshots 0..graph_epochs whose graphs it reads."""
    triage: TriageSpec
    scores: Scorer
    graph_epochs: int = 0


def simulate_rungs(curves: Curves, order: np.ndarray, triage: TriageSpec, scores: Scorer, workers: int,
                   graph_seconds: np.ndarray | None = None, graph_epochs: int = 0,
                   on_decision: Callable[[int, pl.DataFrame], None] | None = None) -> Outcome:
    """The triage `flows.train_sweep` runs, replayed: phase by phase, with a barrier at each rung.

    Phase i trains the cohort (every run at the first rung, then the runs kept at the rung before)
    to rung r_i, a run whose curve ends earlier (diverged) to its end; its runs are list-scheduled in
    `order` on `workers` workers (a free worker takes the next), each taking the recorded seconds of
    the epochs it trains in the phase plus, with `graph_epochs` g > 0, the recorded graph seconds of
    its snapshots 0..g trained in the phase (charged as `simulate` does); the phase lasts its
    makespan. Then, as `decisions.triage.split_cohort` does, a run that ended before the rung gets no
    decision, and the runs that reached it are scored (`scores(rung, run ids)`) and kept or stopped by
    `decisions.triage.decide`: timed, and added to the decision seconds and the wall time. After the
    last rung the kept runs train to their end. `kept`: runs that reached their end unstopped.
    `on_decision(rung, decisions)`, when given, sees each rung's decisions (`decide`'s frame)."""
    n, g = len(curves.run_ids), graph_epochs
    graph = np.zeros((n, curves.epochs + 1)) if graph_seconds is None or g == 0 else graph_seconds
    epochs = np.zeros(n, dtype=np.int64)
    stopped = np.zeros(n, dtype=bool)
    spent = {"graph": 0.0, "decision": 0.0, "wall": 0.0}
    cohort = [int(run) for run in order]
    for rung in [*triage.rungs, None]:
        free = [0.0] * min(workers, len(cohort))  # when each worker is free, the phase starting at 0
        for run in cohort:
            last = int(curves.epochs_done[run]) if rung is None else min(rung, int(curves.epochs_done[run]))
            trained = range(int(epochs[run]) + 1, last + 1)
            extra = sum(graph[run, e] + (graph[run, 0] if e == 1 else 0.0) for e in trained if e <= g)
            spent["graph"] += extra
            heapq.heappush(free, heapq.heappop(free) + float(curves.seconds[run, epochs[run]:last].sum()) + extra)
            epochs[run] = max(int(epochs[run]), last)
        spent["wall"] += max(free, default=0.0)
        if rung is None:
            break
        ready = [run for run in cohort if curves.epochs_done[run] >= rung]  # the others diverged: no decision
        if not ready:
            cohort = []
            continue
        start = time.perf_counter()
        decided = decide(scores(rung, [curves.run_ids[run] for run in ready]), triage)
        spent["decision"] += time.perf_counter() - start
        if on_decision is not None:
            on_decision(rung, decided)
        keep = set(decided.filter(pl.col("decision") == Decision.KEEP)["run_id"])
        cohort = [run for run in ready if curves.run_ids[run] in keep]
        stopped[[run for run in ready if curves.run_ids[run] not in keep]] = True
    spent["decision"] += getattr(scores, "charged_seconds", 0.0)
    trained = np.arange(curves.epochs)[None, :] < epochs[:, None]
    return Outcome(epochs, ~stopped & (epochs >= curves.epochs_done), float(curves.seconds[trained].sum()),
                   spent["graph"], spent["decision"], spent["wall"] + spent["decision"])


def top_runs(final: np.ndarray, share: float = TOP_SHARE) -> np.ndarray:
    """The ceil(share x n) runs of highest final accuracy (ties broken by the sweep's order)."""
    n_top = max(1, math.ceil(share * len(final) - 1e-9))
    mask = np.zeros(len(final), dtype=bool)
    mask[np.argsort(-final, kind="stable")[:n_top]] = True
    return mask


def top_n_runs(final: np.ndarray, n_top: int = TOP_N) -> np.ndarray:
    """The n_top runs of highest final accuracy (all runs when fewer; ties broken by the sweep's order)."""
    mask = np.zeros(len(final), dtype=bool)
    mask[np.argsort(-final, kind="stable")[:n_top]] = True
    return mask


def judge(curves: Curves, outcome: Outcome, share: float = TOP_SHARE) -> dict:
    """One replay's row: compute spent (epochs, seconds, wall) and what it bought against train-all:
    regret, best run kept, recall of the true top share, and `top5_kept`, the share of the true top
    5 by final accuracy (`top_n_runs`) that reached their end."""
    top = top_runs(curves.final, share)
    top5 = top_n_runs(curves.final)
    best = float(curves.final[outcome.kept].max()) if outcome.kept.any() else float("nan")
    seconds = outcome.train_seconds + outcome.graph_seconds + outcome.decision_seconds
    return {"epochs": int(outcome.epochs.sum()),
            "epochs_fraction": float(outcome.epochs.sum() / curves.epochs_done.sum()),
            "train_seconds": outcome.train_seconds, "graph_seconds": outcome.graph_seconds,
            "decision_seconds": outcome.decision_seconds, "seconds": seconds,
            "fraction": seconds / curves.total_seconds, "wall_seconds": outcome.wall_seconds,
            "runs_kept": int(outcome.kept.sum()), "regret": float(curves.final.max()) - best,
            "best_kept": bool(outcome.kept[curves.final == curves.final.max()].any()),
            "recall_top": float((top & outcome.kept).sum() / top.sum()),
            "top_missed": int((top & ~outcome.kept).sum()),
            "top5_kept": float((top5 & outcome.kept).sum() / top5.sum())}


def pruner_grid(epochs: int) -> dict[str, list[tuple[str, Callable]]]:
    """Per Optuna pruner, the settings replayed, from aggressive to lenient: each is one operating point."""
    p = optuna.pruners
    return {
        "MedianPruner": [(f"n_warmup_steps={w}", lambda w=w: p.MedianPruner(n_startup_trials=5, n_warmup_steps=w))
                         for w in range(epochs - 1)],
        "PercentilePruner": [(f"percentile={q}", lambda q=q: p.PercentilePruner(q, n_startup_trials=5))
                             for q in (10.0, 25.0, 50.0, 75.0, 90.0)],
        "SuccessiveHalvingPruner": [(f"min_resource={r},reduction_factor={f}",
                                     lambda r=r, f=f: p.SuccessiveHalvingPruner(min_resource=r, reduction_factor=f))
                                    for r in (1, 2, 4) if r < epochs for f in (4, 3, 2)],
        "HyperbandPruner": [(f"min_resource={r},reduction_factor={f}",
                             lambda r=r, f=f: p.HyperbandPruner(min_resource=r, max_resource=epochs, reduction_factor=f))
                            for r in (1, 2) for f in (4, 3, 2)],
    }


# The replay of a sweep under every policy and order ------------------------------------------------

@dataclass(frozen=True)
class Predictions:
    """A predictor fixed before the sweep: per run (the sweep's rows), its predicted final accuracy from
    features at `k`; `seconds_per_run`: the measured seconds of scoring one run (charged for every run
    scored at the rung); `embedding`: the runs in its feature space (difficulty estimate); `source`."""
    k: int
    feature_set: str
    values: np.ndarray
    seconds_per_run: float
    embedding: np.ndarray
    source: str

    @classmethod
    def from_model(cls, model, columns: list[str], features: pl.DataFrame, run_ids: list[str], k: int,
                   feature_set: str, source: str) -> Predictions:
        """Any fitted predictor with predict(X) (a registered one of another study, a corpus predictor)
        and the sweep's feature rows at k (long: run_id, feature, value), read in the predictor's own
        column order; a column the sweep lacks is NaN (a Pipeline's imputer fills it). Each run's
        prediction depends on its own features only, so all are made here in one call; the seconds
        of one call for one run (least of 5) are what scoring a run at its rung costs."""
        X = design_matrix(features, run_ids, columns)
        with threadpool_limits(1):
            values = np.asarray(model.predict(X), dtype=np.float64)
            timings = []
            for _ in range(5):
                start = time.perf_counter()
                model.predict(X[:1])
                timings.append(time.perf_counter() - start)
            embedding = embed(model, X)
        return cls(k, feature_set, values, min(timings), embedding, source)

    @classmethod
    def stored(cls, values: np.ndarray, k: int, feature_set: str, source: str) -> Predictions:
        """Predictions already made (the oracle's out-of-fold ones), charged nothing."""
        return cls(k, feature_set, values, 0.0, np.zeros((len(values), 1)), source)


@dataclass(frozen=True)
class RanksAmongSeen:
    """A predictor fitted elsewhere whose input contract normalizes each feature among the runs scored
    together (the corpus predictor: within-study percentiles). In the replay it scores, at each
    decision, the runs seen at the rung so far, normalized among themselves (`prepare`), so no run's
    features are read before that run reaches the rung; below `min_runs` seen, accuracy at the rung
    ranks them. `X`: per run (the sweep's rows), its raw features in the model's column order."""
    k: int
    feature_set: str
    model: object
    X: np.ndarray
    prepare: Callable[[np.ndarray], np.ndarray]
    min_runs: int
    source: str


@dataclass(frozen=True)
class Design:
    """Per run (the sweep's rows), features built from epochs 0..k of one feature set."""
    k: int
    feature_set: str
    X: np.ndarray


@dataclass(frozen=True)
class Sweep:
    """Everything a replay reads, in the sweep's rows: curves, recorded graph seconds per snapshot
    (runs x epochs 0..E), configurations and architectures, designs for `online`, predictions for
    `transfer` (fitted elsewhere) and `oracle` (out of fold on this sweep)."""
    curves: Curves
    graph_seconds: np.ndarray
    config_ids: np.ndarray
    architectures: np.ndarray
    designs: tuple[Design, ...] = ()
    transfer: tuple[Predictions | RanksAmongSeen, ...] = ()
    oracle: tuple[Predictions, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The replay's grid: workers, random orders, i-Epoch rungs, keep fractions, stop-rule alphas,
    online's labelled fraction, the top share that recall and the stop rule are about, and the
    synchronous triage's rung lists and reduction factors (besides the keep fractions)."""
    workers: int = 4
    random_orders: int = 20
    rungs: tuple[int, ...] = (1, 2, 3)
    fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
    alphas: tuple[float, ...] = (0.05, 0.1, 0.2)
    labelled_fraction: float = 0.1
    share: float = TOP_SHARE
    triage_rungs: tuple[tuple[int, ...], ...] = ((1,), (2,), (1, 2), (1, 3))
    reduction_factors: tuple[int, ...] = (2, 3, 4)


def policy_grid(sweep: Sweep, settings: Settings) -> list[tuple[dict, Callable[[int], Policy | RungTriage]]]:
    """(labels, factory of a fresh policy for an order's seed) for every policy and setting replayed:
    an asynchronous policy (`simulate`) or a synchronous triage (`RungTriage`, `simulate_rungs`)."""
    epochs = sweep.curves.epochs
    grid: list[tuple[dict, Callable[[int], Policy | RungTriage]]] = [
        (_labels("train_all", "train_all", "", True), lambda seed: policies.TrainAll())]
    rules = [(f"fraction={f}", {"fraction": f}) for f in settings.fractions]
    for rung in (r for r in settings.rungs if r < epochs):
        for setting, rule in rules:
            grid.append((_labels("i_epoch", "i_epoch", setting, True, rung=rung, **rule),
                         lambda seed, rung=rung, rule=rule: policies.IEpoch(rung, share=settings.share, **rule)))
    for name, pruners in pruner_grid(epochs).items():
        for setting, make in pruners:
            grid.append((_labels(name, "optuna", setting, True),
                         lambda seed, make=make, name=name: policies.OptunaPolicy(make, name)))
    stop_rules = [(f"alpha={a}", {"alpha": a}) for a in settings.alphas]
    n = len(sweep.curves.run_ids)
    for design in sweep.designs:
        g = design.k if design.feature_set in GRAPH_SETS else 0
        for setting, rule in rules + stop_rules:
            grid.append((_labels("online", "online", setting, True, rung=design.k, feature_set=design.feature_set,
                                 source=f"refit on ended runs, {settings.labelled_fraction:.0%} labelled", **rule),
                         lambda seed, d=design, g=g, rule=rule: policies.Online(
                             d.k, share=settings.share, graph_epochs=g, bins=sweep.architectures,
                             always=policies.labelled_runs(n, settings.labelled_fraction, seed), features=d.X,
                             config_ids=sweep.config_ids, fit=policies.refit_linear, **rule)))
    for ranker in (t for t in sweep.transfer if isinstance(t, RanksAmongSeen)):
        g = ranker.k if ranker.feature_set in GRAPH_SETS else 0
        for setting, rule in rules:  # percentiles, not accuracies: no stop rule
            grid.append((_labels("transfer", "transfer", setting, True, rung=ranker.k, feature_set=ranker.feature_set,
                                 source=ranker.source, **rule),
                         lambda seed, r=ranker, g=g, rule=rule: policies.AmongSeen(
                             r.k, share=settings.share, graph_epochs=g, model=r.model, features=r.X,
                             prepare=r.prepare, min_runs=r.min_runs, **rule)))
    fixed_transfer = tuple(t for t in sweep.transfer if isinstance(t, Predictions))
    for family, deployable, fixed in (("transfer", True, fixed_transfer), ("oracle", False, sweep.oracle)):
        for pred in fixed:
            g = pred.k if pred.feature_set in GRAPH_SETS else 0
            for setting, rule in rules + (stop_rules if deployable else []):
                grid.append((_labels(family, family, setting, deployable, rung=pred.k, feature_set=pred.feature_set,
                                     source=pred.source, **rule),
                             lambda seed, pred=pred, g=g, rule=rule: policies.Fixed(
                                 pred.k, share=settings.share, graph_epochs=g, bins=sweep.architectures,
                                 embedding=pred.embedding, predictions=pred.values,
                                 seconds_per_run=pred.seconds_per_run, **rule)))
    return grid + triage_grid(sweep, settings)


def triage_grid(sweep: Sweep, settings: Settings) -> list[tuple[dict, Callable[[int], RungTriage]]]:
    """The `triage` family: the synchronous triage of `flows.train_sweep` (`simulate_rungs`), at each
    rung list of `settings.triage_rungs` below the sweep's epochs, keeping each fraction of
    `settings.fractions` or 1/eta of each reduction factor eta, scored by the test accuracy at the
    rung (source `accuracy`), and at k alone by each fixed `transfer` predictor (charged as there)."""
    curves = sweep.curves
    rules = [(f"keep={f:g}", {"keep": f}, f) for f in settings.fractions] + \
        [(f"reduction_factor={eta}", {"reduction_factor": eta}, 1 / eta) for eta in settings.reduction_factors]
    grid: list[tuple[dict, Callable[[int], RungTriage]]] = []
    for rungs in (r for r in settings.triage_rungs if max(r) < curves.epochs):
        for text, rule, fraction in rules:
            spec = TriageSpec(rungs=list(rungs), **rule)
            grid.append((_labels("triage", "triage", f"rungs={','.join(map(str, rungs))} {text}", True, rung=rungs[0],
                                 source="accuracy", fraction=fraction),
                         lambda seed, spec=spec: RungTriage(spec, accuracy_scorer(curves))))
    for pred in (t for t in sweep.transfer if isinstance(t, Predictions) and t.k < curves.epochs):
        g = pred.k if pred.feature_set in GRAPH_SETS else 0
        for text, rule, fraction in rules:
            spec = TriageSpec(rungs=[pred.k], **rule)
            grid.append((_labels("triage", "triage", f"rungs={pred.k} {text}", True, rung=pred.k,
                                 feature_set=pred.feature_set, source=pred.source, fraction=fraction),
                         lambda seed, spec=spec, pred=pred, g=g: RungTriage(
                             spec, FixedScores(pred.k, curves.run_ids, pred.values, pred.seconds_per_run), g)))
    return grid


def _labels(policy: str, family: str, setting: str, deployable: bool, rung: int | None = None,
            feature_set: str | None = None, source: str | None = None, fraction: float | None = None,
            alpha: float | None = None) -> dict:
    return {"policy": policy, "family": family, "setting": setting, "deployable": deployable, "rung": rung,
            "feature_set": feature_set, "source": source, "keep_fraction": fraction, "alpha": alpha}


def replay_sweep(sweep: Sweep, settings: Settings, progress: Callable[[int, int], None] | None = None,
                 grid: list[tuple[dict, Callable[[int], Policy | RungTriage]]] | None = None) -> pl.DataFrame:
    """One row per (policy setting, order): the `replays` table's columns but study and time.
    `grid`: the settings to replay (default `policy_grid(sweep, settings)`).

    One thread: on a few dozen rows, OpenMP workers of the k-NN and the pipelines only wait on each
    other (a difficulty estimate took 56 ms instead of 5 ms on 2 busy cores)."""
    curves = sweep.curves
    grid = policy_grid(sweep, settings) if grid is None else grid
    launch_orders = orders(len(curves.run_ids), settings.random_orders)
    rows = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with threadpool_limits(1):
            for i, (labels, make) in enumerate(grid):
                for index, order in enumerate(launch_orders):
                    made = make(index)
                    if isinstance(made, RungTriage):
                        outcome = simulate_rungs(curves, order, made.triage, made.scores, settings.workers,
                                                 sweep.graph_seconds, made.graph_epochs)
                    else:
                        outcome = simulate(curves, order, made, settings.workers, sweep.graph_seconds)
                    rows.append({**labels, "order_index": index, "workers": settings.workers,
                                 **judge(curves, outcome, settings.share)})
                if progress:
                    progress(i + 1, len(grid))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return pl.DataFrame(rows, schema_overrides={"rung": pl.Int32, "feature_set": pl.Utf8, "source": pl.Utf8,
                                                "keep_fraction": pl.Float64, "alpha": pl.Float64})


# Reading the replays ---------------------------------------------------------------------------

SETTING_KEYS = ["policy", "family", "setting", "deployable", "rung", "feature_set", "source", "keep_fraction", "alpha",
                "workers"]
MATCH_EPOCHS = 0.75     # the goal: i-Epoch's best regret with at most this share of its epochs
MATCH_BEST_KEPT = 0.95  # ... keeping the best run in at least this share of orders


def spread(column: str) -> list[pl.Expr]:
    """A column's mean over a group's orders with its 2.5-97.5% range (`<column>_low`, `_high`)."""
    return [pl.col(column).mean().alias(column), pl.col(column).quantile(0.025, "linear").alias(f"{column}_low"),
            pl.col(column).quantile(0.975, "linear").alias(f"{column}_high")]


def summarise(rows: pl.DataFrame) -> pl.DataFrame:
    """Per policy setting, over its orders: means with the 2.5-97.5% range of epochs (fraction of
    train-all's), regret and the share of the true top 5 kept (`top5_kept`, when the rows have it:
    rows stored before it have not), best-run-kept rate, recall of the top share, miss rate (share
    of the top runs stopped), top share of the stopped (share of the stopped runs that were top runs:
    what the stop rule's alpha is about), seconds (fraction of train-all's) and simulated wall time."""
    stopped = rows["runs_kept"].max() - pl.col("runs_kept")  # train-all keeps every run
    return rows.group_by(SETTING_KEYS, maintain_order=True).agg(
        pl.len().alias("orders"), *spread("epochs_fraction"), *spread("regret"),
        *(spread("top5_kept") if "top5_kept" in rows.columns else []),
        pl.col("best_kept").mean().alias("best_kept_rate"), pl.col("recall_top").mean(),
        (1 - pl.col("recall_top")).mean().alias("miss_rate"),
        (pl.col("top_missed").sum() / stopped.sum()).alias("top_share_of_stopped"), pl.col("fraction").mean(),
        pl.col("wall_seconds").mean(), pl.col("decision_seconds").mean())


def best_i_epoch(summary: pl.DataFrame) -> dict:
    """The i-Epoch setting of least mean regret (then fewest epochs): the reference to match."""
    return summary.filter(pl.col("policy") == "i_epoch").sort("regret", "epochs_fraction").row(0, named=True)


def matching(summary: pl.DataFrame) -> pl.DataFrame:
    """Per deployable policy (all its settings of one rung, feature set, source and rule), its cheapest
    setting whose mean regret reaches the best i-Epoch's, with the share of i-Epoch's epochs it needs
    and its best-run-kept rate; `meets_goal` = at most MATCH_EPOCHS of the epochs and best run kept in
    at least MATCH_BEST_KEPT of orders. No setting reaching it: `setting` is NULL."""
    ref = best_i_epoch(summary)
    rule = pl.when(pl.col("alpha").is_not_null()).then(pl.lit("stop rule (alpha)")).otherwise(
        pl.when(pl.col("keep_fraction").is_not_null()).then(pl.lit("keep fraction")).otherwise(pl.lit("")))
    candidates = summary.filter(pl.col("deployable") & ~pl.col("policy").is_in(["i_epoch", "train_all"])) \
        .with_columns(rule.alias("rule"))
    rows = []
    for key, group in candidates.group_by(["policy", "rung", "feature_set", "source", "rule"], maintain_order=True):
        reach = group.filter(pl.col("regret") <= ref["regret"] + 1e-12).sort("epochs_fraction")
        best = reach.row(0, named=True) if reach.height else None
        rows.append({"policy": key[0], "rung": key[1], "feature_set": key[2], "source": key[3], "rule": key[4],
                     "setting": best and best["setting"],
                     "epochs_vs_i_epoch": best and best["epochs_fraction"] / ref["epochs_fraction"],
                     "best_kept_rate": best and best["best_kept_rate"],
                     "meets_goal": bool(best and best["epochs_fraction"] <= MATCH_EPOCHS * ref["epochs_fraction"] + 1e-12
                                        and best["best_kept_rate"] >= MATCH_BEST_KEPT - 1e-12)})
    return pl.DataFrame(rows, schema={"policy": pl.Utf8, "rung": pl.Int32, "feature_set": pl.Utf8, "source": pl.Utf8,
                                      "rule": pl.Utf8, "setting": pl.Utf8, "epochs_vs_i_epoch": pl.Float64,
                                      "best_kept_rate": pl.Float64, "meets_goal": pl.Boolean})


def policy_kind(policy: str, source: str | None) -> str:
    """The family a replayed policy is reported under across studies: i-Epoch, each Optuna pruner,
    online, transfer from a registered study, transfer from the corpus without the study, and the
    synchronous triage by accuracy (`triage`) or by a predictor transferred from a registered study."""
    if policy == "triage" and source != "accuracy":
        return "triage (corpus)" if (source or "").startswith("corpus") else "triage (registered)"
    if policy == "transfer":
        return "transfer (corpus)" if (source or "").startswith("corpus") else "transfer (registered)"
    return policy


def kind_column() -> pl.Expr:
    """`policy_kind` of each row (of rows with `policy` and `source`)."""
    return pl.struct("policy", "source").map_elements(lambda r: policy_kind(r["policy"], r["source"]),
                                                      return_dtype=pl.Utf8)


def study_verdict(summary: pl.DataFrame) -> dict:
    """One study's replay in one row: the best i-Epoch (the reference), and per policy kind and
    feature set the least share of i-Epoch's epochs any of its settings needs to reach that regret
    (with that setting's best-run-kept rate), whether any deployable policy meets the goal, and the
    stop rule's record: how often the share of top runs among the stopped stayed at or below alpha."""
    ref = best_i_epoch(summary)
    row = {"best i-Epoch": f"rung {ref['rung']}, {ref['setting']}", "i-Epoch epochs": ref["epochs_fraction"],
           "i-Epoch regret": ref["regret"], "i-Epoch best kept": ref["best_kept_rate"]}
    matched = matching(summary)
    for (kind, feature_set), group in (matched.filter(pl.col("epochs_vs_i_epoch").is_not_null())
                                       .with_columns(kind_column().alias("kind"))
                                       .group_by("kind", "feature_set", maintain_order=True)):
        best = group.sort("epochs_vs_i_epoch").row(0, named=True)
        row[f"{kind}{f' {feature_set}' if feature_set else ''}"] = (best["epochs_vs_i_epoch"], best["best_kept_rate"])
    row["meets goal"] = bool(matched["meets_goal"].any())
    stops = summary.filter(pl.col("alpha").is_not_null() & pl.col("deployable"))
    row["stop rule within alpha"] = (int((stops["top_share_of_stopped"].fill_nan(0) <= stops["alpha"] + 1e-12).sum()),
                                     stops.height)
    row["stop rule miss rate / alpha"] = ((stops["miss_rate"] / stops["alpha"]).min(),
                                          (stops["miss_rate"] / stops["alpha"]).max()) if stops.height else None
    return row


def front_matching(summary: pl.DataFrame) -> pl.DataFrame:
    """Per deployable policy (all its settings of one rung, feature set, source and rule) and per point
    of the i-Epoch front (mean epochs against mean regret): the share of that point's epochs the
    policy's cheapest setting reaching its mean regret needs (NULL where none reaches it)."""
    i_epoch = summary.filter(pl.col("policy") == "i_epoch")
    front = pareto_front(list(zip(i_epoch["epochs_fraction"], i_epoch["regret"])))
    points = [i_epoch.filter((pl.col("epochs_fraction") == x) & (pl.col("regret") == y)).row(0, named=True)
              for x, y in front]
    candidates = summary.filter(pl.col("deployable") & ~pl.col("policy").is_in(["i_epoch", "train_all"]))
    policy = ["policy", "source", "rung", "feature_set"]  # a transfer from the corpus and one from a study are two
    rows = []
    for key, group in candidates.filter(pl.col("alpha").is_null()).group_by(policy, maintain_order=True):
        rows.append(_front_row(key, False, group, points))
    for key, group in candidates.filter(pl.col("alpha").is_not_null()).group_by(policy, maintain_order=True):
        rows.append(_front_row(key, True, group, points))  # one row per stop rule: its alphas are its settings
    return pl.DataFrame(rows)


def _front_row(key: tuple, stop_rule: bool, group: pl.DataFrame, points: list[dict]) -> dict:
    policy, source, rung, feature_set = key
    label = " ".join(str(k) for k in (policy_kind(policy, source), feature_set, f"@{rung}" if rung is not None else None,
                                     "stop rule" if stop_rule else None) if k is not None)
    row = {"policy": label}
    for point in points:
        reach = group.filter(pl.col("regret") <= point["regret"] + 1e-12).sort("epochs_fraction")
        column = f"rung {point['rung']} {point['setting']} ({point['epochs_fraction']:.2f}, {point['regret']:.4f})"
        row[column] = reach["epochs_fraction"][0] / point["epochs_fraction"] if reach.height else None
    return row


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(epochs, regret) points no other point beats on both (fewer epochs, lower regret), by epochs."""
    front, best = [], math.inf
    for x, y in sorted(points):
        if y < best - 1e-15:
            front.append((x, y))
            best = y
    return front
