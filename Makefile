# Every target bootstraps the virtual environment it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TARGET ?= host
TARGETS ?= host rpi phone mcu
CONFIG ?= configs/default.toml
SET ?=
PYTEST_ARGS ?=
# pytest-xdist: two workers, each test file on one (its module fixtures built once); "-n 0"
# runs in this process
TEST_WORKERS ?= -n 2 --dist loadfile
BASELINE ?=
MAX_REGRESSION ?=
WORKERS ?= 2
PIPELINE := $(BIN)/python -m pipeline
# User values reach the CLI through the environment, never expanded by make and never
# pasted into a recipe's command line: `$(value X)` is X's text as given (a `$(shell …)` in
# it stays text), `unexport` keeps make from expanding the originals to export them, the
# CLI reads EDGE_SET (space-separated section.key=value items) itself, and recipes quote
# "$$EDGE_…" so the shell never re-parses them (tests/test_makefile.py probes each).
USER_VALUES := SET CONFIG TARGET TARGETS BASELINE MAX_REGRESSION CHECK_FORMAT WORKERS MODEL
unexport $(USER_VALUES)
export EDGE_SET = $(value SET)
export EDGE_CONFIG = $(value CONFIG)
export EDGE_TARGET = $(value TARGET)
export EDGE_TARGETS = $(value TARGETS)
export EDGE_BASELINE = $(value BASELINE)
export EDGE_MAX_REGRESSION = $(value MAX_REGRESSION)
export EDGE_CHECK_FORMAT = $(value CHECK_FORMAT)
export EDGE_WORKERS = $(value WORKERS)
export EDGE_MODEL = $(value MODEL)
# `make deploy TARGETS="rpi mcu"` profiles a fleet; otherwise TARGET (default host).
export EDGE_DEPLOY_TARGETS = $(if $(filter command line,$(origin TARGETS)),$(value TARGETS),$(value TARGET))
NEEDS_SYSROOT = $(if $(filter rpi-emu,$(EDGE_DEPLOY_TARGETS)),emu-sysroot)

.PHONY: help setup emu-sysroot run train-cluster deploy artifacts profile check report study advise targets models test test-deps lint clean distclean
# The CLI reads EDGE_SET only when this marker says make set it: a leftover shell variable
# must not change a config (and its cache keys) silently.
export EDGE_FROM_MAKE = 1

help: ## list the targets, one line each
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | sed -E 's/^([a-z-]+):.*## /\1\t/' | \
	  awk -F '\t' '{ printf "  %-14s %s\n", $$1, $$2 }'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed ## create .venv and install the project (every target does this first)

run: setup ## run the training and compression stages (cached in build/cache)
	$(PIPELINE) run --config "$$EDGE_CONFIG"

deploy: setup $(NEEDS_SYSROOT) ## every stage, bundle, profile and budget check: TARGET=host|rpi|phone|mcu|… or TARGETS="…"
	$(PIPELINE) deploy --targets "$$EDGE_DEPLOY_TARGETS" --config "$$EDGE_CONFIG"

artifacts: setup ## build the bundles in dist/ for TARGETS without profiling [MODEL=file.tflite|.onnx]
	$(PIPELINE) artifacts --targets "$$EDGE_TARGETS" --config "$$EDGE_CONFIG" \
	  $${EDGE_MODEL:+--model "$$EDGE_MODEL"}

profile: setup ## profile dist/TARGET on its device, or MODEL=file.tflite|.onnx (no training)
	$(PIPELINE) profile --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG" \
	  $${EDGE_MODEL:+--model "$$EDGE_MODEL"}

check: setup ## check dist/TARGET/latency_report.json against the budget [BASELINE=… MAX_REGRESSION=…]
	$(PIPELINE) check --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG" \
	  $${EDGE_BASELINE:+--baseline "$$EDGE_BASELINE"} \
	  $${EDGE_MAX_REGRESSION:+--max-regression "$$EDGE_MAX_REGRESSION"} \
	  $${EDGE_CHECK_FORMAT:+--format "$$EDGE_CHECK_FORMAT"}

report: setup ## cross-target report from dist/ (report.md, .json, .html, plots)
	$(PIPELINE) report

# `make study TARGET=mcu` or TARGETS="host mcu" (the same rule as deploy)
study: setup $(NEEDS_SYSROOT) ## distil or prune? every arm, level and seed, measured on TARGET(S)
	$(PIPELINE) study --targets "$$EDGE_DEPLOY_TARGETS" --config "$$EDGE_CONFIG"

advise: setup ## the study's one-line answer for TARGET
	$(PIPELINE) advise --target "$$EDGE_TARGET" --config "$$EDGE_CONFIG"

emu-sysroot: setup ## aarch64 sysroot for the rpi-emu target (qemu-user)
	$(BIN)/python devices/emu/build_sysroot.py

targets: setup ## list the target profiles and what each needs
	$(PIPELINE) targets

train-cluster: setup ## train with multi-worker on WORKERS local processes
	$(PIPELINE) cluster --workers "$$EDGE_WORKERS" --config "$$EDGE_CONFIG"

models: setup ## list the model zoo
	$(PIPELINE) models

test: setup ## run the test suite [PYTEST_ARGS=…] [TEST_WORKERS="-n 0"]; a test whose system program is missing skips
	$(BIN)/python -m pytest $(TEST_WORKERS) $(PYTEST_ARGS)  # developer flags, not data

test-deps: ## install the Debian packages the tests need (tests/system-packages.txt; sudo when not root)
	bash tests/install-system-packages.sh

lint: setup ## ruff over the code
	$(BIN)/ruff check pipeline models devices tests benchmarks

clean: ## remove dist/ and build/ scratch, keeping the trained stages in build/cache
	@find build -mindepth 1 -maxdepth 1 ! -name cache -exec rm -rf {} + 2>/dev/null || true
	rm -rf dist .pytest_cache .ruff_cache
	@[ ! -d build/cache ] || echo "kept build/cache (the trained stages): make distclean removes it"

distclean: clean ## clean, and remove the stage cache and the virtual environment too
	rm -rf build $(VENV)
