"""The scheduler tick allocates nothing, in every delivery state, on the MicroPython unix
port (64-bit, the emulator's runtime) and on 32-bit MicroPython (wasm, small ints and a
ticks period of 2**30 like the boards). ARCHITECTURE.md: "The tick: allocation-free".

tests/mp_scenarios.py runs inside MicroPython: per state it builds a Rig + Pump, drives it
into the state, warms up, then runs many ticks (1 s, 100 ms and 7 s steps) under
micropython.heap_lock(), where any allocation raises MemoryError; it counts the ticks that
raised, asserts inside the runtime that the state was really exercised in the locked run
(a bolus delivered, an alarm was raised, the clock wrapped, ...) and prints one
``RESULT <json>`` line per state. One guest run per runtime covers every state.

Here each state's line must show 0 failing ticks, the in-guest checks passed, and progress
values equal to what CPython computes for the same scenario. The checker's self-test: the
same harness with a method of the pump replaced (inside MicroPython) by one that builds a
list, makes a float or fetches a bound method must report MemoryError for every tick; one
that computes a value above 2**30 must do so on the 32-bit build (only).
"""

import functools
import json
from pathlib import Path

import pytest

from protocol import spec as S
from tests import mp_scenarios as M
from tests.runtimes import run_unix, run_wasm

UNIX_TICKS = 2000  # 2060 s of board time per state
WASM_TICKS = 300  # 309 s; wasm is ~20x slower per tick
WASM_FUEL = 20_000_000_000  # the whole wasm run uses ~3.5e9
SOURCE = Path(M.__file__).read_text()

# What each state exercises (requirement ids), besides the tick rule itself.
STATE_REQS = {
    "basal": ("THR-1", "THR-7"),
    "temp_abs": ("THR-2", "THR-7"),
    "temp_pct": ("THR-2", "THR-7"),
    "bolus_normal": ("THR-3", "THR-7"),
    "bolus_extended": ("THR-4", "THR-7"),
    "bolus_dual": ("THR-4", "THR-7"),
    "suspended": ("THR-5", "ALM-1"),
    "alarms": ("ALM-1", "ALM-2", "ALM-6", "THR-5", "RES-1", "BAT-1"),
    "bolus_complete": ("THR-3", "THR-7", "HIS-1"),
    "occlusion": ("ALM-3", "ALM-1", "HIS-1"),
    "reservoir_empty": ("RES-1", "ALM-1", "THR-7"),
    "battery_dead": ("BAT-1", "ALM-1"),
    "storage_fail": ("HIS-2", "THR-7"),
    "day_rollover": ("THR-10", "THR-1", "THR-7"),
    "temp_expiry": ("THR-2", "THR-7"),
    "auto_off": ("ALM-4", "ALM-1"),
    "clock_wrap": ("THR-11", "THR-7"),
    "cgm_readings": ("SNS-1",),
    "urgent_low": ("SNS-1", "SNS-2", "ALM-1"),
    "sbl": ("SNS-3", "SNS-1"),
    "time_lost": ("THR-13", "HIS-3"),
    "dose_limit": ("THR-6",),
    "motor_stall": ("ALM-7", "ALM-1"),
    "prime_incomplete": ("THR-12", "ALM-1", "ALM-2", "HIS-2"),
}
SELFTEST_REQS = ("ALM-1", "THR-7")

# Values that do not depend on the number of ticks, checked on every runtime
# (everything else is compared with CPython's numbers for the same run).
FIXED = {
    "basal": {"rate": 2400},
    "bolus_complete": {"bolus_today": 1000},
    "occlusion": {"blocked_pulses": 55, "bolus_today": 3000},  # 5 free + 55 blocked
    "reservoir_empty": {"pulses": 33, "bolus_today": 1750, "basal_mu": 150},
    "battery_dead": {"bolus_today": 250},
    "alarms": {"max_level": 2},
    "auto_off": {"alarms": 1 << S.A_AUTO_OFF},
    "prime_incomplete": {"alarms": 1 << S.A_PRIME_INCOMPLETE},
}


def guest(call):
    return SOURCE + "\n" + call + "\n"


def parse(stdout, tag="RESULT "):
    out = {}
    for line in stdout.splitlines():
        if line.startswith(tag):
            record = json.loads(line[len(tag):])
            out[record["state"]] = record
    return out


@functools.cache
def results(runtime):
    if runtime == "unix":
        return parse(run_unix(guest(f"main_alloc({UNIX_TICKS})")))
    # the 1 MB wasm heap holds about 12 states per guest run (no collection there: see
    # mp_scenarios.run_state_guarded): three runs of a third of the states each
    names = [entry[0] for entry in M.STATES]
    got = {}
    third = -(-len(names) // 3)
    for part in (names[:third], names[third:2 * third], names[2 * third:]):
        out = run_wasm(guest(f"main_alloc({WASM_TICKS}, {part!r})"), fuel=WASM_FUEL)
        got.update(parse(out.stdout))
    return got


@functools.cache
def cpython(state, ticks):
    """The same state run under CPython (nothing locked), through JSON like the guest's."""
    return json.loads(json.dumps(M.run_state(state, ticks)))


TICKS = {"unix": UNIX_TICKS, "wasm": WASM_TICKS}


def cases(names, reqs):
    out = []
    for runtime in ("unix", "wasm"):
        for name in names:
            ids = reqs(name) + (("HW-3",) if runtime == "unix" else ())
            out.append(pytest.param(runtime, name, id=f"{runtime}-{name}",
                                    marks=pytest.mark.req(*ids)))
    return out


@pytest.mark.parametrize(("runtime", "state"), cases(STATE_REQS, STATE_REQS.get))
def test_tick_allocates_nothing(runtime, state):
    got = results(runtime)[state]
    assert got["locked"] is True  # really under MicroPython's heap lock
    assert got["status"] == "ok", got
    assert got["fails"] == 0, f"MemoryError in locked tick {got['first']}: {got}"
    assert got["ticks"] == TICKS[runtime]
    assert got["values"] == cpython(state, TICKS[runtime])["values"]
    for key, value in FIXED.get(state, {}).items():
        assert got["values"][key] == value, key


@pytest.mark.parametrize(("runtime", "state"),
                         cases(M.SELFTESTS, lambda name: SELFTEST_REQS))
def test_checker_reports_an_added_allocation(runtime, state):
    got = results(runtime)[state]
    assert got["locked"] is True
    assert got["status"] == "ok", got  # the patch was in place
    if state == "selftest_bigint" and runtime == "unix":  # 64-bit: 2**30 is still small
        assert got["fails"] == 0
        return
    assert got["fails"] == got["ticks"] == TICKS[runtime]  # every locked tick raised
    assert got["first"] == 0


@pytest.mark.req("THR-7")
def test_every_state_is_checked():
    names = [entry[0] for entry in M.STATES]
    assert sorted(names) == sorted(list(STATE_REQS) + list(M.SELFTESTS))
    assert set(M.STEADY) <= set(STATE_REQS)


@pytest.mark.req("THR-7")
def test_cpython_runs_the_same_checks():
    """Under CPython nothing is locked, but every state's own checks hold there too."""
    for state in STATE_REQS:
        got = cpython(state, WASM_TICKS)
        assert got["status"] == "ok" and got["fails"] == 0 and not got["locked"], got
