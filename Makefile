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
# User values reach the CLI through the environment, never pasted into a recipe's command
# line: the CLI reads EDGE_SET (space-separated section.key=value items) itself, and
# recipes quote "$$EDGE_…" so the shell never re-parses them.
export EDGE_SET := $(SET)
export EDGE_CONFIG := $(CONFIG)
export EDGE_TARGET := $(TARGET)
export EDGE_TARGETS := $(TARGETS)
export BASELINE MAX_REGRESSION CHECK_FORMAT
export EDGE_WORKERS := $(WORKERS)

.PHONY: setup emu-sysroot run train-cluster deploy artifacts profile check report advise targets models test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PIPELINE) run --config "$$EDGE_CONFIG"

# `make deploy TARGETS="rpi mcu"` profiles a fleet; otherwise TARGET (default host).
DEPLOY_TARGETS := $(if $(filter command line,$(origin TARGETS)),$(TARGETS),$(TARGET))
export EDGE_DEPLOY_TARGETS := $(DEPLOY_TARGETS)
deploy: setup $(if $(filter rpi-emu,$(DEPLOY_TARGETS)),emu-sysroot)
	$(PIPELINE) deploy --targets "$$EDGE_DEPLOY_TARGETS" --config "$$EDGE_CONFIG"

artifacts: setup
	$(PIPELINE) artifacts --targets "$$EDGE_TARGETS" --config "$$EDGE_CONFIG"

profile: setup
	$(PIPELINE) profile --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG"

check: setup
	$(PIPELINE) check --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG" \
	  $${BASELINE:+--baseline "$$BASELINE"} $${MAX_REGRESSION:+--max-regression "$$MAX_REGRESSION"} \
	  $${CHECK_FORMAT:+--format "$$CHECK_FORMAT"}

report: setup
	$(PIPELINE) report

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
