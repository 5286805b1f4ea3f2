# make run    the trigger-word pipeline, end to end, on the embedded defaults
# make test   the test suite
# make bench  benchmarks (print figures)
# eval "$(make -s team-up)" / make team-down   the team services on this machine (pipelines/team.py)
# Each bootstraps .venv on first use: no manual step.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: run test bench venv clean-venv postgres team-up team-down

$(STAMP): pyproject.toml
	@echo "bootstrapping $(VENV) (first run only, about a minute)"
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (torch 2.13.0 CPU wheel)"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || (tail -20 $(VENV)/install.log; exit 1)
	@$(BIN)/python -m pip install --quiet -e '.[dev]' >> $(VENV)/install.log 2>&1 || (grep -v '^WARNING: Location' $(VENV)/install.log | tail -20; exit 1)
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/cs230 run trigger-word

# 3 workers on 2 cores: many tests wait on servers and subprocesses (tests/conftest.py)
test: $(STAMP) postgres
	$(BIN)/python -m pytest -n 3

# Debian's PostgreSQL server, for `cs230 team up` and tests/test_team.py (a clean CI machine
# gets it here; pipelines/team.py finds it on PATH or under /usr/lib/postgresql)
postgres:
	@command -v postgres >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

team-up: $(STAMP) postgres
	@$(BIN)/cs230 team up

team-down: $(STAMP)
	@$(BIN)/cs230 team down

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean-venv:
	rm -rf $(VENV)
