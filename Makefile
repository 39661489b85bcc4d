# `make demo` and `make test` set up .venv from requirements.lock on a fresh machine, then run.
# Both are idempotent: the venv is rebuilt only when requirements.lock or pyproject.toml change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.promptsearch-installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint typecheck docs clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/promptsearch run search_spaces/sst2-demo.yaml

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check promptsearch tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check promptsearch tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The reference in docs/ as a site in site/; --strict fails on a broken link or anchor (CI runs it).
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
