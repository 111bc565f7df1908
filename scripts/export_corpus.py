"""Export the corpus studies' warehouses (warehouse/corpus/*.duckdb, from scripts/train_corpus.sh) to
the committed Parquet corpus under corpus/ (pipeline_lib/corpus.py says what it holds; warehouse/corpus.py
reads it).

    .venv/bin/python scripts/export_corpus.py [WAREHOUSE ...] [--log corpus.log] [--out corpus]

Without warehouses named, every warehouse/corpus/*.duckdb.

Refuses a warehouse whose features are not all current (the features stage not run since the
feature code or the graphs changed): the corpus records one feature-code fingerprint. With
--log (the driver's output), each study's wall time per stage is read from its `=== <time> <study>
<stage>` lines and kept in meta.json.
"""
from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.corpus import corpus_dir, write_corpus  # noqa: E402
from warehouse.corpus import StaleFeatures, corpus_tables  # noqa: E402
from warehouse.db import Warehouse  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^=== (\S+) (\S+) (train_sweep|graph_metrics|features)( done)?")


def wall_times(log: Path) -> dict[str, dict[str, float]]:
    """{spec name: {stage: seconds}} from the driver's log (a stage's last start to its done line)."""
    started, out = {}, {}
    for line in log.read_text().splitlines():
        if m := STAGE_LINE.match(line):
            at, name, stage, done = datetime.fromisoformat(m[1].replace("Z", "+00:00")), m[2], m[3], m[4]
            if done and (name, stage) in started:
                out.setdefault(name, {})[stage] = (at - started[(name, stage)]).total_seconds()
            else:
                started[(name, stage)] = at
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouses", nargs="*", help="default: every warehouse/corpus/*.duckdb")
    parser.add_argument("--log", help="the driver's log, for each study's wall time")
    parser.add_argument("--out", default=str(corpus_dir()))
    args = parser.parse_args()
    paths = sorted(Path(p) for p in args.warehouses) or sorted((ROOT / "warehouse" / "corpus").glob("*.duckdb"))
    if not paths:
        raise SystemExit("error: no corpus warehouse; run scripts/train_corpus.sh first")
    times = wall_times(Path(args.log)) if args.log else {}
    parts = []
    for path in paths:
        wh = Warehouse(path)
        for study in wh.query("SELECT study FROM studies ORDER BY study")["study"]:
            try:
                parts.append(corpus_tables(wh, study))
            except StaleFeatures as e:
                raise SystemExit(f"error: {e}") from None
            parts[-1][3]["wall_seconds"] = times.get(path.stem, {})
    studies = [facts for *_, facts in parts]
    write_corpus(args.out, pl.concat([p[0] for p in parts]), pl.concat([p[1] for p in parts]),
                 pl.concat([p[2] for p in parts]), {"studies": studies})
    size = sum(f.stat().st_size for f in Path(args.out).glob("*.parquet"))
    print(f"corpus of {sum(s['runs'] for s in studies)} runs from {len(studies)} studies in {args.out} "
          f"({size / 2**20:.1f} MiB of Parquet)")


if __name__ == "__main__":
    main()
