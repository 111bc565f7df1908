"""Shared command-line handling for the flows: --spec/--warehouse and readable errors."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from pipeline_lib.datasets import DatasetUnavailable
from pipeline_lib.placement import DeviceUnavailable
from pipeline_lib.spec import SpecError
from warehouse.db import DEFAULT_PATH

USER_ERRORS = (SpecError, DatasetUnavailable, DeviceUnavailable)


def study_arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="study spec (YAML)")
    parser.add_argument("--warehouse", default=str(DEFAULT_PATH), help="DuckDB file (default: %(default)s)")
    return parser


def run_cli(main: Callable[[], object]) -> None:
    """Run a flow entry point; bad input ends with a readable message and exit status 2, no traceback."""
    try:
        main()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
