"""A quick command's wall time: in this process (no server configured) against the same command as a
Prefect flow with its temporary server, measured in the same run.

    .venv/bin/python benchmarks/command_wall.py [--spec specs/digits.yaml --warehouse warehouse/warehouse.duckdb]
        [--at-epoch 1] [--repeats 3]

Times `python -m flows.score --predictor best --at-epoch K` end to end (interpreter start, imports,
scoring, writing the scores) both ways, alternating, best of `--repeats`: in-process (what a user
without PREFECT_API_URL gets, `flows._in_process`) and as the `score` flow, which starts a temporary
Prefect server (what every command did before). Without --warehouse it first builds a tiny registered
study in a temporary folder (a minute). Prints the ratio; with --write, writes
benchmarks/results/command_wall.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._output import add_write_argument, save  # noqa: E402

AS_FLOW = "import sys; from flows.score import main; from flows._cli import run_cli; run_cli(main)"


def tiny_registered_study(directory: Path) -> tuple[Path, Path]:
    """A tiny digits study trained, evaluated and registered by the stages on the in-process orchestration."""
    import yaml

    from stages import evaluate, features, graph_metrics, register, train_sweep
    from stages.local import local_context

    spec = directory / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "bench-tiny", "dataset": {"name": "digits", "subset": 400}, "architectures": ["lenet"],
        "widths": [0.5, 1.0], "epochs": 3, "seeds": [0, 1], "samples": 4, "execution": {"device": "cpu"},
        "sweep": {"lr": {"log_uniform": [0.01, 0.1]}, "batch_size": [64]},
        "predict": {"k_epochs": [1], "n_folds": 2}, "graphs": {"exact_limit": 0, "pivots": 8}}))
    warehouse = directory / "w.duckdb"
    with local_context(spec, warehouse) as ctx:
        for stage in (train_sweep, graph_metrics, features, evaluate, register):
            stage.run(ctx)
    return spec, warehouse


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec")
    parser.add_argument("--warehouse")
    parser.add_argument("--at-epoch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    add_write_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.warehouse:
            spec, warehouse = Path(args.spec), Path(args.warehouse)
        else:
            spec, warehouse = tiny_registered_study(Path(scratch))
        score = ["--spec", str(spec), "--warehouse", str(warehouse), "--predictor", "best", "--at-epoch", str(args.at_epoch)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        sides = {"in_process": [sys.executable, "-m", "flows.score", *score],
                 "prefect_flow": [sys.executable, "-c", AS_FLOW, *score]}
        trials: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name, command in sides.items():
                trials[name].append(timed(command, env))
                print(f"  {repeat + 1}/{args.repeats} {name:12s} {trials[name][-1]:6.1f} s", flush=True)
    best = {name: min(t) for name, t in trials.items()}
    ratio = best["prefect_flow"] / best["in_process"]
    print(f"flows.score: in-process {best['in_process']:.1f} s, as a flow with a temporary server "
          f"{best['prefect_flow']:.1f} s: {ratio:.1f}x faster in-process (best of {args.repeats})")
    results = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.node(),
               "cores": os.cpu_count(), "load_average_1m_end": os.getloadavg()[0],
               "warehouse": str(args.warehouse or "tiny registered study"), "best_seconds": best, "trials": trials,
               "ratio_flow_over_in_process": ratio}
    table = (f"# Quick command wall time ({results['measured_at']}, {results['cores']} cores, load average "
             f"{results['load_average_1m_end']:.1f} at the end)\n\n`python benchmarks/command_wall.py "
             f"{' '.join(a for a in sys.argv[1:] if not a.startswith('--write'))}`: `flows.score --predictor best "
             f"--at-epoch {args.at_epoch}` on {results['warehouse']}, best of {args.repeats}, sides alternating.\n\n"
             "| side | wall s |\n|---|---|\n" + "".join(f"| {n} | {s:.1f} |\n" for n, s in best.items())
             + f"\nIn-process: **{ratio:.1f}x** faster.\n")
    save(args.write, {"command_wall.json": lambda p: p.write_text(json.dumps(results, indent=2) + "\n"),
                      "command_wall.md": lambda p: p.write_text(table)})


if __name__ == "__main__":
    main()
