"""THR-1 basal profiles and weekly schedule, THR-2 temporary basal."""

import pytest

from firmware.pump import S_TEMP_LEFT
from protocol import spec as S
from tests.pumpkit import (
    HOUR_MS,
    MONDAY_2026,
    basal_acc,
    basal_integral,
    history,
    local_time,
    make_pump,
    records,
    run,
    slot_rates,
    utc_for,
)

MONDAY = MONDAY_2026 // 86400  # day number 2511
SATURDAY = MONDAY + 5


def snapshot(pump):
    return list(pump.settings.values), [pump.settings.get_profile(p) for p in range(S.PROFILES)], \
        pump.history.next_seq


# ------------------------------------------------------------------ THR-1 validation
BAD_PROFILES = [
    # (index, name, starts, rates) -> (code, detail)
    ((4, b"x", [0], [100]), (S.E_BAD_ARG, 0)),
    ((-1, b"x", [0], [100]), (S.E_BAD_ARG, 0)),
    ((1, b"", [0], [100]), (S.E_BAD_ARG, 1)),
    ((1, b"ninechars", [0], [100]), (S.E_BAD_ARG, 1)),
    ((1, b"tab\there", [0], [100]), (S.E_BAD_ARG, 1)),
    ((1, b"ok", [], []), (S.E_BAD_ARG, 2)),
    ((1, b"ok", list(range(48)) + [48], [100] * 49), (S.E_BAD_ARG, 2)),
    ((1, b"ok", [1, 2], [100, 200]), (S.E_BAD_ARG, 2)),  # first segment not at 0:00
    ((1, b"ok", [0, 4, 4], [100, 200, 300]), (S.E_BAD_ARG, 2)),  # not strictly increasing
    ((1, b"ok", [0, 6, 5], [100, 200, 300]), (S.E_BAD_ARG, 2)),
    ((1, b"ok", [0, 48], [100, 200]), (S.E_BAD_ARG, 2)),  # past the last slot
    ((1, b"ok", [0, 4], [100]), (S.E_BAD_ARG, 2)),  # rates do not match starts
    ((1, b"ok", [0, 4], [100, -1]), (S.E_OUT_OF_RANGE, 3)),
    ((1, b"ok", [0, 4], [100, S.MAX_RATE + 1]), (S.E_OUT_OF_RANGE, 3)),
    ((1, b"ok", [0, 4], [100, 5001]), (S.E_OVER_LIMIT, S.SET_MAX_BASAL)),  # default 5 U/h
]


@pytest.mark.req("THR-1", "THR-6", "LNK-4")
@pytest.mark.parametrize("args,expected", BAD_PROFILES)
def test_bad_profile_refused_whole(args, expected):
    rig, pump = make_pump(rates=(800,))
    assert pump.settings.set_profile(1, b"before", [0, 10], [300, 400]) == S.OK
    before = snapshot(pump)
    assert pump.settings.set_profile(*args) == expected[0]
    assert pump.detail == expected[1]
    assert snapshot(pump) == before  # nothing changed, nothing logged


@pytest.mark.req("THR-1")
def test_profile_limits_accepted_at_the_edges():
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_MAX_BASAL, S.MAX_RATE) == S.OK
    starts = list(range(48))
    rates = [S.MAX_RATE if i % 2 else 0 for i in range(48)]
    assert pump.settings.set_profile(3, b"12345678", starts, rates) == S.OK
    assert pump.settings.get_profile(3) == (b"12345678", starts, rates)
    assert pump.settings.set_profile(2, b"a", [0], [0]) == S.OK
    assert pump.settings.get_profile(2) == (b"a", [0], [0])


@pytest.mark.req("THR-1", "HIS-1")
def test_get_profile_round_trip_and_history():
    rig, pump = make_pump()
    seq = pump.history.next_seq
    starts, rates = [0, 12, 13, 30, 47], [450, 1200, 0, 950, 600]
    assert pump.settings.set_profile(2, b"Work Day", starts, rates) == S.OK
    assert pump.settings.get_profile(2) == (b"Work Day", starts, rates)
    # adjacent equal segments come back merged, the delivered rates are the same
    assert pump.settings.set_profile(1, b"merge", [0, 10, 20], [500, 500, 700]) == S.OK
    assert pump.settings.get_profile(1) == (b"merge", [0, 20], [500, 700])
    assert pump.settings.get_profile(0) == (b"test", [0], [1000])
    assert pump.settings.get_profile(3) is None  # never programmed
    assert pump.settings.get_profile(4) is None
    profs = records(pump, S.H_PROFILE, seq)
    assert [(r[3], r[4], r[5]) for r in profs] == [(2, 5, 1200), (1, 3, 700)]


@pytest.mark.req("THR-1")
def test_profile_change_takes_effect_at_once():
    rig, pump = make_pump(rates=(1000,))
    run(rig, pump, 600)
    assert pump.settings.set_profile(0, b"new", [0], [2000]) == S.OK
    assert pump.basal_rate() == 2000
    assert pump.settings.profile_rate() == 2000


# ------------------------------------------------------------------ THR-1 weekly schedule
@pytest.mark.req("THR-1")
def test_schedule_picks_weekend_profile():
    rig, pump = make_pump(rates=(1000,))
    assert pump.settings.set_profile(1, b"weekend", [0, 20], [2000, 1500]) == S.OK
    seq = pump.history.next_seq
    assert pump.settings.set_schedule([0, 0, 0, 0, 0, 1, 1]) == S.OK
    assert pump.settings.schedule() == [0, 0, 0, 0, 0, 1, 1]
    (rec,) = records(pump, S.H_SCHEDULE, seq)
    assert rec[4] == (1 << 15) | (1 << 18)
    expected = [1000] * 5 + [2000, 2000]
    for i in range(7):
        assert pump.set_time(utc_for(MONDAY + i, 3), 0) == S.OK
        assert pump.weekday() == i
        assert pump.settings.profile_rate() == expected[i], i
        assert pump.set_time(utc_for(MONDAY + i, 12), 0) == S.OK
        assert pump.settings.profile_rate() == (1500 if i >= 5 else 1000), i


@pytest.mark.req("THR-1", "THR-7")
def test_delivery_switches_profile_at_weekend_midnight():
    rig, pump = make_pump(rates=(1000,))
    assert pump.settings.set_profile(1, b"weekend", [0], [2000]) == S.OK
    assert pump.settings.set_schedule([0, 0, 0, 0, 0, 1, 1]) == S.OK
    # Friday 23:00 .. Saturday 01:00: 1 U then 2 U
    assert pump.set_time(utc_for(SATURDAY - 1, 23), 0) == S.OK
    acc0 = basal_acc(pump)
    pos0 = rig.motor.odometer
    run(rig, pump, 3600, step_ms=7000)
    run(rig, pump, 3600, step_ms=1000)
    assert local_time(pump) == (SATURDAY, HOUR_MS)
    assert basal_acc(pump) == acc0
    assert (rig.motor.odometer - pos0) * 50 == 3000
    # the pulse falling due at midnight is Friday's
    assert pump.day_totals(SATURDAY - 1)[0] == 1000
    assert pump.day_totals(SATURDAY)[0] == 2000
    # and back on Monday
    assert pump.set_time(utc_for(SATURDAY + 2, 0, 30), 0) == S.OK
    assert pump.basal_rate() == 1000


@pytest.mark.req("THR-1")
def test_schedule_refusals_change_nothing():
    rig, pump = make_pump()
    before = pump.settings.schedule()
    assert pump.settings.set_schedule([0] * 6) == S.E_BAD_ARG
    assert pump.detail == 0
    assert pump.settings.set_schedule([0, 0, 0, 0, 0, 0, 2]) == S.E_BAD_ARG  # profile 2 unused
    assert pump.detail == 6
    assert pump.settings.set_schedule([0, 0, 4, 0, 0, 0, 0]) == S.E_BAD_ARG
    assert pump.detail == 2
    assert pump.settings.set_schedule([0, -1, 0, 0, 0, 0, 0]) == S.E_BAD_ARG
    assert pump.detail == 1
    assert pump.settings.schedule() == before


# ------------------------------------------------------------------ THR-1 local wall clock
@pytest.mark.req("THR-1", "THR-11")
@pytest.mark.parametrize("offset_min,local_min,rate", [
    (0, 360, 400), (120, 480, 2400), (-600, 1200, 900), (330, 690, 2400), (840, 1200, 900),
])
def test_delivery_follows_local_time(offset_min, local_min, rate):
    """Same UTC instant (Monday 06:00 UTC), different UTC offsets: the profile slot is chosen
    by local time, and the delivered amount follows it."""
    starts, rates = [0, 14, 36], [400, 2400, 900]  # night, day from 07:00, evening from 18:00
    rig, pump = make_pump(starts=starts, rates=rates, resume=False)
    assert pump.set_time(MONDAY_2026 + 6 * 3600, offset_min) == S.OK
    assert pump.resume() == S.OK
    day, local_ms = local_time(pump)
    assert local_ms == local_min * 60000
    assert pump.basal_rate() == rate
    slots = slot_rates(starts, rates)
    pos0 = rig.motor.odometer
    run(rig, pump, 3 * 3600, step_ms=30000)
    integral = basal_integral(lambda d, s: slots[s], day, local_ms, 3 * HOUR_MS)
    assert (rig.motor.odometer - pos0) * 50 * HOUR_MS + basal_acc(pump) == integral


# ------------------------------------------------------------------ THR-2 temp basal
BAD_TEMPS = [
    ((0, 1000, 60), (S.E_BAD_ARG, 0)),
    ((3, 1000, 60), (S.E_BAD_ARG, 0)),
    ((S.TEMP_ABSOLUTE, 1000, 0), (S.E_OUT_OF_RANGE, 2)),
    ((S.TEMP_ABSOLUTE, 1000, 14), (S.E_OUT_OF_RANGE, 2)),
    ((S.TEMP_ABSOLUTE, 1000, 20), (S.E_OUT_OF_RANGE, 2)),  # not a 15-min step
    ((S.TEMP_ABSOLUTE, 1000, 1455), (S.E_OUT_OF_RANGE, 2)),  # over 24 h
    ((S.TEMP_ABSOLUTE, -1, 60), (S.E_OUT_OF_RANGE, 1)),
    ((S.TEMP_ABSOLUTE, S.MAX_RATE + 1, 60), (S.E_OUT_OF_RANGE, 1)),
    ((S.TEMP_ABSOLUTE, 5001, 60), (S.E_OVER_LIMIT, S.SET_MAX_BASAL)),
    ((S.TEMP_PERCENT, -1, 60), (S.E_OUT_OF_RANGE, 1)),
    ((S.TEMP_PERCENT, 251, 60), (S.E_OUT_OF_RANGE, 1)),
    # profile max 2100 mU/h: 239 % would be 5019 mU/h, over the 5 U/h max basal
    ((S.TEMP_PERCENT, 239, 60), (S.E_OVER_LIMIT, S.SET_MAX_BASAL)),
]


@pytest.mark.req("THR-2", "THR-6", "LNK-4")
@pytest.mark.parametrize("args,expected", BAD_TEMPS)
def test_temp_basal_refusals(args, expected):
    rig, pump = make_pump(starts=(0, 10), rates=(1000, 2100))
    seq = pump.history.next_seq
    assert pump.set_temp_basal(*args) == expected[0]
    assert pump.detail == expected[1]
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    assert pump.history.next_seq == seq


@pytest.mark.req("THR-2")
def test_temp_basal_accepted_edges():
    rig, pump = make_pump(rates=(2000,))
    for args, rate in [((S.TEMP_PERCENT, 250, 15), 5000), ((S.TEMP_PERCENT, 0, 1440), 0),
                       ((S.TEMP_ABSOLUTE, 5000, 1440), 5000), ((S.TEMP_ABSOLUTE, 0, 15), 0),
                       ((S.TEMP_PERCENT, 37, 45), 740)]:
        assert pump.set_temp_basal(*args) == S.OK, args
        assert pump.basal_rate() == rate
        assert pump.settings.profile_rate() == 2000
        assert pump.status()["temp_left_min"] == args[2]


@pytest.mark.req("THR-2", "THR-5")
def test_temp_basal_refused_while_suspended():
    rig, pump = make_pump()
    assert pump.suspend() == S.OK
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 500, 60) == S.E_SUSPENDED
    assert pump.detail == S.STOP_USER
    assert pump.cancel_temp_basal() == S.E_NO_TEMP_BASAL


@pytest.mark.req("THR-2", "THR-7", "HIS-1")
def test_absolute_temp_basal_expires_exactly_on_time():
    rig, pump = make_pump(rates=(1000,))
    seq = pump.history.next_seq
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 3000, 45) == S.OK
    assert pump.basal_rate() == 3000
    pos0 = rig.motor.odometer
    run(rig, pump, 45 * 60 - 1)  # 1 s before the end: still running
    assert pump.status()["temp_kind"] == S.TEMP_ABSOLUTE
    assert pump.state[S_TEMP_LEFT] == 1000
    assert pump.status()["temp_left_min"] == 0
    # one 7-s tick across the end: 1 s at 3 U/h, 6 s at 1 U/h
    rig.clock.advance(7000)
    pump.tick()
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    assert pump.basal_rate() == 1000
    integral = 3000 * 45 * 60000 + 1000 * 6000
    assert (rig.motor.odometer - pos0) * 50 * HOUR_MS + basal_acc(pump) == integral
    start, end = records(pump, S.H_TEMP_START, seq), records(pump, S.H_TEMP_END, seq)
    assert [(r[3], r[4], r[5]) for r in start] == [(S.TEMP_ABSOLUTE, 3000, 45)]
    assert [r[3] for r in end] == [S.TEMP_END_EXPIRED]


@pytest.mark.req("THR-2", "THR-7")
def test_percent_temp_basal_follows_profile_segments():
    starts, rates = [0, 2], [1000, 1800]  # 1 U/h until 01:00, then 1.8 U/h
    rig, pump = make_pump(starts=starts, rates=rates)
    assert local_time(pump)[1] == 0
    assert pump.set_temp_basal(S.TEMP_PERCENT, 150, 120) == S.OK
    assert pump.basal_rate() == 1500
    pos0 = rig.motor.odometer
    run(rig, pump, 3600, step_ms=9000)
    assert pump.basal_rate() == 2700
    run(rig, pump, 3600, step_ms=9000)
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    assert pump.basal_rate() == 1800
    assert (rig.motor.odometer - pos0) * 50 + basal_acc(pump) // HOUR_MS == 1500 + 2700


@pytest.mark.req("THR-2", "THR-7", "HIS-1")
def test_cancel_temp_basal_returns_to_profile_at_once():
    rig, pump = make_pump(rates=(1200,))
    seq = pump.history.next_seq
    assert pump.set_temp_basal(S.TEMP_PERCENT, 0, 240) == S.OK  # sport: no basal
    pos0 = rig.motor.odometer
    acc0 = basal_acc(pump)
    run(rig, pump, 1800, step_ms=5000)
    assert rig.motor.odometer == pos0
    assert pump.cancel_temp_basal() == S.OK
    assert pump.basal_rate() == 1200
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    run(rig, pump, 1800, step_ms=5000)
    assert (rig.motor.odometer - pos0) * 50 * HOUR_MS + basal_acc(pump) - acc0 \
        == 1200 * 1800 * 1000
    assert pump.cancel_temp_basal() == S.E_NO_TEMP_BASAL
    assert [r[3] for r in records(pump, S.H_TEMP_END, seq)] == [S.TEMP_END_CANCELLED]


@pytest.mark.req("THR-2", "HIS-1")
def test_new_temp_basal_replaces_running_one():
    rig, pump = make_pump(rates=(1000,))
    seq = pump.history.next_seq
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 2000, 60) == S.OK
    run(rig, pump, 600)
    assert pump.set_temp_basal(S.TEMP_PERCENT, 50, 30) == S.OK
    assert pump.basal_rate() == 500
    assert pump.status()["temp_left_min"] == 30
    kinds = [(r[2], r[3]) for r in history(pump) if r[0] >= seq
             and r[2] in (S.H_TEMP_START, S.H_TEMP_END)]
    assert kinds == [(S.H_TEMP_START, S.TEMP_ABSOLUTE), (S.H_TEMP_END, S.TEMP_END_CANCELLED),
                     (S.H_TEMP_START, S.TEMP_PERCENT)]


@pytest.mark.req("THR-2", "THR-11")
def test_temp_basal_duration_uses_board_clock_not_wall_clock():
    rig, pump = make_pump(rates=(1000,))
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 400, 60) == S.OK
    run(rig, pump, 1200)
    assert pump.set_time(MONDAY_2026 + 5 * 3600, 0) == S.OK  # wall clock jumps 5 h
    assert pump.status()["temp_left_min"] == 40
    run(rig, pump, 2399)
    assert pump.status()["temp_kind"] == S.TEMP_ABSOLUTE
    run(rig, pump, 1)
    assert pump.status()["temp_kind"] == S.TEMP_NONE
