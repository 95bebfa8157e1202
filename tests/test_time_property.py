"""Property test of the time model (issue 9): random clock changes, time-zone changes,
power cuts, outages (with and without the RTC's backup), boluses and ticks.

Invariants after every step:
- the daily totals (stored days plus the running one) add up to what the plunger moved;
- no 60-min and no 24-h window of monotonic time holds more than its limit;
- insulin on board is never below what the action curve leaves of the boluses delivered
  (IOB errs high, never low);
- history times never go backwards without a record that says why (a time change or a
  lost time).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.pump import iob_permille
from protocol import spec as S
from tests.pumpkit import MONDAY_2026, history, make_pump, reboot, run

MAX_TDD = 30000
MAX_1H = 6000
CHUNK_S = 600
# the test logs a piece's pulses at its end: up to one piece of basal (0.8 U/h) may look
# younger than it is, so the 24-h sum it computes can exceed the pump's by that much
LOG_SLACK_MU = 800 * CHUNK_S // 3600 + 50

step = st.one_of(
    st.tuples(st.just("tick"), st.integers(1, 3 * 3600)),
    st.tuples(st.just("bolus"), st.sampled_from([500, 1000, 2000, 4000])),
    st.tuples(st.just("set_time"), st.integers(-3 * 86400, 3 * 86400)),
    st.tuples(st.just("zone"), st.sampled_from([-720, -300, 0, 60, 330, 840])),
    st.tuples(st.just("cut"), st.integers(0, 6 * 3600)),
    st.tuples(st.just("cut_no_backup"), st.integers(0, 3600)),
)


def check(rig, pump, deliveries):
    # totals: every recorded day plus the running one equals the plunger's travel
    days = range(2470, 2560)  # 12 steps of at most 3 days either way
    total = 0
    for day in days:
        got = pump.day_totals(day)
        if got is not None:
            total += sum(got)
    assert total == rig.motor.odometer * 50
    # windows on the pump's monotonic seconds, from the test's own delivery log
    now = pump.state[36]  # S_MONO_S
    hour = sum(mu for t, mu, bolus in deliveries if bolus and now - t < 3600)
    day = sum(mu for t, mu, _ in deliveries if now - t < 86400)
    assert hour <= MAX_1H and day <= MAX_TDD + LOG_SLACK_MU
    floor = sum(mu * iob_permille((now - t) // 60 + 1, 300) // 1000
                for t, mu, bolus in deliveries if bolus)
    assert pump.iob() >= floor - 50 * len(deliveries)


def times_in_order(pump):
    """History times never go back but at a record that says why."""
    last = 0
    for r in history(pump):
        if r[2] in (S.H_TIME_CHANGE, S.H_TIME_LOST):
            last = 0
        assert r[1] >= last, r
        last = r[1]


@pytest.mark.req("THR-13", "HIS-3", "THR-6", "THR-9", "THR-10", "THR-11", "HIS-2")
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=12))
def test_clock_changes_cuts_and_outages_keep_the_safety_invariants(steps):
    rig, pump = make_pump(rates=(800,))
    assert pump.settings.set(S.SET_MAX_TDD, MAX_TDD) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, MAX_1H) == S.OK
    deliveries = []  # (mono second, mU, bolus?) of every pulse, seen from outside
    offset = 0
    for kind, value in steps:
        if kind == "tick":  # in 10-min pieces: the test's delivery log has that resolution
            while value > 0:
                piece = min(value, CHUNK_S)
                before, bolus_before = rig.motor.pos, pump.state[7]
                run(rig, pump, piece, step_ms=10000)
                log(rig, pump, deliveries, before, bolus_before)
                value -= piece
            check(rig, pump, deliveries)
            continue
        before = rig.motor.pos
        bolus_before = pump.state[7]  # S_BOLUS_TODAY of the running day
        if kind == "bolus":
            pump.bolus(S.BOLUS_NORMAL, value, 0, 0)  # refused or not: the windows decide
            run(rig, pump, 1)
        elif kind == "set_time":
            pump.set_time(max(0, pump.utc_seconds() + value), offset)
        elif kind == "zone":
            if pump.set_time(pump.utc_seconds(), value) == S.OK:
                offset = value
        else:
            if kind == "cut_no_backup":
                rig.rtc.backup = False
            rig.outage(value)
            pump = reboot(rig)
            rig.rtc.backup = True
            if not pump.state[32]:  # S_TIME_SET: the user sets it again
                pump.set_time(MONDAY_2026 + rig.clock.world_s, offset)
        log(rig, pump, deliveries, before, bolus_before)
        check(rig, pump, deliveries)
    times_in_order(pump)


def log(rig, pump, deliveries, pos_before, bolus_before):
    """What the plunger moved since pos_before, at the pump's monotonic second now."""
    moved = (rig.motor.pos - pos_before) * 50
    if moved:
        bolus = max(0, min(pump.state[7] - bolus_before, moved))
        if bolus:
            deliveries.append((pump.state[36], bolus, True))
        if moved - bolus:
            deliveries.append((pump.state[36], moved - bolus, False))
