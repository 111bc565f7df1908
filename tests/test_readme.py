"""The README's and docs/'s examples run as written. Every fenced bash or SQL block after a
`<!-- runnable -->` line, in README.md then docs/*.md, runs from a copy of the project root whose
specs/digits.yaml is a tiny digits study: the README's own study command builds
warehouse/warehouse.duckdb, then the other blocks (bash as a script, SQL through `duckdb -readonly`)
and every file of warehouse/queries/ run against it. Prefect gets no settings from the environment
here, only prefect.toml's: the study command starts its own temporary server, as a user's does; the
later flow commands report to the session's test server instead (PREFECT_API_URL, the README's way
of running flows against a server), which saves each of them a server start. Every relative link of
those pages names a file of the repository."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = PAGES[0].read_text()
# In page order: a block may read what an earlier one wrote (configuration_scores after flows.score).
BLOCKS = [block for page in PAGES
          for block in re.findall(r"<!-- runnable -->\n```(bash|sql)\n(.*?)```", page.read_text(), re.S)]
STUDY_COMMAND = ".venv/bin/python -m flows.study --spec specs/digits.yaml --warehouse warehouse/warehouse.duckdb"
QUERIES = sorted((ROOT / "warehouse" / "queries").glob("*.sql"))


def _mirror(root: Path) -> None:
    """The project's entries as links, with warehouse/ and specs/ real folders (linked contents but no
    database) and specs/digits.yaml a tiny study; nothing is written into the checkout."""
    for entry in ROOT.iterdir():
        if entry.name in {".git", ".prefect", "reports", "warehouse", "specs"}:
            continue
        (root / entry.name).symlink_to(entry)
    for folder in ("warehouse", "specs"):
        (root / folder).mkdir()
        for entry in (ROOT / folder).iterdir():
            if not entry.name.startswith("warehouse.duckdb") and entry.name not in {"data", "digits.yaml"}:
                (root / folder / entry.name).symlink_to(entry)
    write_spec(root / "specs", name="digits-demo", epochs=3, samples=3, predict={"k_epochs": [2], "n_folds": 2},
               graphs={"exact_limit": 200, "pivots": 8})
    (root / "specs" / "digits-demo.yaml").rename(root / "specs" / "digits.yaml")


def _run(root: Path, script: str, *, sql: bool = False, api_url: str | None = None,
         timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    command = ([".venv/bin/duckdb", "-readonly", "-bail", "warehouse/warehouse.duckdb"] if sql
               else ["bash", "-euo", "pipefail", "-c", script])
    done = subprocess.run(command, input=script if sql else None, stdin=None if sql else subprocess.DEVNULL,
                          cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and "Error" not in done.stderr, f"{script}\n---\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The mirror with its warehouse built by the README's study command."""
    root = tmp_path_factory.mktemp("project")
    _mirror(root)
    built = _run(root, STUDY_COMMAND)
    assert "Failed to send telemetry" not in built.stdout + built.stderr
    assert (root / ".prefect").is_dir()  # prefect.toml's home: under the project, not ~/.prefect
    assert "| features" in built.stderr and "report: " in built.stderr  # the study's log ends with its table
    return root


@pytest.fixture(scope="module")
def api_url(prefect_harness) -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def test_the_study_command_is_a_runnable_block():
    assert ("bash", STUDY_COMMAND + "\n") in BLOCKS


def test_spec_excerpt_is_the_demo_spec():
    excerpt = re.search(r"<!-- same as specs/digits.yaml -->\n```yaml\n(.*?)```", README, re.S)[1]
    assert yaml.safe_load(excerpt) == yaml.safe_load((ROOT / "specs" / "digits.yaml").read_text())


@pytest.mark.parametrize("language,block", [b for b in BLOCKS if b[1] != STUDY_COMMAND + "\n"],
                         ids=lambda v: v if v in ("bash", "sql") else v.strip().splitlines()[0][:50])
def test_readme_block_runs(project, api_url, language, block):
    done = _run(project, block, sql=language == "sql", api_url=api_url)
    assert (done.stdout + done.stderr).strip()  # every example prints something (flows: their log, on stderr)


@pytest.mark.parametrize("query", QUERIES, ids=lambda p: p.name)
def test_query_file_runs_in_the_duckdb_shell(project, query):
    done = _run(project, f".read {query}\n", sql=True)
    assert done.stdout.strip()
    assert "nan" not in done.stdout.lower().split()  # undefined values show as NULL, never first as NaN


def test_docs_blocks_are_collected():
    docs_blocks = [b for page in PAGES[1:] for b in re.findall(r"<!-- runnable -->\n```(bash|sql)\n", page.read_text())]
    assert len(docs_blocks) >= 2 and len(BLOCKS) > len(docs_blocks)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_name_files_of_the_repository(page):
    """A page may cite only what the repository holds; anchors are checked against the headings."""
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists() and linked.is_relative_to(ROOT), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{page.name}: {target}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but hyphens and underscores dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
