"""THR-10 daily totals, THR-11 clock, THR-12 reservoir change, RES-1 reservoir tracking."""

import pytest

from protocol import spec as S
from tests.pumpkit import (
    DAY_S,
    HOUR_MS,
    MONDAY_2026,
    history,
    local_time,
    make_pump,
    records,
    run,
    utc_for,
)

MONDAY = MONDAY_2026 // DAY_S  # day 2511
MIN = 60
PRIMED = 10 * 50 + 2 * 50  # what make_pump primes with 50-mU pulses


# ------------------------------------------------------------------ THR-10 daily totals
@pytest.mark.req("THR-10", "THR-4", "HIS-1")
def test_daily_totals_split_basal_bolus_prime_per_day():
    rig, pump = make_pump(50, rates=(1000,))  # Monday 00:00 local
    run(rig, pump, 8 * 3600, step_ms=60000)
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    run(rig, pump, 16 * 3600 + 23 * 3600 + 30 * MIN, step_ms=60000)
    assert local_time(pump) == (MONDAY + 1, 23 * HOUR_MS + 30 * 60000)
    # Tuesday 23:30: dual wave, 0.5 U now and 1 U over 60 min, across midnight
    assert pump.bolus(S.BOLUS_DUAL, 500, 1000, 60) == S.OK
    run(rig, pump, 30 * MIN + 24 * 3600 + 12 * 3600, step_ms=60000)
    assert local_time(pump) == (MONDAY + 3, 12 * HOUR_MS)
    assert pump.day_totals(MONDAY) == (24000, 2000, PRIMED)
    # extended pulses (one per 3 min from 23:30:20) due by midnight: 9 of them
    assert pump.day_totals(MONDAY + 1) == (24000, 500 + 450, 0)
    assert pump.day_totals(MONDAY + 2) == (24000, 550, 0)
    assert pump.day_totals(MONDAY + 3) == (12000, 0, 0)  # today, running
    stat = pump.status()
    assert (stat["basal_today"], stat["bolus_today"], stat["prime_today"]) == (12000, 0, 0)
    assert pump.day_totals(MONDAY - 1) is None
    closed = [r[4:] for r in records(pump, S.H_DAY_TOTAL) if r[4] >= MONDAY]
    assert closed == [(MONDAY, 24000, 2000), (MONDAY + 1, 24000, 950), (MONDAY + 2, 24000, 550)]


@pytest.mark.req("THR-10", "THR-7")
@pytest.mark.parametrize("step_ms", [1000, 7000, 45000, 60000])
def test_pulses_due_by_midnight_count_for_the_day_before(step_ms):
    """3 U/h from 23:30, nothing after midnight: the 15 min before midnight are 0.75 U, all of
    it the old day's, whatever the tick length. Likewise for an extended bolus."""
    rig, pump = make_pump(50, starts=(0, 47), rates=(0, 3000), resume=False)
    assert pump.set_time(utc_for(MONDAY, 23, 45), 0) == S.OK
    assert pump.resume() == S.OK
    # 1 U over 30 min from 23:45, a pulse every 90 s: 10 of them due by midnight
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 1000, 30) == S.OK
    run(rig, pump, 40 * MIN, step_ms=step_ms)
    assert pump.day_totals(MONDAY)[:2] == (750, 500)
    assert pump.day_totals(MONDAY + 1)[:2] == (0, 500)


@pytest.mark.req("THR-10", "HIS-1")
def test_daily_totals_kept_for_over_90_days():
    """98 days, each visited from 23:50 to 00:10 through the day rollover (the clock is set
    forward in between): every day's totals are kept for 96 days, older ones read as absent."""
    starts, rates = (0, 1, 47), (3000, 0, 3000)  # 3 U/h around midnight: a pulse a minute
    rig, pump = make_pump(50, starts=starts, rates=rates, resume=False)
    # 98 days of boluses within 33 h of the monotonic clock: the rolling 24-h limit
    # (THR-6) counts them together, whatever the calendar says
    assert pump.settings.set(S.SET_MAX_TDD, 250000) == S.OK
    first = MONDAY + 1
    days = 98
    for i in range(days):
        day = first + i
        assert pump.set_time(utc_for(day, 23, 50), 0) == S.OK
        if i == 0:
            assert pump.resume() == S.OK
        assert pump.bolus(S.BOLUS_NORMAL, 50 * (day % 9 + 1), 0, 0) == S.OK
        run(rig, pump, 20 * MIN, step_ms=60000)
    today = first + days
    assert local_time(pump) == (today, 10 * 60000)
    assert pump.day_totals(today) == (500, 0, 0)
    for day in range(today - 96, today):
        basal = 500 if day == first else 1000
        assert pump.day_totals(day) == (basal, 50 * (day % 9 + 1), 0), day
    for day in range(first - 1, today - 96):
        assert pump.day_totals(day) is None, day  # overwritten, not misread
    # the closed days are in the history as well, all 98 of them
    closed = {r[4]: r[5:] for r in records(pump, S.H_DAY_TOTAL)}
    for day in range(first, today):
        assert closed[day] == (500 if day == first else 1000, 50 * (day % 9 + 1)), day


# ------------------------------------------------------------------ THR-11 clock
@pytest.mark.req("THR-11", "HIS-1")
def test_set_time_moves_schedule_not_delivery():
    starts, rates = (0, 16, 36), (600, 1500, 900)  # 08:00 and 18:00
    rig, pump = make_pump(50, starts=starts, rates=rates, resume=False)
    assert pump.set_time(utc_for(MONDAY, 7), 0) == S.OK
    assert pump.resume() == S.OK
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 2000, 120) == S.OK
    assert pump.set_temp_basal(S.TEMP_PERCENT, 50, 120) == S.OK
    run(rig, pump, 30 * MIN)
    bolus_id = pump.bolus_progress()[0]
    before = (pump.reservoir_mu(), rig.motor.odometer, pump.day_totals(MONDAY),
              pump.bolus_progress(), pump.iob(), pump.bolus_last_hour(),
              pump.status()["temp_left_min"])
    assert pump.basal_rate() == 300
    seq = pump.history.next_seq
    assert pump.set_time(utc_for(MONDAY, 18, 15, 120), 120) == S.OK  # now 18:15 at UTC+2
    after = (pump.reservoir_mu(), rig.motor.odometer, pump.day_totals(MONDAY),
             pump.bolus_progress(), pump.iob(), pump.bolus_last_hour(),
             pump.status()["temp_left_min"])
    assert after == before
    assert pump.basal_rate() == 450  # 50 % of the evening rate
    assert pump.utc_seconds() == utc_for(MONDAY, 18, 15, 120)
    (rec,) = records(pump, S.H_TIME_CHANGE, seq)
    assert rec[4:] == (MONDAY * DAY_S + 7 * 3600 + 1800, MONDAY * DAY_S + 18 * 3600 + 900, 120)
    assert pump.setting(S.SET_UTC_OFFSET) == 120
    # the bolus runs on by the board clock: done 120 min after it started
    run(rig, pump, 90 * MIN - 1)
    assert pump.bolus_progress()[0] == bolus_id
    run(rig, pump, 1)
    assert pump.bolus_progress() == (0, 0, 0)
    assert records(pump, S.H_BOLUS_END)[-1][3:6] == (S.BOLUS_COMPLETED, bolus_id, 2000)


@pytest.mark.req("THR-11")
def test_utc_offset_change_alone_shifts_local_time():
    rig, pump = make_pump(50, starts=(0, 2), rates=(500, 2000))  # 2 U/h from 01:00
    assert pump.basal_rate() == 500
    assert pump.set_time(MONDAY_2026, 90) == S.OK
    assert local_time(pump) == (MONDAY, 90 * 60000)
    assert pump.basal_rate() == 2000
    run(rig, pump, 600)
    assert pump.utc_seconds() == MONDAY_2026 + 600
    assert pump.set_time(MONDAY_2026 + 600, -60) == S.OK  # back to the previous day
    assert local_time(pump) == (MONDAY - 1, 23 * HOUR_MS + 10 * 60000)
    assert pump.weekday() == 6


@pytest.mark.req("THR-11", "THR-10")
def test_set_time_across_days_keeps_each_days_total():
    rig, pump = make_pump(50, rates=(1200,))
    run(rig, pump, 3600, step_ms=60000)
    assert pump.day_totals(MONDAY) == (1200, 0, PRIMED)
    assert pump.set_time(utc_for(MONDAY + 1, 9), 0) == S.OK
    assert pump.day_totals(MONDAY) == (1200, 0, PRIMED)
    assert pump.day_totals(MONDAY + 1) == (0, 0, 0)
    run(rig, pump, 3600, step_ms=60000)
    # back to Monday: its total goes on from where it was
    assert pump.set_time(utc_for(MONDAY, 2), 0) == S.OK
    assert pump.day_totals(MONDAY + 1) == (1200, 0, 0)
    assert pump.day_totals(MONDAY) == (1200, 0, PRIMED)
    run(rig, pump, 3600, step_ms=60000)
    assert pump.day_totals(MONDAY) == (2400, 0, PRIMED)


@pytest.mark.req("THR-11", "LNK-4")
@pytest.mark.parametrize("utc,offset,detail", [
    (MONDAY_2026, -721, 1), (MONDAY_2026, 841, 1), (MONDAY_2026, -100000, 1),
    (-1, 0, 0), (1 << 30, 0, 0), ((1 << 30) - 3600, 60, 0), (60, -2, 0),
])
def test_set_time_refuses_bad_values(utc, offset, detail):
    rig, pump = make_pump(50, offset_min=60, utc=MONDAY_2026 - 3600)
    before = (local_time(pump), pump.setting(S.SET_UTC_OFFSET), pump.history.next_seq)
    assert pump.set_time(utc, offset) == S.E_OUT_OF_RANGE
    assert pump.detail == detail
    assert (local_time(pump), pump.setting(S.SET_UTC_OFFSET), pump.history.next_seq) == before


@pytest.mark.req("THR-11")
def test_set_time_offset_edges_accepted():
    rig, pump = make_pump(50)
    assert pump.set_time(MONDAY_2026, -720) == S.OK
    assert local_time(pump) == (MONDAY - 1, 12 * HOUR_MS)
    assert pump.set_time(MONDAY_2026, 840) == S.OK
    assert local_time(pump) == (MONDAY, 14 * HOUR_MS)
    assert pump.utc_seconds() == MONDAY_2026


# ------------------------------------------------------------------ THR-12 reservoir change
@pytest.mark.req("THR-12", "RES-1", "HIS-1")
def test_rewind_fill_prime_sequence_and_accounting():
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.rewind() == S.E_NOT_SUSPENDED
    assert pump.prime(S.PRIME_TUBING, 500) == S.E_NOT_SUSPENDED
    assert pump.suspend() == S.OK
    assert pump.fill(200000) == S.E_NOT_REWOUND
    seq = pump.history.next_seq
    day0 = pump.day_totals(MONDAY)
    assert pump.rewind() == S.OK
    assert rig.motor.position() == 0
    assert pump.reservoir_mu() == 0
    assert pump.prime(S.PRIME_TUBING, 500) == S.E_NOT_FILLED
    assert pump.resume() == S.E_NOT_FILLED
    for volume, code, detail in [(9950, S.E_OUT_OF_RANGE, 0), (400050, S.E_OUT_OF_RANGE, 0),
                                 (200010, S.E_INCREMENT, 50)]:
        assert pump.fill(volume) == code
        assert pump.detail == detail
    assert pump.fill(200000) == S.OK
    assert pump.reservoir_mu() == 200000
    for kind, amount, code, detail in [(2, 500, S.E_BAD_ARG, 0),
                                       (S.PRIME_TUBING, 0, S.E_OUT_OF_RANGE, 1),
                                       (S.PRIME_TUBING, 30050, S.E_OUT_OF_RANGE, 1),
                                       (S.PRIME_CANNULA, 3050, S.E_OUT_OF_RANGE, 1),
                                       (S.PRIME_CANNULA, 75, S.E_INCREMENT, 50)]:
        assert pump.prime(kind, amount) == code
        assert pump.detail == detail
    assert pump.prime(S.PRIME_TUBING, 5000) == S.OK
    assert pump.prime(S.PRIME_CANNULA, 300) == S.OK
    assert pump.reservoir_mu() == 194700
    assert rig.motor.position() == 106
    # priming is counted as prime, not as insulin given
    assert pump.day_totals(MONDAY) == (day0[0], day0[1], day0[2] + 5300)
    assert pump.status()["prime_today"] == PRIMED + 5300
    got = [r[2:5] for r in history(pump) if r[0] >= seq and r[2] != S.H_ALARM]
    assert got == [(S.H_REWIND, 0, 0), (S.H_FILL, 0, 200000),
                   (S.H_PRIME, S.PRIME_TUBING, 5000), (S.H_PRIME, S.PRIME_CANNULA, 300)]
    assert pump.resume() == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 1500, 0, 0) == S.OK
    run(rig, pump, 3600, step_ms=60000)
    assert pump.reservoir_mu() == 194700 - 1000 - 1500
    assert pump.day_totals(MONDAY) == (1000, 1500, PRIMED + 5300)
    assert pump.minutes_left() == 192200 * 60 // 1000


@pytest.mark.req("THR-12", "RES-1")
def test_prime_refused_beyond_reservoir():
    rig, pump = make_pump(50, fill_mu=10000)  # 9400 mU left
    assert pump.suspend() == S.OK
    for _ in range(3):
        assert pump.prime(S.PRIME_CANNULA, 3000) == S.OK
    assert pump.reservoir_mu() == 400
    assert pump.prime(S.PRIME_CANNULA, 450) == S.E_RESERVOIR_EMPTY
    assert pump.detail == 400
    assert pump.reservoir_mu() == 400
    assert pump.day_totals(MONDAY)[:2] == (0, 0)


@pytest.mark.req("THR-12", "ALM-1")
def test_set_change_reminder_after_3_days():
    rig, pump = make_pump(50, rates=(500,))  # cannula filled at the start
    run(rig, pump, 72 * 3600 - 60, step_ms=60000)
    assert not pump.alarms.active[S.A_SET_CHANGE]
    seq = pump.history.next_seq
    run(rig, pump, 60, step_ms=60000)
    assert pump.alarms.active[S.A_SET_CHANGE]
    assert S.ALARMS[S.A_SET_CHANGE][1] == S.PRIO_LOW
    (up,) = [r for r in records(pump, S.H_ALARM, seq) if r[4] == S.A_SET_CHANGE]
    assert (up[3], up[5]) == (S.ALARM_RAISED, 72)
    assert pump.ack_alarm(S.A_SET_CHANGE) == S.OK
    assert not pump.alarms.active[S.A_SET_CHANGE]
    # reminded again 12 h later
    run(rig, pump, 12 * 3600 - 60, step_ms=60000)
    assert not pump.alarms.active[S.A_SET_CHANGE]
    run(rig, pump, 60, step_ms=60000)
    assert pump.alarms.active[S.A_SET_CHANGE]
    # a new infusion set: filling the cannula clears it and starts the 3 days again
    assert pump.suspend() == S.OK
    assert pump.prime(S.PRIME_CANNULA, 300) == S.OK
    assert not pump.alarms.active[S.A_SET_CHANGE]
    assert pump.resume() == S.OK
    run(rig, pump, 3600, step_ms=60000)
    assert not pump.alarms.active[S.A_SET_CHANGE]


# ------------------------------------------------------------------ RES-1 reservoir
@pytest.mark.req("RES-1", "THR-7")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
def test_reservoir_tracked_in_pulses_and_minutes_left(pulse_mu):
    rig, pump = make_pump(pulse_mu, rates=(1500,), fill_mu=200000)
    left = 200000 - 12 * pulse_mu
    assert pump.reservoir_mu() == left
    assert pump.minutes_left() == left * 60 // 1500
    run(rig, pump, 2 * 3600, step_ms=30000)
    left -= 3000
    assert pump.reservoir_mu() == left
    assert pump.status()["reservoir"] == left
    assert pump.minutes_left() == left * 60 // 1500
    assert pump.set_temp_basal(S.TEMP_PERCENT, 200, 60) == S.OK
    assert pump.minutes_left() == left * 60 // 3000
    assert pump.set_temp_basal(S.TEMP_PERCENT, 0, 60) == S.OK
    assert pump.minutes_left() == -1  # nothing flowing: no estimate
    assert pump.suspend() == S.OK
    assert pump.minutes_left() == -1


@pytest.mark.req("RES-1", "ALM-1")
def test_reservoir_low_very_low_and_empty():
    rig, pump = make_pump(50, rates=(0,), fill_mu=25000)  # 24400 mU after priming
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 50000) == S.OK
    run(rig, pump, 1)
    assert not pump.alarms.active[S.A_RESERVOIR_LOW]
    assert pump.bolus(S.BOLUS_NORMAL, 4400, 0, 0) == S.OK
    run(rig, pump, 180, step_ms=10000)
    assert pump.reservoir_mu() == 20000
    assert pump.alarms.active[S.A_RESERVOIR_LOW]  # default 20 U
    assert not pump.alarms.active[S.A_RESERVOIR_VERY_LOW]
    assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK
    run(rig, pump, 400, step_ms=10000)
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    run(rig, pump, 200, step_ms=10000)
    assert pump.reservoir_mu() == 5000
    assert pump.alarms.active[S.A_RESERVOIR_VERY_LOW]
    assert pump.status()["stop"] == S.STOP_NONE
    # the last 5 U: the bolus asking for more is refused, one that fits empties it
    assert pump.bolus(S.BOLUS_NORMAL, 5050, 0, 0) == S.E_RESERVOIR_EMPTY
    assert pump.detail == 5000
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    run(rig, pump, 200, step_ms=10000)
    assert pump.reservoir_mu() == 0
    assert pump.status()["stop"] == S.STOP_RESERVOIR
    assert pump.alarms.active[S.A_RESERVOIR_EMPTY]
    assert S.ALARMS[S.A_RESERVOIR_EMPTY][1] == S.PRIO_HIGH
    assert pump.day_totals(MONDAY)[1] == 24400
