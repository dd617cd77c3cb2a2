# Quick start: `make demo` runs a local 5-node cluster, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=

.PHONY: demo test soak bench docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.package: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.package requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.package
	$(BIN)/python -m flask_clustershazbot.demo $(DEMO_ARGS)

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The long soaks: 5 minutes of crashes, restarts and a partition, 10 nodes in one process,
# then 6 nodes in processes of their own; then the fault tests of a truthful view held for
# a full minute each (a third of it in `make test`); prints their figures.
soak: $(VENV)/.dev
	SHAZBOT_SOAK=1 $(BIN)/python -m pytest -q -s -m soak tests/test_soak.py tests/test_process_soak.py $(PYTEST_ARGS)
	SHAZBOT_SOAK=1 $(BIN)/python -m pytest -q -s tests/test_truthful_faults.py $(PYTEST_ARGS)

$(VENV)/.bench: $(VENV)/.package requirements-bench.txt
	$(BIN)/python -m pip install -q -r requirements-bench.txt
	touch $@

# Every benchmark with small defaults (a few minutes); `BENCH_ARGS=merge` runs one.
# The big runs and the latest figures: docs/performance.md.
bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

$(VENV)/.docs: $(VENV)/.package requirements-docs.txt
	$(BIN)/python -m pip install -q -r requirements-docs.txt
	touch $@

# The Sphinx site into docs/_build/html; warnings are errors, and -E rereads every page
# so that a page unchanged since the last build still reports them.
docs: $(VENV)/.docs
	$(BIN)/python -m sphinx -E -W --keep-going -b html docs docs/_build/html

$(VENV)/.lint: $(VENV)/.dev
	$(BIN)/python -m pip install -q ruff==0.17.6 mypy==2.4.1 types-requests  # pinned: a new release may format or judge differently
	touch $@

# ruff (lint and format, ruff.toml) on the package, the tests and the benchmarks; mypy strict
# (mypy.ini) on the package, where every seam implementation is checked against its protocol,
# then on the tests (and the benchmark modules they import).
lint: $(VENV)/.lint
	$(BIN)/python -m ruff check flask_clustershazbot tests benchmarks
	$(BIN)/python -m ruff format --check flask_clustershazbot tests benchmarks
	$(BIN)/python -m mypy flask_clustershazbot
	$(BIN)/python -m mypy tests

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis docs/_build
