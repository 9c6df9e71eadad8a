# Every target bootstraps the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TARGET ?= host
TARGETS ?= host rpi phone mcu
CONFIG ?= configs/default.toml
SET ?=
PYTEST_ARGS ?=
BASELINE ?=
MAX_REGRESSION ?=
WORKERS ?= 2
PIPELINE := $(BIN)/python -m pipeline
# User values reach the CLI through the environment, never expanded by make and never
# pasted into a recipe's command line: `$(value X)` is X's text as given (a `$(shell …)` in
# it stays text), `unexport` keeps make from expanding the originals to export them, the
# CLI reads EDGE_SET (space-separated section.key=value items) itself, and recipes quote
# "$$EDGE_…" so the shell never re-parses them (tests/test_makefile.py probes each).
USER_VALUES := SET CONFIG TARGET TARGETS BASELINE MAX_REGRESSION CHECK_FORMAT WORKERS
unexport $(USER_VALUES)
export EDGE_SET = $(value SET)
export EDGE_CONFIG = $(value CONFIG)
export EDGE_TARGET = $(value TARGET)
export EDGE_TARGETS = $(value TARGETS)
export EDGE_BASELINE = $(value BASELINE)
export EDGE_MAX_REGRESSION = $(value MAX_REGRESSION)
export EDGE_CHECK_FORMAT = $(value CHECK_FORMAT)
export EDGE_WORKERS = $(value WORKERS)
# `make deploy TARGETS="rpi mcu"` profiles a fleet; otherwise TARGET (default host).
export EDGE_DEPLOY_TARGETS = $(if $(filter command line,$(origin TARGETS)),$(value TARGETS),$(value TARGET))
NEEDS_SYSROOT = $(if $(filter rpi-emu,$(EDGE_DEPLOY_TARGETS)),emu-sysroot)

.PHONY: setup emu-sysroot run train-cluster deploy artifacts profile check report study advise targets models test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PIPELINE) run --config "$$EDGE_CONFIG"

deploy: setup $(NEEDS_SYSROOT)
	$(PIPELINE) deploy --targets "$$EDGE_DEPLOY_TARGETS" --config "$$EDGE_CONFIG"

artifacts: setup
	$(PIPELINE) artifacts --targets "$$EDGE_TARGETS" --config "$$EDGE_CONFIG"

profile: setup
	$(PIPELINE) profile --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG"

check: setup
	$(PIPELINE) check --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG" \
	  $${EDGE_BASELINE:+--baseline "$$EDGE_BASELINE"} \
	  $${EDGE_MAX_REGRESSION:+--max-regression "$$EDGE_MAX_REGRESSION"} \
	  $${EDGE_CHECK_FORMAT:+--format "$$EDGE_CHECK_FORMAT"}

report: setup
	$(PIPELINE) report

# `make study TARGET=mcu` or TARGETS="host mcu" (the same rule as deploy)
study: setup $(NEEDS_SYSROOT)
	$(PIPELINE) study --targets "$$EDGE_DEPLOY_TARGETS" --config "$$EDGE_CONFIG"

advise: setup
	$(PIPELINE) advise --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG"

emu-sysroot: setup
	$(BIN)/python devices/emu/build_sysroot.py

targets: setup
	$(PIPELINE) targets

train-cluster: setup
	$(PIPELINE) cluster --workers "$$EDGE_WORKERS" --config "$$EDGE_CONFIG"

models: setup
	$(PIPELINE) models

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)  # developer flags, not data

lint: setup
	$(BIN)/ruff check pipeline models devices tests benchmarks

clean:
	rm -rf build dist .pytest_cache .ruff_cache
