# Two commands do all the set-up on a fresh machine:  make demo  (the main job)  and  make test.
# Both install what they need (apt packages, the venv, pinned Python packages) and are quick when
# everything is already there.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SPEC ?= specs/digits.yaml
WAREHOUSE ?= warehouse/warehouse.duckdb
TRIAGE_SPEC ?= $(if $(filter specs/digits.yaml,$(SPEC)),specs/digits_triage.yaml)
APT_PACKAGES := python3-graph-tool python3-venv dataset-fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Prefect's settings (home under the project, no telemetry, log levels) are in prefect.toml, which
# Prefect reads from the working directory: `.venv/bin/python -m flows.<name>` run from here behaves
# the same as these targets.

.PHONY: setup demo test test-fast bench corpus clean-data server stop

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing apt packages: $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@[ -x $(PY) ] || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The terminal shows a progress bar; per-task state lines stay in the Prefect UI.
demo: export PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL := WARNING
# After the digits study, a triage with predictor auto (TRIAGE_SPEC): a new sweep decided at epochs
# 1 and 3, by the demo study's predictors when its study matches (TRIAGE_SPEC= skips it).
demo: setup
	$(PY) -m flows.study --spec $(SPEC) --warehouse $(WAREHOUSE)
	$(if $(TRIAGE_SPEC),$(PY) -m flows.train_sweep --spec $(TRIAGE_SPEC) --warehouse $(WAREHOUSE))

# One pytest worker per core (pytest-xdist); a test file stays on one worker, so its module fixtures
# (a trained study, a README project) are built once.
PYTEST := $(PY) -m pytest -q -n auto --dist loadfile

test: setup
	$(PYTEST) tests

# The edit loop: every test but the end-to-end ones that start Prefect flows or servers (marked slow).
test-fast: setup
	$(PYTEST) -m "not slow" tests

# The corpus and its predictor (flows/corpus.py): trains what specs/corpus/ and specs/heldout/ add
# (hours on 2 cores; each step skips what is done), exports pipeline_lib/corpus_data/, fits and compares.
corpus: setup
	$(PY) -m flows.corpus

bench: setup
	$(PY) benchmarks/graph_metrics.py --write
	$(PY) benchmarks/train_throughput.py --write
	$(PY) benchmarks/command_wall.py --write

clean-data:
	rm -rf warehouse/warehouse.duckdb* warehouse/data

# A local Prefect server (UI on http://127.0.0.1:4200), the process work pool, every deployment of
# prefect.yaml and a worker; `make stop` stops the worker and the server (scripts/server.sh).
server: setup
	scripts/server.sh start

stop:
	scripts/server.sh stop
