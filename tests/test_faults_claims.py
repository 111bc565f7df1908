"""The same study started twice at once (issue 13): each run is trained by one process only, and
the second says it is waiting."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_spec
from warehouse.db import Warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_a_study_started_twice_trains_each_run_once(tmp_path):
    spec = write_spec(tmp_path, epochs=10, widths=[0.5], seeds=[0], samples=2, width_transfer={},
                      dataset={"name": "digits"}, predict={"k_epochs": [1], "n_folds": 2})
    warehouse = tmp_path / "w.duckdb"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    command = [sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse", str(warehouse)]
    flows = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # at once
    errs = [flow.communicate(timeout=600)[1] for flow in flows]
    assert [flow.returncode for flow in flows] == [0, 0], "".join(errs)
    to_train = [int(re.search(r"2 runs \((\d+) to train\)", err).group(1)) for err in errs]
    assert sorted(to_train) == [0, 2]  # one trained both runs, the other waited and found them finished
    waited = errs[to_train.index(0)]
    assert "is claimed by another process training this study; waiting for it" in waited
    runs = Warehouse(warehouse).query("SELECT status, epochs_done FROM runs")
    assert runs.rows() == [("completed", 10)] * 2
