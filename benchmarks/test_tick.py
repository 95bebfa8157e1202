"""Benchmarks of the scheduler tick (`make bench`): no timing asserts, figures only.

- CPython: Pump.tick in each steady delivery state (tests/mp_scenarios.py STEADY), the
  board clock advanced by the firmware's TICK_MS inside the timed wrapper.
- MicroPython: benchmarks/tick_cost.py on the unix port (us per tick, heap locked) and its
  wasm fuel per tick with the Pico estimate, recorded in benchmark.extra_info.
"""

import pytest
import tick_cost

from firmware.main import TICK_MS
from firmware.pump import S_BOLUS_ID, S_STOP, S_TEMP_KIND
from protocol import spec as S
from tests import mp_scenarios as M

ROUNDS = 200
ITERATIONS = 10  # (ROUNDS + 1 warm-up) * ITERATIONS ticks of TICK_MS: 201 s of board time


def still_in_state(state, c):
    """The state a benchmark measured held for all its ticks."""
    st = c["pump"].state
    before = c["st"]
    if state in ("suspended", "alarms"):
        return st[S_STOP] == S.STOP_USER
    if st[S_STOP] != S.STOP_NONE:
        return False
    if state.startswith("temp"):
        return st[S_TEMP_KIND] == before[S_TEMP_KIND] != S.TEMP_NONE
    if state.startswith("bolus"):
        return st[S_BOLUS_ID] == before[S_BOLUS_ID] != 0
    return st[S_TEMP_KIND] == S.TEMP_NONE and st[S_BOLUS_ID] == 0


@pytest.mark.req("THR-7")
@pytest.mark.parametrize("state", M.STEADY)
def test_tick_cpython(benchmark, figures, state):
    c = M.setup_state(state, M.MIN_TICKS)
    clock = c["rig"].clock
    pump = c["pump"]

    def tick():
        clock.advance(TICK_MS)
        pump.tick()

    benchmark.pedantic(tick, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=1)
    benchmark.extra_info["state"] = state
    benchmark.extra_info["tick_ms"] = TICK_MS
    benchmark.extra_info["pulses"] = M.moved(c)
    assert still_in_state(state, c)
    # pytest-benchmark's times are per iteration (one clock advance and one tick)
    figures.setdefault("cpython_median_us", {})[state] = benchmark.stats.stats.median * 1e6


@pytest.mark.req("HW-3", "THR-7")
def test_tick_cost_unix_port(benchmark, figures):
    costs = benchmark.pedantic(tick_cost.unix_costs, rounds=1, iterations=1)
    assert sorted(costs) == sorted(M.STEADY)
    for state, row in costs.items():
        assert row["ticks"] == tick_cost.TICKS and row["step_ms"] == tick_cost.STEP_MS
        benchmark.extra_info[state] = {k: row[k] for k in
                                       ("median_us", "mean_us", "p99_us", "max_us")}
    figures["unix_us"] = {state: benchmark.extra_info[state] for state in M.STEADY}


@pytest.mark.req("THR-7")
def test_tick_fuel_wasm(benchmark, figures):
    fuel = benchmark.pedantic(tick_cost.wasm_fuel, args=(M.STEADY,), rounds=1, iterations=1)
    benchmark.extra_info["pico_assumption"] = (
        f"fuel / {tick_cost.PICO_FUEL_PER_US} us: RP2040 at 125 MHz, ~1 fuel unit per cycle")
    benchmark.extra_info["loop_fuel_per_iteration"] = fuel["loop"]
    for state in M.STEADY:
        assert fuel[state] > 0
        benchmark.extra_info[state] = {
            "fuel_per_tick": round(fuel[state]),
            "pico_us_estimate": round(fuel[state] / tick_cost.PICO_FUEL_PER_US),
        }
    figures["wasm_fuel"] = {state: benchmark.extra_info[state] for state in M.STEADY}
    figures["wasm_loop_fuel_per_iteration"] = fuel["loop"]
