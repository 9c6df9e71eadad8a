# Every target bootstraps the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TARGET ?= host
TARGETS ?= host rpi phone mcu
CONFIG ?= configs/default.toml
SET ?=
PYTEST_ARGS ?=
CHECK_ARGS ?=
BASELINE ?=
MAX_REGRESSION ?=
CHECK_ARGS += $(if $(BASELINE),--baseline $(BASELINE)) $(if $(MAX_REGRESSION),--max-regression $(MAX_REGRESSION))
SET_ARGS := $(foreach item,$(SET),--set $(item))
PIPELINE := $(BIN)/python -m pipeline

.PHONY: setup emu-sysroot run train-cluster deploy artifacts profile check report advise targets models test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PIPELINE) run --config $(CONFIG) $(SET_ARGS)

# `make deploy TARGETS="rpi mcu"` profiles a fleet; otherwise TARGET (default host).
DEPLOY_TARGETS := $(if $(filter command line environment,$(origin TARGETS)),$(TARGETS),$(TARGET))
deploy: setup $(if $(filter rpi-emu,$(DEPLOY_TARGETS)),emu-sysroot)
	$(PIPELINE) deploy --targets "$(DEPLOY_TARGETS)" --config $(CONFIG) $(SET_ARGS)

artifacts: setup
	$(PIPELINE) artifacts --targets "$(TARGETS)" --config $(CONFIG) $(SET_ARGS)

profile: setup
	$(PIPELINE) profile --target $(TARGET) --config $(CONFIG) $(SET_ARGS)

check: setup
	$(PIPELINE) check --target $(TARGET) $(SET_ARGS) $(CHECK_ARGS)

report: setup
	$(PIPELINE) report

advise: setup
	$(PIPELINE) advise --target $(TARGET) --config $(CONFIG) $(SET_ARGS)

emu-sysroot: setup
	$(BIN)/python devices/emu/build_sysroot.py

targets: setup
	$(PIPELINE) targets

WORKERS ?= 2
train-cluster: setup
	$(PIPELINE) cluster --workers $(WORKERS) --config $(CONFIG) $(SET_ARGS)

models: setup
	$(PIPELINE) models

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check pipeline models devices tests benchmarks

clean:
	rm -rf build dist .pytest_cache .ruff_cache
