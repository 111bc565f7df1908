"""Where a benchmark's result files go: nowhere unless asked. Without --write a run prints its
results only, so trying a benchmark never replaces the measurements committed under
benchmarks/results/ (which docs/benchmarks.md quotes); `--write` replaces them, `--write DIR`
writes elsewhere."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).parent / "results"


def add_write_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", nargs="?", const=RESULTS, type=Path, metavar="DIR",
                        help=f"write the result files to DIR (no DIR: {RESULTS.relative_to(RESULTS.parents[1])}/, "
                             "replacing the committed ones); without --write they are printed only")


def save(directory: Path | None, files: dict[str, Callable[[Path], object]]) -> None:
    """Call each file's writer with its path under `directory`; with None (no --write) write nothing."""
    if directory is None:
        print(f"not written: {', '.join(files)} (pass --write to replace those under benchmarks/results/, "
              "or --write DIR)")
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name, write in files.items():
        write(directory / name)
        print(f"wrote {directory / name}")
