# azfed: the two commands a newcomer needs are `make demo` and `make test`.
# Both do all set-up on a fresh Debian machine (root): Debian packages, the project venv, and the
# OpenStack test bed's venvs (cached in ~/.cache/azfed, keyed by their pinned constraints).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help setup system venv lint test test-fast test-cov demo demo-down testbed-up testbed-down bench dist clean

help:
	@echo "make demo       run the whole federation on this machine (make demo-down stops it)"
	@echo "make test       set everything up, lint, and run every test (what CI runs)"
	@echo "make test-fast  only the tests that need neither OpenStack nor moto"
	@echo "make bench      run the benchmarks, print one table, write bench/results/*.json"
	@echo "make testbed-up / testbed-down   the OpenStack test bed alone"

setup: system venv

# Debian packages (MariaDB, RabbitMQ, cloud-init's schema validator) and the cached OpenStack venvs
system:
	bash testbed/install.sh >/dev/null

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "azfed needs Python 3.10+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

lint: venv
	$(BIN)/ruff format --check agent tests testbed bench
	$(BIN)/ruff check agent tests testbed bench
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -p no:cacheprovider -m "not aws and not openstack and not e2e" $(PYTEST_ARGS)

test-cov: setup
	$(BIN)/pytest -p no:cacheprovider --cov --cov-report=term-missing $(PYTEST_ARGS)

testbed-up: setup
	$(BIN)/python -m testbed start --boot

testbed-down: venv
	$(BIN)/python -m testbed stop

demo: setup
	$(BIN)/python -m testbed.demo

demo-down: venv
	$(BIN)/python -m testbed stop

bench: setup
	$(BIN)/python bench/run_all.py

dist: venv
	$(BIN)/python -m build --no-isolation --outdir dist .

clean:
	rm -rf dist build .mypy_cache .ruff_cache .pytest_cache
