"""The flows' command lines as a user meets them: --help at once, a mistyped --warehouse directory
refused, and a stage run before its inputs exist saying what to run first (exit 2, no traceback)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows._cli import CommandLineError, check_warehouse, command_parser, run_cli, run_warehouse_stage
from tests.conftest import write_spec
from warehouse.db import Warehouse

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(p.stem for p in (ROOT / "flows").glob("*.py") if 'if __name__ == "__main__":' in p.read_text())

# The command run as `python -m`, then what it imported: --help must not have needed Prefect or torch.
HELP = """
import runpy, sys
sys.argv = ["{module}", "--help"]
try:
    runpy.run_module("{module}", run_name="__main__", alter_sys=True)
except SystemExit as e:
    print("exit", e.code)
print("heavy:", sorted({{m.split(".")[0] for m in sys.modules}} & {{"prefect", "torch", "sklearn", "graph_tool"}}))
"""


def test_every_command_is_found():
    assert {"study", "train_sweep", "graph_metrics", "features", "evaluate", "width_transfer", "register", "report",
            "score"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_answers_before_the_heavy_imports(command):
    done = subprocess.run([sys.executable, "-c", HELP.format(module=f"flows.{command}")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m flows.{command}" in done.stdout
    # the corpus command reads folders, the Optuna replay a storage
    assert {"corpus": "--corpus-specs", "replay_optuna": "--storage"}.get(command, "--spec") in done.stdout
    assert "exit 0" in done.stdout
    assert "heavy: []" in done.stdout, done.stdout[-300:]


def test_a_usage_error_also_answers_early(tmp_path):
    done = subprocess.run([sys.executable, "-m", "flows.score", "--spec", "x.yaml"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "--at-epoch" in done.stderr and "Traceback" not in done.stderr


def test_a_mistyped_warehouse_directory_is_refused(tmp_path):
    """Before anything trains or any file is written; the message names the directory."""
    spec = write_spec(tmp_path)
    typo = tmp_path / "wharehouse" / "w.duckdb"
    done = subprocess.run([sys.executable, "-m", "flows.train_sweep", "--spec", str(spec), "--warehouse", str(typo)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"directory {typo.parent} does not exist" in done.stderr and "--create-warehouse" in done.stderr
    assert "Traceback" not in done.stderr
    assert not typo.parent.exists()


def test_create_warehouse_lets_a_new_directory_through(tmp_path):
    new = tmp_path / "new" / "w.duckdb"
    args = command_parser("study", "d").parse_args(["--spec", "s.yaml", "--warehouse", str(new)])
    with pytest.raises(CommandLineError, match="does not exist"):
        check_warehouse("study", args, "tiny")
    check_warehouse("study", command_parser("study", "d").parse_args(
        ["--spec", "s.yaml", "--warehouse", str(new), "--create-warehouse"]), "tiny")
    assert not new.parent.exists()  # the check itself creates nothing; the flow's first write does
    with pytest.raises(SystemExit):  # only the commands that may start a warehouse take the flag
        command_parser("evaluate", "d").parse_args(["--spec", "s.yaml", "--create-warehouse"])


def test_the_default_warehouse_directory_exists():
    args = command_parser("study", "d").parse_args(["--spec", "s.yaml"])
    assert Path(args.warehouse).parent == ROOT / "warehouse"
    check_warehouse("study", args, "tiny")


@pytest.mark.parametrize("command, argv", [("evaluate", []), ("report", []), ("graph_metrics", [])])
def test_a_stage_on_an_empty_warehouse_says_what_to_run_first(tmp_path, monkeypatch, capsys, command, argv):
    spec = write_spec(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    wh.migrate()
    monkeypatch.setattr(sys, "argv", [command, "--spec", str(spec), "--warehouse", str(wh.path), *argv])
    module = __import__(f"flows.{command}", fromlist=["main"])
    with pytest.raises(SystemExit) as exit_:
        if hasattr(module, "main"):
            run_cli(module.main)
        else:
            run_warehouse_stage(getattr(module, command), module.__spec__.name, module.__doc__)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert re.search(rf"has no runs of study tiny yet; run \S+ -m flows.train_sweep --spec {spec} --warehouse {wh.path}",
                     err), err


def test_evaluate_before_features_names_the_features_stage(tmp_path):
    spec = write_spec(tmp_path)
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.writer() as con:  # a study with a run but no features yet
        con.execute("""INSERT INTO runs BY NAME SELECT 'tiny' AS study, 'r' AS run_id, 'c' AS config_id,
                       'lenet' AS architecture, 1.0 AS width, 1 AS depth, 'digits' AS dataset, 0.1 AS lr, 0.0 AS dropout,
                       0.0 AS weight_decay, 'sgd' AS optimizer, 64 AS batch_size, 0 AS seed, 3 AS epochs,
                       'completed' AS status, 3 AS epochs_done, now() AS updated_at""")
    args = command_parser("evaluate", "d").parse_args(["--spec", str(spec), "--warehouse", str(wh.path)])
    with pytest.raises(CommandLineError, match="has no features of study tiny yet; run .* flows.features"):
        check_warehouse("evaluate", args, "tiny")
    with pytest.raises(CommandLineError, match=f"{wh.path.parent / 'missing.duckdb'} does not exist"):
        check_warehouse("evaluate", command_parser("evaluate", "d").parse_args(
            ["--spec", str(spec), "--warehouse", str(wh.path.parent / "missing.duckdb")]), "tiny")


def test_score_on_a_missing_warehouse_is_refused_without_creating_it(tmp_path, monkeypatch, capsys):
    from flows.score import main

    spec, missing = write_spec(tmp_path), tmp_path / "w.duckdb"
    monkeypatch.setattr(sys, "argv", ["score", "--spec", str(spec), "--warehouse", str(missing), "--at-epoch", "1"])
    with pytest.raises(SystemExit) as exit_:
        run_cli(main)
    assert exit_.value.code == 2 and f"warehouse {missing} does not exist" in capsys.readouterr().err
    assert not missing.exists()
