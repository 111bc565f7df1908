"""The README's and docs/'s examples run as written. Every fenced bash or SQL block after a
`<!-- runnable -->` line, in README.md then docs/*.md, runs from a copy of the project root whose
specs/digits.yaml and specs/digits_triage.yaml are the demo's specs made tiny (fewer, smaller runs;
the same names, and the k the README scores and triages at): the README's own study command builds
warehouse/warehouse.duckdb, then the other blocks (bash as a script, SQL through `duckdb -readonly`)
and every file of warehouse/queries/ run against it. A block marked `<!-- runnable: rows -->`
promises rows: each result it prints must have some (as every query file's must). Prefect gets no settings from the environment
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


pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README = PAGES[0].read_text()
# In page order: a block may read what an earlier one wrote (configuration_scores after flows.score).
# (marker, language, text); marker "rows" when the block promises rows.
BLOCKS = [block for page in PAGES
          for block in re.findall(r"<!-- runnable(?:: (rows))? -->\n```(bash|sql)\n(.*?)```", page.read_text(), re.S)]
STUDY_COMMAND = ".venv/bin/python -m flows.study --spec specs/digits.yaml --warehouse warehouse/warehouse.duckdb"
QUERIES = sorted((ROOT / "warehouse" / "queries").glob("*.sql"))
# The epoch the README scores at: one of the demo's k, and the tiny study's only k.
AT_EPOCH = int(re.search(r"flows\.score .*--at-epoch (\d+)", README)[1])
# An empty result as the DuckDB shell (duckbox) and Polars print it.
NO_ROWS = re.compile(r"^\s*0 rows$|^shape: \(0, ", re.M)
# The demo's specs made small: the same study names, dataset, sweep and options; fewer and smaller runs.
TINY = {"dataset": {"name": "digits", "subset": 400}, "widths": [0.5, 1.0], "epochs": AT_EPOCH + 1,
        "execution": {"device": "cpu"}, "graphs": {"exact_limit": 200, "pivots": 8}}
TINY_SPECS = {"digits.yaml": {**TINY, "samples": 3, "predict": {"k_epochs": [AT_EPOCH], "n_folds": 2},
                              "width_transfer": {"train_widths": [0.5], "test_widths": [1.0]}},
              "digits_triage.yaml": {**TINY, "widths": [0.5], "samples": 2, "seeds": [0],
                                     "predict": {"k_epochs": [AT_EPOCH]}}}


def _mirror(root: Path) -> None:
    """The project's entries as links, with warehouse/ and specs/ real folders (linked contents but no
    database) and the demo's specs made tiny (TINY_SPECS); nothing is written into the checkout."""
    for entry in ROOT.iterdir():
        if entry.name in {".git", ".prefect", "reports", "warehouse", "specs"}:
            continue
        (root / entry.name).symlink_to(entry)
    for folder in ("warehouse", "specs"):
        (root / folder).mkdir()
        for entry in (ROOT / folder).iterdir():
            if not entry.name.startswith("warehouse.duckdb") and entry.name not in {"data", *TINY_SPECS}:
                (root / folder / entry.name).symlink_to(entry)
    for name, overrides in TINY_SPECS.items():
        spec = yaml.safe_load((ROOT / "specs" / name).read_text())
        (root / "specs" / name).write_text(yaml.safe_dump({**spec, **overrides}))


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
    assert ("", "bash", STUDY_COMMAND + "\n") in BLOCKS


def test_the_readme_scores_and_triages_at_a_k_the_demo_registers():
    demo, triage = (yaml.safe_load((ROOT / "specs" / name).read_text()) for name in TINY_SPECS)
    assert AT_EPOCH in demo["predict"]["k_epochs"]
    assert AT_EPOCH in triage["triage"]["rungs"]
    assert "rows" in {marker for marker, language, _ in BLOCKS if language == "sql"}


def test_spec_excerpt_is_the_demo_spec():
    excerpt = re.search(r"<!-- same as specs/digits.yaml -->\n```yaml\n(.*?)```", README, re.S)[1]
    assert yaml.safe_load(excerpt) == yaml.safe_load((ROOT / "specs" / "digits.yaml").read_text())


@pytest.mark.parametrize("marker,language,block", [b for b in BLOCKS if b[2] != STUDY_COMMAND + "\n"],
                         ids=lambda v: v if v in ("", "rows", "bash", "sql") else v.strip().splitlines()[0][:50])
def test_readme_block_runs(project, api_url, marker, language, block):
    done = _run(project, block, sql=language == "sql", api_url=api_url)
    assert (done.stdout + done.stderr).strip()  # every example prints something (flows: their log, on stderr)
    if marker == "rows":
        assert not NO_ROWS.search(done.stdout), f"{block}\n---\n{done.stdout[-3000:]}"


@pytest.mark.parametrize("query", QUERIES, ids=lambda p: p.name)
def test_query_file_runs_in_the_duckdb_shell(project, query):
    done = _run(project, f".read {query}\n", sql=True)
    assert done.stdout.strip() and not NO_ROWS.search(done.stdout), done.stdout[-3000:]
    assert "nan" not in done.stdout.lower().split()  # undefined values show as NULL, never first as NaN


def test_docs_blocks_are_collected():
    docs_blocks = [b for page in PAGES[1:] for b in re.findall(r"<!-- runnable(?:: rows)? -->\n```(bash|sql)\n", page.read_text())]
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
