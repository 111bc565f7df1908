"""The main job: one study from spec to report, as one parent flow.

    python -m flows.study --spec specs/digits.yaml [--warehouse warehouse/warehouse.duckdb]

train_sweep -> graph_metrics -> features -> evaluate -> width_transfer -> report. Every stage
skips what is already done, so a re-run after an interruption (or with more runs in the spec)
does only the missing work. Ends by printing the compact result table and the report's path.
"""
from __future__ import annotations

import polars as pl
from prefect import flow

from pipeline_lib.spec import ExecutionSpec

from ._cli import execution_from_args, load_runnable_study, run_cli, study_arguments
from .evaluate import evaluate
from .features import features
from .graph_metrics import graph_metrics
from .report import report
from .train_sweep import train_sweep
from .width_transfer import width_transfer

TABLE_COLUMNS = {"feature_set": "features", "k": "k", "r2": "R2", "kendall_tau": "tau", "kendall_tau_std": "tau sd",
                 "accuracy": "good acc", "roc_auc": "AUC", "seed_tau": "seed tau"}


def format_summary(rows: list[dict], predictor: str) -> str:
    """The compact table: feature sets x k for the table's predictor, with the seed-agreement tau."""
    frame = pl.DataFrame(rows).select(list(TABLE_COLUMNS)).rename(TABLE_COLUMNS)
    with pl.Config(tbl_formatting="ASCII_MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1, float_precision=3, tbl_width_chars=200):
        return f"grouped cross-validation, predictor {predictor} (mean over folds)\n{frame}"


@flow(name="study", log_prints=True)
def study(spec: str, warehouse: str | None = None, reports_dir: str | None = None,
          execution: ExecutionSpec | None = None) -> dict:
    """Run every stage; returns the stages' results and the report path. `execution` overrides the spec's."""
    results = {
        "train_sweep": train_sweep(spec, warehouse, execution=execution),
        "graph_metrics": graph_metrics(spec, warehouse, execution=execution),
        "features": features(spec, warehouse),
        "evaluate": evaluate(spec, warehouse),
        "width_transfer": width_transfer(spec, warehouse),
    }
    results["report"] = report(spec, warehouse, reports_dir)
    return results


def main() -> None:
    args = study_arguments(__doc__.splitlines()[0]).parse_args()
    checked = load_runnable_study(args.spec, trains=True, cross_validates=True)
    results = study(args.spec, args.warehouse, execution=execution_from_args(args, checked))
    final = results["report"]
    if final["path"]:
        print(format_summary(final["summary"], final["predictor"]))
        print(f"report: {final['path']}")


if __name__ == "__main__":
    run_cli(main)
