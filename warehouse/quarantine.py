"""Loading the records of quarantined files (see `pipeline_lib.files.quarantine`) into the warehouse."""
from __future__ import annotations

import polars as pl

from pipeline_lib.files import quarantine_records

from .db import Warehouse, upsert


def record_quarantined(wh: Warehouse) -> int:
    """Upsert a row per file quarantined under the warehouse's data_dir; returns how many there are."""
    records = quarantine_records(wh.data_dir)
    if records:
        frame = pl.DataFrame(records).with_columns(pl.col("quarantined_at").str.to_datetime())
        with wh.writer() as con:
            upsert(con, "quarantined_files", frame)
    return len(records)
