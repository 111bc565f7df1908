"""The installed commands (pyproject's [project.scripts]: rgp-study, ...): each runs its flow module
exactly as `python -m flows.<name>` does, its `__main__` block included, so there is one command line
per flow, written once, in its module."""
from __future__ import annotations

import runpy


def _command(name: str):
    def run() -> None:
        runpy.run_module(f"flows.{name}", run_name="__main__", alter_sys=True)
    run.__doc__ = f"`python -m flows.{name}`"
    return run


study = _command("study")
train_sweep = _command("train_sweep")
graph_metrics = _command("graph_metrics")
features = _command("features")
evaluate = _command("evaluate")
width_transfer = _command("width_transfer")
register = _command("register")
report = _command("report")
score = _command("score")
replay = _command("replay")
