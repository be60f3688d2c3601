# pxhostd: build, test and demo.  `make demo` and `make test` set up a fresh Debian 12
# machine themselves (as root) the first time; see docs/testing.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY := .venv/bin/python
# Created by `make setup`; targets that need the tools depend on it, so a fresh
# machine gets set up once, on first use.
SETUP_STAMP := .cache/setup.stamp
PYTEST_ARGS ?=
# One module that fails to import must not hide every other result (it still fails the run).
PYTEST := $(PY) -m pytest --continue-on-collection-errors
DEMO_ARGS ?=

.PHONY: help setup node-root deb rpm packages image lint test-fast test demo bench clean clean-cache

help:
	@echo "make demo       boot a node, install pxhostd from its .deb, show it running"
	@echo "make test       everything: lint, unit tests, node end-to-end tests"
	@echo "make test-fast  the quick loop: all tests except those that boot nodes (no lint)"
	@echo "make lint       ruff, mypy --strict, import contracts, shellcheck"
	@echo "make setup      install build/test dependencies (root, Debian 12)"
	@echo "make node-root  build the cached Debian 12 node root"
	@echo "make deb | rpm | packages   build the packages into out/"
	@echo "make image      build the pod image (podman) into out/pxhostd-pod_<version>.image.tar"
	@echo "make bench      run the benchmarks in bench/"

$(SETUP_STAMP): scripts/setup-host pyproject.toml
	scripts/setup-host
	@mkdir -p $(@D) && touch $@

setup:
	scripts/setup-host
	@mkdir -p $(dir $(SETUP_STAMP)) && touch $(SETUP_STAMP)

node-root: $(SETUP_STAMP)
	scripts/build-node-root

deb: $(SETUP_STAMP)
	scripts/build-deb

rpm: $(SETUP_STAMP)
	scripts/build-rpm

packages: deb rpm

# The pod image, from the .deb; no registry (scripts/build-image, container/README.md).
image: deb
	scripts/build-image

# Shell scripts are found by their shebang, so a new one is linted without a change here.
SHELL_SCRIPTS = $(shell grep -lsE '^\#!(/usr)?/bin/(env )?(ba)?sh' scripts/* .ci/run)

lint: $(SETUP_STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	.venv/bin/lint-imports --no-logo --no-cache
	$(PY) -m mypy --strict tests/nodeharness
	MYPYPATH=tests $(PY) -m mypy --strict scripts/demo
	shellcheck -x $(SHELL_SCRIPTS)

test-fast: $(SETUP_STAMP)
	$(PYTEST) -m "not node" $(PYTEST_ARGS)

# Lint and every test, node end-to-end included.  Both always run; either failing fails.
test: $(SETUP_STAMP)
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(PYTEST) $(PYTEST_ARGS) || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see lint and pytest output above)"; fi; \
	exit $$status

demo: $(SETUP_STAMP)
	scripts/demo $(DEMO_ARGS)

bench: $(SETUP_STAMP)
	@shopt -s nullglob; benches=(bench/bench_*.py); \
	if [ $${#benches[@]} -eq 0 ]; then echo "no benchmarks in bench/"; exit 0; fi; \
	status=0; \
	for b in "$${benches[@]}"; do echo "== $$b"; PYTHONPATH=.:tests $(PY) "$$b" || status=1; done; \
	exit $$status

clean:
	rm -rf out .cache/node-logs

# Drops the cached node roots too (the next node test rebuilds one, about a minute).
clean-cache: clean
	rm -rf .cache
