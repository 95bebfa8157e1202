"""THR-6 limits enforced by the firmware, THR-5 suspend/resume and the no-delivery alarm."""

import pytest

from boards.fakes import Rig
from firmware.pump import Pump
from protocol import spec as S
from tests.pumpkit import events, history, make_pump, records, run

MIN = 60


def pump_history_since(pump, seq):
    """History from seq on, alarms left out."""
    return [r for r in history(pump) if r[0] >= seq and r[2] != S.H_ALARM]


def fresh_pump():
    rig = Rig(50)
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    return rig, pump


# ------------------------------------------------------------------ THR-6 setting ranges
SETTABLE = [sid for sid in range(S.SETTINGS_COUNT) if sid != S.SET_UTC_OFFSET]


@pytest.mark.req("THR-6", "LNK-4", "HIS-1")
@pytest.mark.parametrize("sid", SETTABLE, ids=[S.SETTINGS[i][0] for i in SETTABLE])
def test_setting_range_enforced_never_clamped(sid):
    rig, pump = fresh_pump()
    name, default, lo, hi, unit = S.SETTINGS[sid]
    assert pump.setting(sid) == default
    seq = pump.history.next_seq
    for value in (lo - 1, hi + 1, -(1 << 20), 1 << 29):
        assert pump.settings.set(sid, value) == S.E_OUT_OF_RANGE, value
        assert pump.detail == sid
        assert pump.setting(sid) == default  # not clamped, unchanged
    assert pump.history.next_seq == seq
    for value in (hi, lo):
        assert pump.settings.set(sid, value) == S.OK
        assert pump.setting(sid) == value
    recs = records(pump, S.H_SETTING, seq)
    assert [(r[3], r[4], r[5]) for r in recs] == [(sid, default, hi), (sid, hi, lo)]


@pytest.mark.req("THR-6", "ALM-4")
def test_auto_off_between_1_and_4_hours_refused():
    rig, pump = fresh_pump()
    for hours in (1, 2, 3, 4):
        assert pump.settings.set(S.SET_AUTO_OFF, hours) == S.E_OUT_OF_RANGE
        assert pump.detail == S.SET_AUTO_OFF
    assert pump.setting(S.SET_AUTO_OFF) == 0
    assert pump.settings.set(S.SET_AUTO_OFF, 5) == S.OK


@pytest.mark.req("THR-6", "LNK-4")
def test_unknown_setting_and_utc_offset_not_settable():
    rig, pump = fresh_pump()
    for sid in (-1, S.SETTINGS_COUNT, S.SET_UTC_OFFSET):
        assert pump.settings.set(sid, 0) == S.E_BAD_ARG
        assert pump.detail == 0
    assert pump.setting(S.SET_UTC_OFFSET) == 0


# ------------------------------------------------------------------ THR-6 max bolus
@pytest.mark.req("THR-6", "THR-3")
def test_max_bolus_default_and_lowered():
    rig, pump = make_pump(50, rates=(0,))
    assert pump.setting(S.SET_MAX_BOLUS) == 10000
    assert pump.bolus(S.BOLUS_NORMAL, 10050, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 10050, 60) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS
    assert pump.settings.set(S.SET_MAX_BOLUS, 2000) == S.OK
    assert pump.bolus(S.BOLUS_DUAL, 1000, 1050, 60) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS
    assert pump.bolus(S.BOLUS_DUAL, 1000, 1000, 60) == S.OK
    assert pump.cancel_bolus() == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS, 0) == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS
    assert pump.status()["bolus_today"] == 0


# ------------------------------------------------------------------ THR-6 max basal
@pytest.mark.req("THR-6", "THR-1", "THR-2")
def test_max_basal_applies_to_profiles_and_temp_basal():
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.settings.set(S.SET_MAX_BASAL, 2000) == S.OK
    before = pump.settings.get_profile(1)
    assert pump.settings.set_profile(1, b"high", [0, 5], [1000, 2050]) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BASAL
    assert pump.settings.get_profile(1) == before
    assert pump.settings.set_profile(1, b"high", [0, 5], [1000, 2000]) == S.OK
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 2050, 60) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BASAL
    assert pump.set_temp_basal(S.TEMP_PERCENT, 205, 60) == S.E_OVER_LIMIT  # 1 U/h * 205 %
    assert pump.detail == S.SET_MAX_BASAL
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    assert pump.set_temp_basal(S.TEMP_PERCENT, 200, 60) == S.OK
    assert pump.basal_rate() == 2000
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 2000, 60) == S.OK


@pytest.mark.req("THR-6", "THR-1")
def test_lowering_max_basal_below_a_profile_refused():
    rig, pump = make_pump(50, rates=(3000,))
    assert pump.settings.set_profile(2, b"spare", [0, 40], [1000, 4000]) == S.OK  # not scheduled
    seq = pump.history.next_seq
    assert pump.settings.set(S.SET_MAX_BASAL, 3999) == S.E_PROFILE_IN_USE_OVER_LIMIT
    assert pump.detail == 2
    assert pump.setting(S.SET_MAX_BASAL) == 5000
    assert pump.history.next_seq == seq
    assert pump.settings.set(S.SET_MAX_BASAL, 4000) == S.OK
    assert pump.settings.set_profile(2, b"spare", [0], [1000]) == S.OK
    assert pump.settings.set(S.SET_MAX_BASAL, 2999) == S.E_PROFILE_IN_USE_OVER_LIMIT
    assert pump.detail == 0
    assert pump.settings.set(S.SET_MAX_BASAL, 3000) == S.OK
    assert pump.setting(S.SET_MAX_BASAL) == 3000


@pytest.mark.req("THR-6", "THR-2")
def test_profile_edit_cannot_push_percent_temp_over_max_basal():
    """A 250 % temp basal on a 1 U/h profile is 2.5 U/h; raising the running profile to
    4 U/h would deliver 10 U/h, twice the 5 U/h max basal: refused, naming the limit."""
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.set_temp_basal(S.TEMP_PERCENT, 250, 120) == S.OK
    assert pump.settings.set_profile(0, b"test", [0], [4000]) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BASAL
    assert pump.basal_rate() == 2500
    assert pump.settings.set_profile(0, b"test", [0], [2000]) == S.OK
    assert pump.basal_rate() == 5000
    # a profile not on the schedule may still be programmed
    assert pump.settings.set_profile(1, b"other", [0], [4000]) == S.OK
    # ... but not scheduled while the temp basal would run it over the limit
    assert pump.settings.set_schedule([1] * 7) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BASAL
    assert pump.settings.schedule() == [0] * 7
    assert pump.cancel_temp_basal() == S.OK
    assert pump.settings.set_schedule([1] * 7) == S.OK
    assert pump.basal_rate() == 4000


@pytest.mark.req("THR-6", "THR-2")
def test_lowering_max_basal_below_running_temp_basal_refused():
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 4000, 60) == S.OK
    assert pump.settings.set(S.SET_MAX_BASAL, 3000) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BASAL
    assert pump.setting(S.SET_MAX_BASAL) == 5000
    assert pump.set_temp_basal(S.TEMP_PERCENT, 200, 60) == S.OK  # 2 U/h
    assert pump.settings.set(S.SET_MAX_BASAL, 1999) == S.E_OVER_LIMIT
    assert pump.settings.set(S.SET_MAX_BASAL, 2000) == S.OK
    assert pump.cancel_temp_basal() == S.OK
    assert pump.settings.set(S.SET_MAX_BASAL, 1000) == S.OK


# ------------------------------------------------------------------ THR-6 max bolus in 60 min
@pytest.mark.req("THR-6", "THR-3")
def test_max_bolus_within_60_min():
    rig, pump = make_pump(50, rates=(0,))
    assert pump.setting(S.SET_MAX_BOLUS_1H) == 15000
    assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK
    run(rig, pump, 100)
    # what the running bolus still owes counts too
    assert pump.bolus_last_hour() == 10000
    run(rig, pump, 300)  # 10 U at 1.5 U/min: done after 400 s
    assert pump.bolus_progress() == (0, 0, 0)
    assert pump.status()["bolus_today"] == 10000
    # every minute up to one hour after the first pulse, all 10 U count
    for _ in range(53):
        run(rig, pump, MIN, step_ms=60000)
        assert pump.bolus_last_hour() == 10000
        assert pump.bolus(S.BOLUS_NORMAL, 5050, 0, 0) == S.E_OVER_LIMIT
        assert pump.detail == S.SET_MAX_BOLUS_1H
    assert pump.status()["local_ms"] == 3580000  # 59 min 40 s after the bolus started
    run(rig, pump, 20)  # the first pulse (at 2 s) is now 59 min 58 s old
    assert pump.bolus_last_hour() == 10000
    assert pump.bolus(S.BOLUS_NORMAL, 5050, 0, 0) == S.E_OVER_LIMIT
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    assert pump.cancel_bolus() == S.OK
    # well over an hour after the last pulse nothing counts any more
    run(rig, pump, 70 * MIN, step_ms=60000)
    assert pump.bolus_last_hour() == 0
    assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK


@pytest.mark.req("THR-6", "THR-4")
def test_max_bolus_1h_counts_several_boluses():
    rig, pump = make_pump(50, rates=(0,))
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 3000) == S.OK
    for _ in range(3):
        assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
        run(rig, pump, 5 * MIN, step_ms=5000)
    assert pump.bolus_last_hour() == 3000
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS_1H
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 50, 480) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS_1H


# ------------------------------------------------------------------ THR-6 max TDD
@pytest.mark.req("THR-6", "THR-10")
def test_max_total_daily_dose_counts_basal_and_bolus():
    rig, pump = make_pump(50, rates=(1000,))  # starts Monday 00:00 local
    assert pump.settings.set(S.SET_MAX_TDD, 3000) == S.OK
    run(rig, pump, 30 * MIN, step_ms=60000)
    assert pump.status()["basal_today"] == 500
    assert pump.bolus(S.BOLUS_NORMAL, 2550, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_TDD
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    run(rig, pump, 2 * MIN)
    assert pump.bolus(S.BOLUS_NORMAL, 550, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_TDD
    assert pump.bolus(S.BOLUS_NORMAL, 450, 0, 0) == S.OK
    run(rig, pump, 1 * MIN)
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_OVER_LIMIT
    # the limit is a rolling 24 h, not the calendar day: midnight starts a new day's
    # total but not a new limit (THR-6); basal alone is over it, so it alarms and goes on
    run(rig, pump, 86400 - 33 * MIN, step_ms=60000)
    assert pump.status()["day"] == 2512
    assert pump.status()["basal_today"] == 0
    assert pump.alarms.active[S.A_DOSE_LIMIT]
    assert pump.basal_rate() == 1000
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_TDD
    # 24 h (and the 5-min bucket the window rounds up to) without insulin empty it
    assert pump.suspend() == S.OK
    run(rig, pump, 86400 + 300, step_ms=60000)
    assert pump.dose_last_day() == 0
    assert not pump.alarms.active[S.A_DOSE_LIMIT]
    assert pump.resume() == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 3000, 0, 0) == S.OK


@pytest.mark.req("THR-6", "THR-3")
def test_the_24h_window_counts_what_the_running_bolus_still_owes():
    """Like the 60-min window: a bolus in progress counts whole toward the 24-h limit, so
    the refusal names that limit (mutant day-window-without-running-bolus)."""
    rig, pump = make_pump(50, rates=(0,))
    assert pump.settings.set(S.SET_MAX_TDD, 15000) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 50000) == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK
    run(rig, pump, 100)  # 1.5 U/min: 2.5 U delivered, 7.5 U still owed
    assert pump.bolus_progress()[1] == 2500
    assert pump.doses.total_day() == 2500
    assert pump.dose_last_day() == 10000
    assert pump.bolus(S.BOLUS_NORMAL, 5050, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_TDD
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.E_BOLUS_RUNNING


# ------------------------------------------------------------------ THR-5 suspend / resume
@pytest.mark.req("THR-5", "THR-3", "HIS-1", "LNK-2")
def test_suspend_interrupts_bolus_and_ends_temp_basal():
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.bolus(S.BOLUS_NORMAL, 1500, 0, 0) == S.OK
    bid = pump.detail
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 2000, 60) == S.OK
    run(rig, pump, 21)
    events(pump)
    seq = pump.history.next_seq
    assert pump.suspend() == S.OK
    assert events(pump) == [(S.EV_BOLUS_END, bid, 500, S.BOLUS_INTERRUPTED),
                            (S.EV_STATE, S.STOP_USER, 0, 0)]
    got = [r[2:] for r in pump_history_since(pump, seq)]
    assert got == [(S.H_BOLUS_END, S.BOLUS_INTERRUPTED, bid, 500, 1500),
                   (S.H_TEMP_END, S.TEMP_END_SUSPENDED, 0, 0, 0),
                   (S.H_SUSPEND, S.STOP_USER, 0, 0, 0)]
    stat = pump.status()
    assert (stat["stop"], stat["basal_rate"], stat["temp_kind"], stat["bolus_id"]) == \
        (S.STOP_USER, 0, S.TEMP_NONE, 0)
    assert stat["bolus_today"] == 500
    pos = rig.motor.odometer
    run(rig, pump, 3 * 3600, step_ms=10000)
    assert rig.motor.odometer == pos  # nothing at all while suspended
    assert pump.suspend() == S.E_SUSPENDED
    assert pump.detail == S.STOP_USER
    seq = pump.history.next_seq
    assert pump.resume() == S.OK
    assert events(pump)[-1] == (S.EV_STATE, S.STOP_NONE, 0, 0)
    assert [r[2:4] for r in pump_history_since(pump, seq)] == [(S.H_RESUME, S.STOP_USER)]
    # back on the profile, without the temp basal, and the bolus is not resumed
    assert pump.basal_rate() == 1000
    assert pump.bolus_progress() == (0, 0, 0)
    run(rig, pump, 3600, step_ms=10000)
    assert pump.status()["bolus_today"] == 500
    assert (rig.motor.odometer - pos) * 50 == 1000
    assert pump.resume() == S.E_NOT_SUSPENDED


@pytest.mark.req("THR-5", "THR-4")
def test_suspend_interrupts_extended_bolus():
    rig, pump = make_pump(50, rates=(0,))
    assert pump.bolus(S.BOLUS_DUAL, 500, 1000, 30) == S.OK
    bid = pump.detail
    run(rig, pump, 920)
    assert pump.suspend() == S.OK
    (end,) = records(pump, S.H_BOLUS_END)
    assert end[3:] == (S.BOLUS_INTERRUPTED, bid, 1000, 1500)
    assert pump.resume() == S.OK
    run(rig, pump, 1800, step_ms=10000)
    assert pump.status()["bolus_today"] == 1000


@pytest.mark.req("THR-5", "THR-12", "RES-1", "BAT-1", "LNK-4")
def test_resume_refusals():
    rig, pump = make_pump(50, rates=(0,), fill_mu=10000)
    assert pump.suspend() == S.OK
    assert pump.rewind() == S.OK
    assert pump.resume() == S.E_NOT_FILLED
    assert pump.fill(10000) == S.OK
    assert pump.resume() == S.OK
    # empty the reservoir with a bolus: delivery stops, resume is refused
    assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK
    run(rig, pump, 400, step_ms=10000)
    assert pump.reservoir_mu() == 0
    assert pump.status()["stop"] == S.STOP_RESERVOIR
    assert pump.resume() == S.E_RESERVOIR_EMPTY
    assert pump.suspend() == S.E_SUSPENDED
    assert pump.detail == S.STOP_RESERVOIR
    # refill; then a flat battery
    assert pump.rewind() == S.OK
    assert pump.fill(20000) == S.OK
    rig.battery.level = 0
    run(rig, pump, 1)
    assert pump.status()["stop"] == S.STOP_BATTERY
    assert pump.resume() == S.E_BATTERY_DEPLETED
    rig.battery.level = 100
    assert pump.resume() == S.OK


@pytest.mark.req("THR-5", "ALM-1")
def test_suspend_reminder_repeats():
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.setting(S.SET_SUSPEND_REMINDER) == 30
    seq = pump.history.next_seq
    assert pump.suspend() == S.OK
    raises = []
    count = 0
    for minute in range(1, 101):
        run(rig, pump, MIN, step_ms=10000)
        ups = [r for r in records(pump, S.H_ALARM, seq)
               if r[4] == S.A_SUSPEND_REMINDER and r[3] == S.ALARM_RAISED]
        if len(ups) > count:
            raises.append(minute)
            count = len(ups)
        if minute == 35:
            assert pump.ack_alarm(S.A_SUSPEND_REMINDER) == S.OK  # latched: ack clears it
        active = bool(pump.alarms.active[S.A_SUSPEND_REMINDER])
        assert active == (minute >= 30 and not 35 <= minute < 60), minute
    assert raises == [30, 60, 90]  # every 30 min, acknowledged or not
    assert [r[5] for r in ups] == [S.STOP_USER] * 3
    assert S.ALARMS[S.A_SUSPEND_REMINDER][1] == S.PRIO_LOW
    assert pump.resume() == S.OK
    assert not pump.alarms.active[S.A_SUSPEND_REMINDER]
    run(rig, pump, 60 * MIN, step_ms=60000)
    assert not pump.alarms.active[S.A_SUSPEND_REMINDER]
    # a shorter period
    assert pump.settings.set(S.SET_SUSPEND_REMINDER, 5) == S.OK
    assert pump.suspend() == S.OK
    run(rig, pump, 4 * MIN, step_ms=60000)
    assert not pump.alarms.active[S.A_SUSPEND_REMINDER]
    run(rig, pump, MIN, step_ms=60000)
    assert pump.alarms.active[S.A_SUSPEND_REMINDER]


@pytest.mark.req("THR-5", "ALM-1")
def test_no_delivery_alarm_after_4_hours():
    rig, pump = make_pump(50, rates=(0,))  # nothing delivered since boot
    assert pump.setting(S.SET_NO_DELIVERY) == 240
    run(rig, pump, 239 * MIN, step_ms=60000)
    assert not pump.alarms.active[S.A_NO_DELIVERY]
    run(rig, pump, MIN, step_ms=60000)
    assert pump.alarms.active[S.A_NO_DELIVERY]
    assert S.ALARMS[S.A_NO_DELIVERY][1] == S.PRIO_HIGH
    assert pump.alarms.highest() == S.PRIO_HIGH
    (up,) = [r for r in records(pump, S.H_ALARM) if r[4] == S.A_NO_DELIVERY]
    assert (up[3], up[5]) == (S.ALARM_RAISED, 240)
    # acknowledging does not end it; insulin flowing does
    assert pump.ack_alarm(S.A_NO_DELIVERY) == S.OK
    assert pump.alarms.active[S.A_NO_DELIVERY]
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.OK
    run(rig, pump, 5)
    assert not pump.alarms.active[S.A_NO_DELIVERY]


@pytest.mark.req("THR-5")
def test_no_delivery_alarm_counts_from_last_pulse_while_suspended():
    rig, pump = make_pump(50, rates=(1000,))  # a pulse every 3 min
    assert pump.settings.set(S.SET_NO_DELIVERY, 60) == S.OK
    run(rig, pump, 3 * MIN)
    pos = rig.motor.odometer
    run(rig, pump, 1)
    assert pump.suspend() == S.OK
    waited = 1
    while not pump.alarms.active[S.A_NO_DELIVERY]:
        run(rig, pump, 1)
        waited += 1
    assert rig.motor.odometer == pos
    # raised one hour after the last pulse, to within one tick
    assert 60 * MIN - 1 <= waited <= 60 * MIN
