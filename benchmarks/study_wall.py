"""A whole study's training stage on this machine's CPU cores: today's settings against the new ones, same run.

    python benchmarks/study_wall.py            # LeNet on a Fashion-MNIST subset, 2 widths (a few minutes)

Both sides train the same small study (`--samples` configurations x widths 0.5 and 1 x 2 seeds)
from scratch, the way `flows.train_sweep` does without Prefect: stacked groups on a process pool of
one worker per core (cores divided among the workers), in the planner's order.
  today  one group per width (the planner before issue 14: kinds cut by `stack_size`, halved until
         every slot has one) and `train_metrics: exact` (a second pass over the training subset
         after every epoch).
  new    `placement.plan_groups` (estimated cost, largest first, more groups than workers) and
         `train_metrics: epoch` (training metrics from the epoch's minibatches).
Both use today's evaluation code, so the ratio leaves out what the evaluation pass itself gained.
The sides alternate, best of `--repeats`; the ratio is today's wall time over the new one. The
busy fraction is the workers' summed task time over (cores x wall): 1 minus it is the idle-core
fraction. Prints the comparison; with --write, also writes benchmarks/results/study_wall.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._output import add_write_argument, save  # noqa: E402
from pipeline_lib.placement import available_cores, plan_groups, plan_placement  # noqa: E402
from pipeline_lib.spec import RunConfig, Study, expand_runs  # noqa: E402


def todays_groups(configs: list[RunConfig], stack_size: int, slots: int) -> list[list[RunConfig]]:
    """The planner before issue 14, kept here as the baseline."""
    kinds: dict[tuple, list[RunConfig]] = {}
    for config in configs:
        kinds.setdefault((config.group_key, config.dataset), []).append(config)
    groups = []
    for runs in kinds.values():
        pieces = math.ceil(len(runs) / stack_size)
        groups += [runs[i * len(runs) // pieces:(i + 1) * len(runs) // pieces] for i in range(pieces)]
    while len(groups) < slots and max((len(g) for g in groups), default=1) > 1:
        largest = max(range(len(groups)), key=lambda i: len(groups[i]))
        runs = groups.pop(largest)
        groups[largest:largest] = [runs[:len(runs) // 2], runs[len(runs) // 2:]]
    return groups


def _start_worker(threads: int, dataset: dict) -> None:
    """Pool initializer: the worker's share of the cores, and the dataset decoded before the clock starts."""
    import torch

    from pipeline_lib.datasets import load_dataset
    from pipeline_lib.stacked import train_group  # noqa: F401 - imported before the clock starts

    torch.set_num_threads(threads)
    load_dataset(dataset["name"], None, dataset["subset"], dataset["test_subset"])


def _ready() -> None:
    time.sleep(0.5)  # holds its worker, so each of these starts one


def _train_unit(configs: list[RunConfig], data_dir: str) -> dict:
    """One task as `tasks.training.train_group_task` runs it, with its start and end time."""
    from pipeline_lib.datasets import load_dataset
    from pipeline_lib.stacked import train_group

    start = time.time()
    first = configs[0].dataset
    data = load_dataset(first.name, first.root, first.subset, first.test_subset)
    timings = train_group(configs, data, data_dir).timings
    return {"start": start, "end": time.time(), "runs": len(configs), "train_s": timings.train_seconds,
            "eval_s": timings.eval_seconds, "lanes": timings.lane_widths}


def train_study(units: list[list[RunConfig]], cores: int, slots: int) -> dict:
    """Train every unit on a fresh pool, as the flow does: min(slots, units) workers, cores shared."""
    workers = min(slots, len(units))
    threads = max(1, cores // workers)
    dataset = units[0][0].dataset.model_dump()
    with tempfile.TemporaryDirectory() as data_dir, \
            ProcessPoolExecutor(workers, get_context("spawn"), _start_worker, (threads, dataset)) as pool:
        for ready in [pool.submit(_ready) for _ in range(workers)]:
            ready.result()  # every worker started: the wall clock times training only
        start = time.time()
        tasks = [pool.submit(_train_unit, unit, data_dir) for unit in units]
        done = [t.result() for t in tasks]
        wall = time.time() - start
    busy = sum(d["end"] - max(d["start"], start) for d in done)
    return {"wall_s": wall, "busy_fraction": busy / (cores * wall), "workers": workers, "threads": threads,
            "groups": [d["runs"] for d in done], "train_s": sum(d["train_s"] for d in done),
            "eval_s": sum(d["eval_s"] for d in done), "finish_s": sorted(round(d["end"] - start, 1) for d in done)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12, help="configurations (runs = samples x 2 widths x 2 seeds)")
    parser.add_argument("--subset", type=int, default=800, help="training images")
    parser.add_argument("--test-subset", type=int, default=800, help="test images")
    parser.add_argument("--epochs", type=int, default=8, help="8, as in the study issue 14 timed")
    parser.add_argument("--repeats", type=int, default=2)
    add_write_argument(parser)
    args = parser.parse_args()

    study = {"name": "study-wall", "architectures": ["lenet"], "widths": [0.5, 1.0], "seeds": [0, 1],
             "epochs": args.epochs, "samples": args.samples, "execution": {"device": "cpu"},
             "dataset": {"name": "fashion_mnist", "subset": args.subset, "test_subset": args.test_subset},
             "sweep": {"lr": {"log_uniform": [0.003, 0.1]}, "batch_size": [128]},
             "predict": {"k_epochs": [1]}}
    cores, slots = available_cores(), plan_placement("cpu").concurrency
    sides = {
        "today": todays_groups(expand_runs(Study.model_validate({**study, "train_metrics": "exact"})), 64, slots),
        "new": plan_groups(expand_runs(Study.model_validate({**study, "train_metrics": "epoch"})), 64, slots),
    }
    runs = sum(len(g) for g in sides["new"])
    print(f"{runs} LeNet runs, Fashion-MNIST {args.subset} train / {args.test_subset} test images, {args.epochs} "
          f"epochs, {cores} cores; groups today {[len(g) for g in sides['today']]}, "
          f"new {[len(g) for g in sides['new']]}; load average {os.getloadavg()[0]:.1f}", flush=True)
    trials: dict[str, list[dict]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name, units in sides.items():
            trial = train_study(units, cores, slots)
            trials[name].append(trial)
            print(f"  {repeat + 1}/{args.repeats} {name:5s} wall {trial['wall_s']:7.1f} s  busy "
                  f"{trial['busy_fraction']:.3f}  train {trial['train_s']:6.1f} s  eval {trial['eval_s']:6.1f} s  "
                  f"groups finish at {trial['finish_s']}", flush=True)
    best = {name: min(t, key=lambda t: t["wall_s"]) for name, t in trials.items()}
    ratio = best["today"]["wall_s"] / best["new"]["wall_s"]
    idle = {name: 1 - b["busy_fraction"] for name, b in best.items()}
    print(f"training stage: new is {ratio:.2f}x faster than today (best of {args.repeats}); idle-core fraction "
          f"today {idle['today']:.3f}, new {idle['new']:.3f}")

    results = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
               "cores": cores, "load_average_1m_end": os.getloadavg()[0], "args": {k: v for k, v in vars(args).items() if k != "write"}, "runs": runs,
               "ratio_today_over_new": ratio, "idle_core_fraction": idle, "best": best, "trials": trials}
    table = (
        f"# Study wall time ({results['measured_at']}, {cores} cores, load average {results['load_average_1m_end']:.1f}"
        f" at the end)\n\n`python benchmarks/study_wall.py {' '.join(a for a in sys.argv[1:] if not a.startswith('--write'))}`: {runs} LeNet runs, "
        f"{args.epochs} epochs, Fashion-MNIST {args.subset}/{args.test_subset} images, best of {args.repeats}, "
        "sides alternating.\n\n| side | groups | wall s | train s | eval s | idle-core fraction |\n|---|---|---|---|---|---|\n"
        + "".join(f"| {n} | {b['groups']} | {b['wall_s']:.1f} | {b['train_s']:.1f} | {b['eval_s']:.1f} | "
                  f"{idle[n]:.3f} |\n" for n, b in best.items())
        + f"\nNew settings: **{ratio:.2f}x** today's speed.\n")
    save(args.write, {"study_wall.json": lambda p: p.write_text(json.dumps(results, indent=2) + "\n"),
                      "study_wall.md": lambda p: p.write_text(table)})


if __name__ == "__main__":
    main()
