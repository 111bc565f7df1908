"""Loading studies, runs, epoch metrics and the snapshot index into the warehouse."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timezone

import polars as pl
from pydantic import ValidationError

from pipeline_lib.run_state import RunResult
from pipeline_lib.spec import RunConfig, Study
from pipeline_lib.stacked import GroupTimings
from pipeline_lib.vocabulary import RunStatus

from .db import Warehouse, replace_where, upsert


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def record_study(wh: Warehouse, study: Study) -> None:
    frame = pl.DataFrame([{"study": study.name, "spec_json": study.model_dump_json(), "data_dir": str(wh.data_dir),
                           "updated_at": _now()}])
    with wh.writer() as con:
        upsert(con, "studies", frame)


def recorded_study(wh: Warehouse, study: str) -> Study | None:
    """The spec a study was last run with, as `studies` records it (None: not recorded here, or no
    longer a valid spec)."""
    rows = wh.query("SELECT spec_json FROM studies WHERE study = ?", [study])
    try:
        return Study.model_validate_json(rows["spec_json"][0]) if rows.height else None
    except ValidationError:
        return None


def _run_row(study: str, config: RunConfig, result: RunResult | None, error: str | None) -> dict:
    row = {
        "study": study, "run_id": config.run_id, "config_id": config.config_id,
        "architecture": config.architecture, "width": config.width, "depth": config.depth,
        "dataset": config.dataset.name, "dataset_subset": config.dataset.subset, "lr": config.lr,
        "dropout": config.dropout, "weight_decay": config.weight_decay, "optimizer": config.optimizer,
        "batch_size": config.batch_size, "seed": config.seed, "epochs": config.epochs,
        "lr_schedule": config.lr_schedule.label, "label_noise": config.label_noise,
        "status": RunStatus.FAILED.value if error else RunStatus.PENDING.value, "epochs_done": 0, "diverged_epoch": None,
        "final_test_acc": None, "train_seconds": None, "device": None, "error": error, "updated_at": _now(),
    }
    if result is not None:
        row.update(status=result.status, epochs_done=result.epochs_done, diverged_epoch=result.diverged_epoch,
                   final_test_acc=result.final_test_acc if result.status == RunStatus.COMPLETED else None,
                   train_seconds=result.train_seconds, device=result.device)
    return row


RUN_SCHEMA = {"dataset_subset": pl.Int64, "diverged_epoch": pl.Int64, "final_test_acc": pl.Float64,
              "train_seconds": pl.Float64, "device": pl.Utf8, "error": pl.Utf8}


def record_runs(wh: Warehouse, study: str, configs: list[RunConfig], results: dict[str, RunResult],
                errors: dict[str, str] | None = None) -> None:
    """Upsert the runs of a study with whatever results exist; reload their metrics and snapshots.

    A snapshot written again (a run trained again, after a damaged file) has a new `written_id`: the
    graphs of the snapshots it replaces and every feature row of its run are dropped with it, so the
    stages after training compute them again."""
    errors = errors or {}
    rows = [_run_row(study, c, results.get(c.run_id), errors.get(c.run_id)) for c in configs]
    runs = pl.DataFrame(rows, schema_overrides=RUN_SCHEMA, infer_schema_length=None)
    metrics = pl.DataFrame(
        [{"run_id": r.run_id, **asdict(m)} for r in results.values() for m in r.metrics],
        schema={"run_id": pl.Utf8, "epoch": pl.Int64, "train_loss": pl.Float64, "train_acc": pl.Float64,
                "test_loss": pl.Float64, "test_acc": pl.Float64, "seconds": pl.Float64},
    )
    snaps = pl.DataFrame(
        [{"run_id": s.run_id, "epoch": s.epoch, "path": str(s.path), "bytes": s.bytes, "n_params": s.n_params,
          "written_id": s.written_id} for r in results.values() for s in r.snapshots],
        schema={"run_id": pl.Utf8, "epoch": pl.Int64, "path": pl.Utf8, "bytes": pl.Int64, "n_params": pl.Int64,
                "written_id": pl.Utf8},
    )
    ids = list(results)
    with wh.writer() as con:
        upsert(con, "runs", runs)
        if ids:
            _drop_what_was_made_from_rewritten(con, snaps)
            replace_where(con, "epoch_metrics", metrics, "run_id IN (SELECT unnest(?))", [ids])
            replace_where(con, "snapshots", snaps, "run_id IN (SELECT unnest(?))", [ids])


def _drop_what_was_made_from_rewritten(con, snaps: pl.DataFrame) -> None:
    """Delete the graphs (and their summaries) of stored snapshots that `snaps` replaces with other
    files, and the features of their runs. A stored snapshot without an id is never taken as changed."""
    con.register("new_snapshots", snaps.to_arrow())
    try:
        con.execute("""CREATE OR REPLACE TEMP TABLE rewritten AS
                       SELECT s.run_id, s.epoch FROM snapshots s JOIN new_snapshots n USING (run_id, epoch)
                       WHERE s.written_id IS NOT NULL AND s.written_id IS DISTINCT FROM n.written_id""")
    finally:
        con.unregister("new_snapshots")
    for table in ("graphs", "graph_summaries"):
        con.execute(f"DELETE FROM {table} WHERE run_id || '/' || CAST(epoch AS VARCHAR) IN "
                    "(SELECT run_id || '/' || CAST(epoch AS VARCHAR) FROM rewritten)")
    con.execute("DELETE FROM features WHERE run_id IN (SELECT run_id FROM rewritten)")
    con.execute("DROP TABLE rewritten")


def record_training_groups(wh: Warehouse, study: str, groups: list[tuple[list[str], GroupTimings]],
                           options: dict) -> None:
    """Upsert one row per stacked group with its timings."""
    rows = [{"study": study, "group_id": hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:16],
             "run_ids": ids, **{k: v for k, v in asdict(t).items() if k != "runs"},
             "options_json": json.dumps(options), "updated_at": _now()} for ids, t in groups]
    frame = pl.DataFrame(rows, schema_overrides={"run_ids": pl.List(pl.Utf8), "lane_widths": pl.List(pl.Int32),
                                                 "gpu_utilization": pl.Float64, "max_memory_mb": pl.Float64},
                         infer_schema_length=None)
    with wh.writer() as con:
        upsert(con, "training_groups", frame)
