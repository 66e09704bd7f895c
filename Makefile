# azfed: the two commands a newcomer needs are `make demo` and `make test`.
# Both do all set-up on a fresh Debian machine (root): Debian packages, the project venv, and the
# OpenStack test bed's venvs (cached in ~/.cache/azfed, keyed by their pinned constraints).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# the caches shared by every clone on this machine (the bed's venvs live there too)
CACHE  ?= $(or $(AZFED_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/azfed)
# uv builds the project venv in seconds where pip takes a minute (pinned: it resolves our pins)
UV_VERSION := 0.13.9
UV_HOME    := $(CACHE)/tools/uv-$(UV_VERSION)
UV         := $(UV_HOME)/bin/uv

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

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# --compile-bytecode as pip does: compiled at import instead, old escapes in dependencies
# (parliament's) warn, and the tests treat warnings as errors
$(VENV)/.installed: pyproject.toml constraints.txt | $(UV)
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "azfed needs Python 3.10+"'
	test -x $(BIN)/python || $(UV) venv -q --seed --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(UV) pip install -q --compile-bytecode -c constraints.txt -e '.[test]'
	touch $@

lint: venv
	$(BIN)/ruff format --check agent tests testbed bench
	$(BIN)/ruff check agent tests testbed bench
	$(BIN)/mypy --cache-dir $(CACHE)/mypy

# Two pytest sessions side by side: the tests that need the OpenStack bed (one bed, so one
# session) and all the others, whose report is printed after the bed's. Both must pass. The
# bed's session (and the OpenStack services it waits on) is the longer one: the other runs
# at a lower CPU priority, on what the bed leaves idle.
UNIT_LOG := .testbed/pytest-unit.log
test: setup lint
	@mkdir -p .testbed
	@echo "pytest -m 'not openstack' in the background (report in $(UNIT_LOG)), and -m openstack:"
	@nice -n 10 $(BIN)/pytest -p no:cacheprovider -m "not openstack" --durations=10 $(PYTEST_ARGS) \
	    > $(UNIT_LOG) 2>&1 & unit=$$!; \
	$(BIN)/pytest -p no:cacheprovider -m openstack --durations=15 $(PYTEST_ARGS); bed=$$?; \
	wait $$unit; rc=$$?; \
	echo "== the tests that need no OpenStack bed =="; cat $(UNIT_LOG); \
	for r in $$bed $$rc; do [ $$r -eq 0 ] || [ $$r -eq 5 ] || exit 1; done  # 5: none selected

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
