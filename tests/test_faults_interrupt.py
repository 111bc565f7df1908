"""Ctrl-C mid-training (issue 13): the command line stops within seconds with every process of it
gone, says how to resume, and the resumed study matches an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from flows.train_sweep import train_sweep
from pipeline_lib.run_state import RunStore
from pipeline_lib.vocabulary import ENDED
from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# a subset large enough that training lasts seconds after its first epoch, so the interrupt lands in it
SPEC = {"epochs": 12, "widths": [0.5], "seeds": [0], "samples": 2, "dataset": {"name": "digits", "subset": 1500},
        "predict": {"k_epochs": [1], "n_folds": 2}, "width_transfer": {}}


def _sweep(spec: Path, warehouse: Path, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own temporary server, as a user's
    return subprocess.Popen([sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse",
                             str(warehouse)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _stops_on_ctrl_c(command: subprocess.Popen, ctrl_c: Callable[[], None], within: float) -> None:
    """After `ctrl_c()` the command ends within `within` seconds, status 130, saying how to resume."""
    ctrl_c()
    sent = time.monotonic()
    _, err = command.communicate(timeout=60)
    assert time.monotonic() - sent < within
    assert command.returncode == 130, err
    assert "run the same command again to resume" in err


def _metrics(warehouse: Path):
    return Warehouse(warehouse).query("SELECT run_id, epoch, train_loss, train_acc, test_loss, test_acc "
                                      "FROM epoch_metrics ORDER BY run_id, epoch")


def test_ctrl_c_mid_training_stops_promptly_and_the_rerun_matches(tmp_path, prefect_harness):
    spec = write_spec(tmp_path, **SPEC)
    interrupted = tmp_path / "interrupted.duckdb"
    # its own process group, like a command in a terminal: Ctrl-C signals the whole group
    # (the flow, its pool workers and its temporary Prefect server), and only this test's processes
    flow = _sweep(spec, interrupted, start_new_session=True)
    states = interrupted.parent / "data" / interrupted.stem / "runs"
    deadline = time.monotonic() + 300
    while not any(states.glob("*/state.pt")) and flow.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # training has begun: epoch 0 saved
    assert flow.poll() is None, flow.communicate()
    _stops_on_ctrl_c(flow, lambda: os.killpg(flow.pid, signal.SIGINT), within=30)
    gone = time.monotonic() + 10
    while _group_alive(flow.pid) and time.monotonic() < gone:
        time.sleep(0.2)
    if _group_alive(flow.pid):  # nothing of it may stay behind
        left = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(flow.pid)], capture_output=True, text=True).stdout
        os.killpg(flow.pid, signal.SIGKILL)
        pytest.fail(f"processes of the interrupted command stayed alive:\n{left}")
    saved = [RunStore(states.parent, run.name).load() for run in states.iterdir()]
    assert any(state is None or state.status not in ENDED for state in saved), "the interrupt came after training"

    # the same command again; meanwhile the same flow, uninterrupted, in this process (on the
    # session's Prefect server: the command line around it is what the interrupted run tests)
    resumed = _sweep(spec, interrupted)
    reference = tmp_path / "reference.duckdb"
    assert train_sweep(str(spec), str(reference)) == {"completed": 2}
    assert resumed.wait(timeout=600) == 0, resumed.communicate()
    assert _metrics(interrupted).height == 2 * 13
    assert _metrics(interrupted).equals(_metrics(reference))


BLOCKED_MAIN_THREAD = """
import signal, time
from flows._cli import run_cli

def main():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # the kernel must deliver it to another thread
    print("ready", flush=True)
    time.sleep(120)  # a blocking call the main thread never returns from in time

run_cli(main)
"""


def test_ctrl_c_stops_while_the_main_thread_is_blocked_and_another_thread_takes_the_signal():
    """The kernel may hand the terminal's SIGINT to any thread; a Python handler runs only in the
    main thread, once it runs bytecode again. Before the fix this waited out the blocking call."""
    command = subprocess.Popen([sys.executable, "-c", BLOCKED_MAIN_THREAD], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert command.stdout.readline() == "ready\n"
    _stops_on_ctrl_c(command, lambda: os.kill(command.pid, signal.SIGINT), within=10)
