"""Short version of the benchmark suite (`make test`; issue 6): fails only if a
zero-allocation result turns nonzero. Timings are `make bench`'s business, not asserted.

Measured with gc.mem_alloc() around each tick / each Link.poll with the collector off
(benchmarks/mp_bench.py), which also sees what micropython.heap_lock() cannot: under a
locked heap MicroPython raises a preallocated emergency exception object instead of
allocating one, so a tick that raises and catches an exception passes the heap_lock
tests (tests/test_alloc_free.py) while it does allocate when the heap is open.

- Ticks, unix port: every state of tests/mp_scenarios.py, 300 ticks each, 0 bytes (and 0
  MemoryErrors in the heap_lock run of the same state), except ALLOCATING_TICK_STATES.
  The checker's self-test states (a tick that builds a list, a float, a bound method)
  must show bytes: a measurement that sees nothing proves nothing.
- Ticks, 32-bit wasm: the steady delivery states (the full set runs in `make bench`).
- Requests (unix and wasm): status and every other query and error path that allocates
  nothing today stays at 0 bytes per request handled.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fw_bench as B  # noqa: E402

from tests import mp_scenarios as M  # noqa: E402

TICKS = 300
# A tick in these states allocates by design, with the reason:
ALLOCATING_TICK_STATES = {
    # boards/fakes.py Storage.write raises OSError when writes fail (as a failing flash
    # driver does): the exception object and its traceback, ~256 B (64-bit) per failed
    # write, 3 ticks in 300. heap_lock shows 0 (emergency exception object).
    "storage_fail",
}
SELFTESTS = set(M.SELFTESTS)
# Requests that allocate by design: authenticated commands (HMAC: two sha256 objects
# and digests, ~512 B on the unix port), get_profile and get_totals (tuples built by
# the pump).
ALLOCATING_REQUESTS = {"get_totals", "get_profile", "set_setting_auth", "bolus_auth",
                       "cancel_bolus_auth"}


def check_ticks(rec, states):
    res = rec["results"]
    assert set(res) == set(states)
    for state in states:
        r = res[state]
        assert r["status"] == "ok", (state, r)
        if state in SELFTESTS:
            if state != "selftest_bigint" or rec["block"] == 16:  # big ints: 32-bit only
                assert r["bytes"] > 0, f"{state}: the measurement no longer sees allocation"
            continue
        if "locked_fails" in r:
            assert r["locked_fails"] == 0, (state, r)
        if state not in ALLOCATING_TICK_STATES:
            assert r["bytes"] == 0, (
                f"{state}: a tick allocated {r['bytes']} bytes in {r['allocating_ticks']} "
                f"of {r['ticks']} ticks ({rec['runtime']})")


@pytest.mark.req("THR-7", "HW-3")
def test_ticks_allocate_nothing_on_the_unix_port():
    states = B.state_names()
    check_ticks(B.tick_alloc("unix", TICKS, states), states)


@pytest.mark.req("THR-7")
def test_steady_ticks_allocate_nothing_on_32_bit_wasm():
    check_ticks(B.tick_alloc("wasm", TICKS, M.STEADY, locked=False), M.STEADY)


@pytest.mark.req("LNK-1", "LNK-5", "HW-3")
@pytest.mark.parametrize("runtime", ["unix", "wasm"])
def test_status_and_error_requests_allocate_nothing(runtime):
    rec = B.request_alloc(runtime, rounds=10)
    res = rec["results"]
    assert res["status"]["answer"] == 0x82 and res["status"]["requests"] == 10
    assert res["_command_codes"] == [0]  # the commands measured were carried out
    assert res["_commands_answered"] == 3 * 10
    for label in res["_order"]:
        if label in ALLOCATING_REQUESTS:
            continue
        assert res[label]["bytes_per_request"] == 0, (
            f"{label}: {res[label]['bytes_per_request']} bytes per request ({runtime})")
        if res[label]["locked_fails"] >= 0:
            assert (res[label]["locked_fails"], res[label]["locked_faults"]) == (0, 0), label
