# django-azure-pg — every target installs what it needs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: help install test lint types docs unit conformance-slice demo conformance bench soak dist matrix clean

help:
	@echo "make test         ruff, mypy, the test suite (starts its own PostgreSQL + identity emulator)"
	@echo "                  and Django's backends/transactions/dbshell tests through the token path"
	@echo "make docs         the documentation site (mkdocs, strict: a warning fails) into site/"
	@echo "make demo         the sample site end to end on a local PostgreSQL across token rotations"
	@echo "make conformance  Django's own test suite with ENGINE=django_azure_pg (and gis_tests with django_azure_pg.postgis)"
	@echo "make bench        benchmarks (results in bench/results, docs/benchmarks.md)"
	@echo "make soak         reliability scenarios under load (docs/reliability.md)"
	@echo "make dist         sdist + wheel, checked with twine and for their contents"
	@echo "make matrix       nox: tests on Python 3.10-3.13 x Django 4.2/5.2/6.1, psycopg_pool 3.2, lint, types"

$(STAMP): pyproject.toml testing/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' -e ./testing
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]' -e ./testing
	touch $(BENCH_STAMP)

install: $(STAMP)
	@bash scripts/ensure-postgres.sh
	@bash scripts/ensure-postgis.sh

lint: $(STAMP)
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/); --strict: a warning (a broken link, a page
# missing from the nav, an API name that no longer exists) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

unit: install
	$(BIN)/pytest -q

# Django's own tests through the token path (token side only): a regression in the
# Django integration fails `make test`, and so CI.
CONFORMANCE_SLICE := backends transactions dbshell

conformance-slice: install
	$(BIN)/python -m pip install -q tblib
	$(BIN)/python conformance/run.py --token-only $(CONFORMANCE_SLICE)

test: install lint types docs unit conformance-slice

demo: install
	$(BIN)/python -m harness.demo

bench: install $(BENCH_STAMP)
	$(BIN)/python bench/run.py

soak: install
	$(BIN)/python -m harness.soak

dist: $(STAMP)
	$(BIN)/python -m pip install -q build twine
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m build --outdir dist testing
	$(BIN)/python -m twine check --strict dist/*
	$(BIN)/python scripts/check_dist.py dist

# With pyenv, every installed 3.10-3.13 is made visible to nox.
matrix: $(STAMP)
	$(BIN)/python -m pip install -q nox
	PYENV_VERSION="$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[0-3]\.' | paste -sd: -)" $(BIN)/nox $(NOXARGS)

conformance: install
	$(BIN)/python -m pip install -q tblib
	$(BIN)/python conformance/run.py
	$(BIN)/python conformance/run.py --gis

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
