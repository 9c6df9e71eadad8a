# Every target bootstraps the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TARGET ?= host
TARGETS ?= host rpi phone mcu
CONFIG ?= configs/default.toml
SET ?=
PYTEST_ARGS ?=
SET_ARGS := $(foreach item,$(SET),--set $(item))
PIPELINE := $(BIN)/python -m pipeline

.PHONY: setup run train-cluster deploy artifacts profile check report advise targets models test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PIPELINE) run --config $(CONFIG) $(SET_ARGS)

deploy: setup
	$(PIPELINE) deploy --target $(TARGET) --config $(CONFIG) $(SET_ARGS)

artifacts: setup
	$(PIPELINE) artifacts --targets "$(TARGETS)" --config $(CONFIG) $(SET_ARGS)

profile: setup
	$(PIPELINE) profile --target $(TARGET) --config $(CONFIG) $(SET_ARGS)

check: setup
	$(PIPELINE) check --target $(TARGET) $(SET_ARGS)

report: setup
	$(PIPELINE) report

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
