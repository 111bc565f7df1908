"""A non-editable install scores with the shipped corpus predictor: the corpus is package data, so the
installed package finds it without a checkout. The project is built and installed offline into a fresh
venv whose third-party packages are this environment's, added as a plain path in a .pth file: a path
line does not run that folder's .pth files, so the checkout's editable-install finder stays out."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import tomllib
import venv
from datetime import datetime, timezone
from pathlib import Path

import pytest

from stages.score import plan_scoring
from warehouse.db import Warehouse

ROOT = Path(__file__).resolve().parents[2]

# Run by the fresh venv's interpreter: where the project's packages and the corpus come from.
WHERE = """
import json
import flows, pipeline_lib, stages, tasks, warehouse
from pipeline_lib.corpus import corpus_dir
print(json.dumps({"modules": [m.__file__ for m in (flows, pipeline_lib, stages, tasks, warehouse)],
                  "corpus": str(corpus_dir())}))
"""


def source_copy(to: Path) -> Path:
    """What the build reads (pyproject.toml, requirements.txt, the packages it names), so that the build
    leaves no build/ folder in the checkout."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    to.mkdir()
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(ROOT / name, to / name)
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "data", "*.duckdb*"))
    return to


def fresh_venv(path: Path) -> Path:
    """A venv made as `make setup` makes one (Debian's packages for graph-tool), with this environment's
    site-packages as a plain path for the pinned dependencies; returns its site-packages."""
    venv.create(path, system_site_packages=True)
    site_packages = Path(sysconfig.get_path("purelib", "venv", vars={"base": str(path)}))
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return site_packages


@pytest.mark.slow
def test_a_non_editable_install_scores_with_the_corpus_predictor(small_study, tmp_path):
    site_packages = fresh_venv(tmp_path / "venv")
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "RGP_CORPUS_DIR", "PREFECT_API_URL")}
    env |= {"PYTHONNOUSERSITE": "1", "PREFECT_HOME": str(tmp_path / "prefect")}  # no server: scores in process
    elsewhere = tmp_path / "elsewhere"  # the working directory: nothing of the checkout on the path
    elsewhere.mkdir()
    python = tmp_path / "venv" / "bin" / "python"

    def run(*command) -> subprocess.CompletedProcess:
        return subprocess.run([*map(str, command)], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=600)

    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--disable-pip-version-check", source_copy(tmp_path / "src"))
    assert installed.returncode == 0, installed.stderr
    where = run(python, "-c", WHERE)
    assert where.returncode == 0, where.stderr
    where = json.loads(where.stdout)
    assert all(Path(module).is_relative_to(site_packages) for module in where["modules"]), where["modules"]
    assert Path(where["corpus"]) == site_packages / "pipeline_lib" / "corpus_data"

    study = shutil.copytree(small_study.spec.parent, tmp_path / "study")  # scores stay out of the shared study
    warehouse = study / small_study.warehouse.path.name
    started = datetime.now(timezone.utc).replace(tzinfo=None)  # as scored_at is stored
    scored = run(python.parent / "rgp-score", "--spec", study / small_study.spec.name, "--warehouse", warehouse,
                 "--predictor", "corpus", "--at-epoch", 1)
    assert scored.returncode == 0, scored.stderr[-3000:]

    wh = Warehouse(warehouse)
    scores = wh.query("SELECT predictor_id, count(*) AS n FROM scores WHERE study = ? AND scored_at >= ? "
                      "GROUP BY predictor_id", [small_study.study.name, started])
    expected = plan_scoring(wh, small_study.study.name, "corpus", 1).runs.height
    assert expected >= 8 and scores.rows() == [("corpus-k1", expected)]
