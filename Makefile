# ClinFuse: `make demo` runs the whole job on the embedded demo cohort and serves the dashboard; `make test` runs
# the suite.
# Both create/update .venv first; a second run reinstalls nothing (the stamp tracks pyproject.toml).

SHELL := /bin/bash
VENV ?= .venv
DEMO_DIR ?= data/demo
DEMO_PATIENTS ?= 2000
DEMO_SEED ?= 7
DEMO_MODEL ?= clinfuse-demo
DEMO_PORT ?= 8501
STAMP := $(VENV)/.clinfuse-installed
# The browser test drives Debian's chromium through Playwright (no browser download at run time).
CHROMIUM ?= /usr/bin/chromium

# Python 3.12 from PATH, else the newest under pyenv's versions folder. Each candidate is run, because a
# pyenv shim exists on PATH even when it cannot start that version.
PYTHON ?= $(shell for c in python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -1); do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo "$$c"; break; }; done)

.PHONY: setup browser demo test lint clean-data

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: Python 3.12 not found on PATH nor under ~/.pyenv/versions; install it (e.g. 'pyenv install 3.12') or run 'make PYTHON=/path/to/python3.12'" >&2; exit 1; fi
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/clinfuse demo-data --out $(DEMO_DIR)/cohort --patients $(DEMO_PATIENTS) --seed $(DEMO_SEED)
	$(VENV)/bin/clinfuse ingest --config $(DEMO_DIR)/cohort/cohort.yaml --out $(DEMO_DIR)/cache
	$(VENV)/bin/clinfuse train --cache $(DEMO_DIR)/cache --out $(DEMO_DIR)/run
	$(VENV)/bin/clinfuse evaluate $(DEMO_DIR)/run
	$(VENV)/bin/clinfuse models register $(DEMO_DIR)/run --name $(DEMO_MODEL) --alias production
	$(VENV)/bin/clinfuse score --model models:/$(DEMO_MODEL)@production --config $(DEMO_DIR)/cohort/cohort.yaml \
		--out $(DEMO_DIR)/scores.parquet --explain --workers 2
	$(VENV)/bin/clinfuse users demo
	@echo "Dashboard on http://localhost:$(DEMO_PORT) (log in with a user above; Ctrl-C stops it)"
	$(VENV)/bin/clinfuse dashboard --scores $(DEMO_DIR)/scores.parquet --port $(DEMO_PORT)

# Installs Debian's chromium when missing (needs root, as in CI); otherwise says how.
browser:
	@test -x $(CHROMIUM) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
		else echo "error: $(CHROMIUM) not found; install Debian's chromium ('sudo apt-get install chromium') or set CHROMIUM=/path/to/chromium" >&2; exit 1; fi; }

test: setup browser
	CLINFUSE_CHROMIUM=$(CHROMIUM) $(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check platform models pipelines dashboards tests

clean-data:
	rm -rf data runs
