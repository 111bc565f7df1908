"""The commands whose work takes seconds, run in this process when no Prefect server is configured.

score, report, register and replay (of a stored study) read the warehouse and fit or score for a few
seconds; under Prefect each would first start a temporary server (20-40 s on two cores) that ends
with the command, and its runs would be seen by no UI. So when no server is configured they run
their stage on the in-process orchestration (`stages.local`), without importing Prefect, with the
same checks, messages and exit statuses. With a server configured (PREFECT_API_URL, as
scripts/server.sh and the README set it) they run as flows, and show in its UI.

The commands that train, compute graphs or evaluate (study, train_sweep, graph_metrics, features,
evaluate, width_transfer) always run as flows: their work takes minutes and fans out to process pools
whose task runs the UI follows, so a temporary server is worth its start.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from pathlib import Path
from typing import Callable

QUICK = {"score", "report", "register", "replay"}


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def server_configured(cwd: Path | None = None) -> bool:
    """Whether Prefect would talk to a server rather than start a temporary one: PREFECT_API_URL in the
    environment, `[api] url` in ./prefect.toml, or PREFECT_API_URL in the active profile of
    $PREFECT_HOME/profiles.toml (the settings sources Prefect reads, without importing Prefect)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    cwd = cwd or Path.cwd()
    local = _toml(cwd / "prefect.toml")
    if local.get("api", {}).get("url"):
        return True
    home = Path(os.environ.get("PREFECT_HOME") or local.get("home") or "~/.prefect").expanduser()
    profiles = _toml(Path(os.environ.get("PREFECT_PROFILES_PATH") or (cwd / home if not home.is_absolute() else home)
                          / "profiles.toml"))
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    return bool(active and profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL"))


def log_to_terminal() -> None:
    """The stages' log lines in the terminal, as Prefect shows a flow's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d | %(levelname)-7s | %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("stages")
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)


def _score(args: argparse.Namespace) -> None:
    from pipeline_lib.spec import load_study
    from stages import score
    from stages.local import local_context

    from ._cli import check_warehouse

    check_warehouse("score", args, load_study(args.spec).name)
    with local_context(args.spec, args.warehouse) as ctx:
        plan = score.plan_scoring(ctx.warehouse, ctx.study.name, args.predictor, args.at_epoch)
        score.study_differences(ctx, plan.source)
        score.run(ctx, predictor=args.predictor, at_epoch=args.at_epoch, confidence=args.confidence)


def _warehouse_stage(command: str, cross_validates: bool = False) -> Callable[[argparse.Namespace], None]:
    def main(args: argparse.Namespace) -> None:
        import importlib

        from stages.local import local_context

        from ._cli import check_warehouse, load_runnable_study

        study = load_runnable_study(args.spec, cross_validates=cross_validates)
        check_warehouse(command, args, study.name)
        stage = importlib.import_module(f"stages.{command}")
        with local_context(args.spec, args.warehouse) as ctx:
            stage.run(ctx)

    return main


def _replay(args: argparse.Namespace) -> None:
    from pipeline_lib.spec import load_study
    from stages import replay
    from stages.local import local_context
    from warehouse.replays import ReplayError

    from ._cli import check_warehouse

    if args.workers < 1 or args.orders < 0:
        raise ReplayError("--workers must be >= 1 and --orders >= 0")
    check_warehouse("replay", args, load_study(args.spec).name)
    with local_context(args.spec, args.warehouse) as ctx:
        replay.run(ctx, workers=args.workers, random_orders=args.orders)


def _user_errors(command: str) -> tuple[type[Exception], ...]:
    if command == "score":
        from pipeline_lib.corpus import CorpusStale
        from pipeline_lib.decisions.registry import RegistryError
        from pipeline_lib.decisions.scoring import ScoringError

        return ScoringError, RegistryError, CorpusStale
    if command == "replay":
        from warehouse.replays import ReplayError

        return (ReplayError,)
    return ()


COMMANDS = {"score": _score, "report": _warehouse_stage("report"),
            "register": _warehouse_stage("register", cross_validates=True), "replay": _replay}


def run_in_process(command: str, args: argparse.Namespace) -> None:
    """Run a quick command on the in-process orchestration and exit as its flow would (`run_cli`)."""
    from ._cli import run_cli

    log_to_terminal()
    run_cli(lambda: COMMANDS[command](args), user_errors=_user_errors(command))
    sys.exit(0)
