"""Safety stops: occlusion (ALM-3), auto-off (ALM-4), reservoir (RES-1), battery (BAT-1),
power-on self-tests and the watchdog (ALM-5)."""

import pytest

import firmware.main
from firmware.hal import R_DOSES_A, R_DOSES_B
from firmware.pump import S_BOLUS_ID, S_NEXT_BOLUS_ID, S_STOP, Pump
from protocol import spec as S
from tests.pumpkit import (
    MONDAY_2026,
    boot_feeds,
    history,
    make_pump,
    reboot,
    records,
    run,
    run_until,
)

MIN_S = 60


def alarm_log(pump, since=0):
    """(alarm id, action, value) of every H_ALARM record."""
    return [(r[4], r[3], r[5]) for r in records(pump, S.H_ALARM, since)]


def run_bolus_out(rig, pump, limit_s=3600):
    """Tick until no bolus runs."""
    assert run_until(rig, pump, lambda: pump.bolus_progress()[0] == 0, limit_s) is not None


# ------------------------------------------------------------------------------- ALM-3
def pulses_at_alarm(pulse_mu):
    """Pulses pushed against the blocked line when the alarm rises: the line model reaches
    the 150 kPa threshold after 6 pulses (20 + 6 * 25 kPa); 2500 mU are then counted."""
    return 5 + 2500 // pulse_mu


@pytest.mark.req("ALM-3")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
def test_occlusion_during_bolus_alarms_within_2_min(pulse_mu):
    rig, pump = make_pump(pulse_mu, rates=(0,))
    rig.line.occluded = True
    pos0 = rig.motor.odometer
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    bolus_id = pump.detail
    elapsed = run_until(rig, pump, lambda: pump.alarms.active[S.A_OCCLUSION], 120)
    assert elapsed is not None and elapsed <= 120000
    pushed = rig.motor.odometer - pos0
    # 1.5 U/min: whole pulses, grouped per 1-s tick, so the last tick may add a pulse or two
    assert pulses_at_alarm(pulse_mu) <= pushed <= pulses_at_alarm(pulse_mu) + 2
    if pulse_mu == 50:  # one pulse every 2 s: exact
        assert pushed == 55 and elapsed == 110000
    assert rig.line.pushed_blocked == pushed
    assert rig.motor.relieved == 1
    assert rig.line.read() == rig.line.BASE_KPA
    assert pump.state[S_STOP] == S.STOP_OCCLUSION
    assert pump.state[S_BOLUS_ID] == 0
    end = records(pump, S.H_BOLUS_END)
    assert [r[3:] for r in end] == [(S.BOLUS_INTERRUPTED, bolus_id, pushed * pulse_mu, 5000)]
    raised = [a for a in alarm_log(pump) if a[0] == S.A_OCCLUSION]
    assert raised[0][:2] == (S.A_OCCLUSION, S.ALARM_RAISED) and raised[0][2] >= 2500
    assert records(pump, S.H_SUSPEND)[-1][3] == S.STOP_OCCLUSION
    # stopped: nothing moves
    run(rig, pump, 3600, step_ms=10000)
    assert rig.motor.odometer - pos0 == pushed


@pytest.mark.req("ALM-3")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
def test_occlusion_at_1u_per_hour_alarms_within_3_h(pulse_mu):
    rig, pump = make_pump(pulse_mu, rates=(1000,))
    rig.line.occluded = True
    pos0 = rig.motor.odometer
    elapsed = run_until(rig, pump, lambda: pump.alarms.active[S.A_OCCLUSION], 3 * 3600)
    n = pulses_at_alarm(pulse_mu)
    # basal starts with an empty fraction: pulse k is due at k * pulse * 3.6 s
    assert elapsed == n * pulse_mu * 3600
    assert elapsed <= 3 * 3600 * 1000
    assert rig.motor.odometer - pos0 == n
    assert rig.motor.relieved == 1
    assert pump.state[S_STOP] == S.STOP_OCCLUSION
    assert pump.day_totals(pump.status()["day"])[0] == n * pulse_mu


@pytest.mark.req("ALM-3")
def test_no_surprise_bolus_after_occlusion_cleared():
    """The interrupted bolus is not resumed and what did not flow is not made up: after
    resume() only basal runs, at exactly its rate."""
    rig, pump = make_pump(50, rates=(1000,))
    run(rig, pump, 600)
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 4000, 0, 0) == S.OK
    assert run_until(rig, pump, lambda: pump.alarms.active[S.A_OCCLUSION], 120) is not None
    day = pump.status()["day"]
    basal0, bolus0, _ = pump.day_totals(day)
    assert bolus0 < 4000
    run(rig, pump, 1800, step_ms=5000)
    rig.line.occluded = False
    seq = pump.history.next_seq
    assert pump.resume() == S.OK
    assert alarm_log(pump, seq) == [(S.A_OCCLUSION, S.ALARM_CLEARED, 0),
                                    (S.A_SUSPEND_REMINDER, S.ALARM_CLEARED, 0)]
    pos = rig.motor.odometer
    for hour in range(1, 4):
        run(rig, pump, 3600)
        # 1 U/h at 50 mU: 20 pulses an hour, whatever fraction was carried
        assert rig.motor.odometer - pos == 20 * hour
        assert pump.day_totals(day) == (basal0 + 1000 * hour, bolus0, 600)
    assert pump.state[S_BOLUS_ID] == 0
    assert pump.bolus_progress() == (0, 0, 0)
    assert records(pump, S.H_BOLUS_START, seq) == []
    assert pump.alarms.active[S.A_OCCLUSION] == 0


@pytest.mark.req("ALM-3")
def test_blocked_flow_under_the_alarm_volume_does_not_alarm_and_free_flow_resets_it():
    rig, pump = make_pump(50, rates=(1000,))
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK  # 40 pulses < 55
    run(rig, pump, 120)
    assert pump.bolus_progress()[0] == 0
    assert pump.alarms.active[S.A_OCCLUSION] == 0
    rig.line.occluded = False
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
    run(rig, pump, 60)
    rig.line.occluded = True  # the count starts again from zero
    assert pump.bolus(S.BOLUS_NORMAL, 2500, 0, 0) == S.OK
    run(rig, pump, 120)
    assert pump.alarms.active[S.A_OCCLUSION] == 0
    assert pump.state[S_STOP] == S.STOP_NONE
    assert rig.motor.relieved == 0


@pytest.mark.req("ALM-3", "HIS-2")
def test_occlusion_stop_survives_reboot():
    rig, pump = make_pump(50, rates=(1000,))
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    assert run_until(rig, pump, lambda: pump.alarms.active[S.A_OCCLUSION], 120) is not None
    pump = reboot(rig)
    assert pump.state[S_STOP] == S.STOP_OCCLUSION
    assert pump.alarms.active[S.A_OCCLUSION] == 1
    pos = rig.motor.odometer
    run(rig, pump, 600)
    assert rig.motor.odometer == pos
    rig.line.occluded = False
    assert pump.resume() == S.OK
    assert pump.alarms.active[S.A_OCCLUSION] == 0


# ------------------------------------------------------------------------------- ALM-4
def auto_off_pump(hours=5):
    rig, pump = make_pump(50, rates=(1000,))
    assert pump.settings.set(S.SET_AUTO_OFF, hours) == S.OK  # an interaction: timer at 0
    return rig, pump


@pytest.mark.req("ALM-4")
@pytest.mark.parametrize("hours", [5, 12])
def test_auto_off_alarm_then_stop_30_s_later(hours):
    rig, pump = auto_off_pump(hours)
    run(rig, pump, hours * 3600 - 60, step_ms=60000)
    run(rig, pump, 59)
    assert pump.alarms.active[S.A_AUTO_OFF] == 0
    seq = pump.history.next_seq
    run(rig, pump, 1)  # N hours without interaction
    assert pump.alarms.active[S.A_AUTO_OFF] == 1
    assert alarm_log(pump, seq) == [(S.A_AUTO_OFF, S.ALARM_RAISED, hours)]
    assert rig.annunciator.last_priority == S.PRIO_HIGH
    run(rig, pump, 29)
    assert pump.state[S_STOP] == S.STOP_NONE
    run(rig, pump, 1)  # 30 s grace over
    assert pump.state[S_STOP] == S.STOP_AUTO_OFF
    assert records(pump, S.H_SUSPEND, seq)[-1][3] == S.STOP_AUTO_OFF
    pos = rig.motor.odometer
    run(rig, pump, 3600, step_ms=10000)
    assert rig.motor.odometer == pos
    assert pump.alarms.active[S.A_AUTO_OFF] == 1  # until acknowledged or resumed
    assert pump.resume() == S.OK
    assert pump.alarms.active[S.A_AUTO_OFF] == 0


@pytest.mark.req("ALM-4")
@pytest.mark.parametrize("how", ["ack_command", "button", "other_command"])
def test_interaction_in_grace_period_keeps_delivery(how):
    rig, pump = auto_off_pump(5)
    run(rig, pump, 5 * 3600, step_ms=1000)
    assert pump.alarms.active[S.A_AUTO_OFF] == 1
    run(rig, pump, 20)
    seq = pump.history.next_seq
    if how == "ack_command":
        assert pump.ack_alarm(S.A_AUTO_OFF) == S.OK
        expected = [(S.A_AUTO_OFF, S.ALARM_ACKED, 0), (S.A_AUTO_OFF, S.ALARM_CLEARED, 0)]
    elif how == "button":
        rig.buttons.press(1)
        expected = [(S.A_AUTO_OFF, S.ALARM_ACKED, 0), (S.A_AUTO_OFF, S.ALARM_CLEARED, 0)]
    else:
        assert pump.set_temp_basal(S.TEMP_PERCENT, 100, 60) == S.OK
        expected = [(S.A_AUTO_OFF, S.ALARM_CLEARED, 0)]
    run(rig, pump, 1)
    assert alarm_log(pump, seq) == expected
    assert pump.alarms.active[S.A_AUTO_OFF] == 0
    pos = rig.motor.odometer
    run(rig, pump, 3600)
    assert pump.state[S_STOP] == S.STOP_NONE
    assert rig.motor.odometer - pos == 20  # still delivering 1 U/h
    # the timer restarted at the interaction: next alarm 5 h after it
    # (a button counts at the tick that reads it, 1 s after the command cases)
    run(rig, pump, 5 * 3600 - 3602 + (how == "button"), step_ms=1000)
    assert pump.alarms.active[S.A_AUTO_OFF] == 0
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_AUTO_OFF] == 1


@pytest.mark.req("ALM-4")
def test_auto_off_disabled_by_default_and_range():
    rig, pump = make_pump()
    assert pump.setting(S.SET_AUTO_OFF) == 0
    run(rig, pump, 30 * 3600, step_ms=60000)
    assert pump.alarms.active[S.A_AUTO_OFF] == 0
    assert pump.state[S_STOP] == S.STOP_NONE
    for bad in (1, 4, 25, -1):
        assert pump.settings.set(S.SET_AUTO_OFF, bad) == S.E_OUT_OF_RANGE
        assert pump.detail == S.SET_AUTO_OFF
    for good in (5, 24, 0):
        assert pump.settings.set(S.SET_AUTO_OFF, good) == S.OK
        assert pump.setting(S.SET_AUTO_OFF) == good


# ------------------------------------------------------------------------------- RES-1
def big_bolus_pump(fill_mu, rates=(0,), res_low=None):
    rig, pump = make_pump(50, rates=rates, fill_mu=fill_mu)
    assert pump.settings.set(S.SET_MAX_BOLUS, 25000) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 50000) == S.OK
    if res_low is not None:
        assert pump.settings.set(S.SET_RES_LOW, res_low) == S.OK
    return rig, pump


@pytest.mark.req("RES-1")
def test_reservoir_low_very_low_and_empty():
    rig, pump = big_bolus_pump(30000, res_low=10000)
    al = pump.alarms
    assert pump.reservoir_mu() == 29400  # 30 U less the 0.6 U primed
    assert pump.bolus(S.BOLUS_NORMAL, 19350, 0, 0) == S.OK
    run_bolus_out(rig, pump)
    run(rig, pump, 1)
    assert pump.reservoir_mu() == 10050
    assert al.active[S.A_RESERVOIR_LOW] == 0
    seq = pump.history.next_seq
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.OK
    run_bolus_out(rig, pump)
    run(rig, pump, 1)
    assert pump.reservoir_mu() == 10000  # at the setting: low
    assert alarm_log(pump, seq) == [(S.A_RESERVOIR_LOW, S.ALARM_RAISED, 10000)]
    assert rig.annunciator.last_priority == S.PRIO_MEDIUM
    assert pump.bolus(S.BOLUS_NORMAL, 4950, 0, 0) == S.OK
    run_bolus_out(rig, pump)
    run(rig, pump, 1)
    assert pump.reservoir_mu() == 5050
    assert al.active[S.A_RESERVOIR_VERY_LOW] == 0
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.OK
    run_bolus_out(rig, pump)
    run(rig, pump, 1)
    assert pump.reservoir_mu() == 5000  # fixed 5 U: very low, delivery goes on
    assert (al.active[S.A_RESERVOIR_LOW], al.active[S.A_RESERVOIR_VERY_LOW]) == (1, 1)
    assert pump.state[S_STOP] == S.STOP_NONE
    assert al.active[S.A_RESERVOIR_EMPTY] == 0
    # more than is left is refused, with what is left as detail
    assert pump.bolus(S.BOLUS_NORMAL, 5050, 0, 0) == S.E_RESERVOIR_EMPTY
    assert pump.detail == 5000
    seq = pump.history.next_seq
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    bolus_id = pump.detail
    run_bolus_out(rig, pump)
    run(rig, pump, 1)
    assert pump.reservoir_mu() == 0
    assert pump.state[S_STOP] == S.STOP_RESERVOIR
    assert [r[3:6] for r in records(pump, S.H_BOLUS_END, seq)] == [
        (S.BOLUS_COMPLETED, bolus_id, 5000)]
    assert records(pump, S.H_SUSPEND, seq)[0][3] == S.STOP_RESERVOIR
    assert (al.active[S.A_RESERVOIR_EMPTY], al.active[S.A_RESERVOIR_LOW],
            al.active[S.A_RESERVOIR_VERY_LOW]) == (1, 0, 0)
    assert rig.annunciator.last_priority == S.PRIO_HIGH
    # refused until a new reservoir is in
    assert pump.resume() == S.E_RESERVOIR_EMPTY
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_RESERVOIR_EMPTY
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 500, 30) == S.E_RESERVOIR_EMPTY
    pos = rig.motor.odometer
    sounds = rig.annunciator.sounds[S.PRIO_HIGH]
    assert pump.ack_alarm(S.A_RESERVOIR_EMPTY) == S.OK
    assert al.active[S.A_RESERVOIR_EMPTY] == 1  # a condition: stays until refilled
    run(rig, pump, 3600, step_ms=5000)
    assert rig.motor.odometer == pos
    assert rig.annunciator.sounds[S.PRIO_HIGH] >= sounds + 12  # no snooze
    assert pump.rewind() == S.OK
    assert pump.resume() == S.E_NOT_FILLED
    assert pump.fill(200000) == S.OK
    assert al.active[S.A_RESERVOIR_EMPTY] == 0
    assert pump.prime(S.PRIME_CANNULA, 500) == S.OK
    assert pump.resume() == S.OK
    run(rig, pump, 1)
    assert pump.reservoir_mu() == 199500
    assert (al.active[S.A_RESERVOIR_EMPTY], al.active[S.A_RESERVOIR_LOW]) == (0, 0)


@pytest.mark.req("RES-1", "THR-3")
def test_reservoir_empty_during_bolus_interrupts_it():
    """9.4 U left, a 9.4 U bolus and 1 U/h basal: the reservoir runs dry first."""
    rig, pump = big_bolus_pump(10000, rates=(1000,))
    day = pump.status()["day"]
    assert pump.reservoir_mu() == 9400
    assert pump.bolus(S.BOLUS_NORMAL, 9400, 0, 0) == S.OK
    bolus_id = pump.detail
    run(rig, pump, 371)
    assert pump.state[S_STOP] == S.STOP_NONE and pump.reservoir_mu() == 50
    run(rig, pump, 1)
    # bolus pulse every 2 s, basal pulses at 180 s and 360 s: 186 + 2 pulses at 372 s
    assert pump.state[S_STOP] == S.STOP_RESERVOIR
    assert pump.state[S_BOLUS_ID] == 0
    assert records(pump, S.H_BOLUS_END)[-1][3:] == (S.BOLUS_INTERRUPTED, bolus_id, 9300, 9400)
    assert pump.day_totals(day) == (100, 9300, 600)
    assert rig.motor.position() == 10000 // 50  # the whole 10 U reservoir went through
    assert pump.alarms.active[S.A_RESERVOIR_EMPTY] == 1


@pytest.mark.req("RES-1")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
def test_reservoir_tracked_in_pulses_with_time_left(pulse_mu):
    rig, pump = make_pump(pulse_mu, rates=(1000,), fill_mu=300000)
    primed = 12 * pulse_mu
    assert pump.reservoir_mu() == 300000 - primed
    assert pump.reservoir_pulses() == 300000 // pulse_mu - 12
    assert pump.minutes_left() == (300000 - primed) * 60 // 1000
    run(rig, pump, 3600)
    assert pump.reservoir_mu() == 300000 - primed - 1000
    assert pump.minutes_left() == (299000 - primed) * 60 // 1000
    assert pump.set_temp_basal(S.TEMP_PERCENT, 200, 60) == S.OK
    assert pump.minutes_left() == (299000 - primed) * 60 // 2000
    assert pump.suspend() == S.OK
    assert pump.minutes_left() == -1  # nothing flows: no time limit


@pytest.mark.req("RES-1", "THR-6")
def test_reservoir_low_setting_range():
    _, pump = make_pump()
    assert pump.setting(S.SET_RES_LOW) == 20000
    for bad in (4999, 50001):
        assert pump.settings.set(S.SET_RES_LOW, bad) == S.E_OUT_OF_RANGE
        assert pump.detail == S.SET_RES_LOW
    for good in (5000, 50000):
        assert pump.settings.set(S.SET_RES_LOW, good) == S.OK


# ------------------------------------------------------------------------------- BAT-1
@pytest.mark.req("BAT-1", "ALM-1")
def test_battery_low_and_very_low_keep_delivering():
    rig, pump = make_pump(50, rates=(1000,))
    al = pump.alarms
    for level, low, very_low in ((100, 0, 0), (21, 0, 0), (20, 1, 0), (6, 1, 0), (5, 1, 1),
                                 (1, 1, 1)):
        rig.battery.level = level
        pos = rig.motor.odometer
        run(rig, pump, 3600)
        assert (al.active[S.A_BATTERY_LOW], al.active[S.A_BATTERY_VERY_LOW]) == (low, very_low)
        assert al.active[S.A_BATTERY_DEPLETED] == 0
        assert pump.state[S_STOP] == S.STOP_NONE
        assert rig.motor.odometer - pos == 20, level
    assert S.ALARMS[S.A_BATTERY_LOW][1] == S.ALARMS[S.A_BATTERY_VERY_LOW][1] == S.PRIO_MEDIUM
    assert alarm_log(pump) == [(S.A_BATTERY_LOW, S.ALARM_RAISED, 20),
                               (S.A_BATTERY_VERY_LOW, S.ALARM_RAISED, 5)]


@pytest.mark.req("BAT-1")
def test_battery_alarm_hysteresis():
    rig, pump = make_pump()
    rig.battery.level = 20
    run(rig, pump, 1)
    for level, active in ((22, 1), (21, 1), (22, 1), (23, 0), (21, 0), (20, 1)):
        rig.battery.level = level
        run(rig, pump, 1)
        assert pump.alarms.active[S.A_BATTERY_LOW] == active, level


@pytest.mark.req("BAT-1", "ALM-1", "THR-5")
def test_battery_depleted_stops_delivery_recorded():
    rig, pump = make_pump(50, rates=(1000,))
    rig.battery.level = 3
    run(rig, pump, 60)
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 2000, 60) == S.OK
    bolus_id = pump.detail
    run(rig, pump, 900)
    done = pump.bolus_progress()[1]
    assert done == 500  # 40 pulses evenly over 60 min: 10 in 15 min
    seq = pump.history.next_seq
    rig.battery.level = 0
    run(rig, pump, 1)
    assert pump.state[S_STOP] == S.STOP_BATTERY
    assert pump.alarms.active[S.A_BATTERY_DEPLETED] == 1
    assert rig.annunciator.last_priority == S.PRIO_HIGH
    kinds = [(r[2], r[3]) for r in history(pump) if r[0] >= seq]
    assert (S.H_BOLUS_END, S.BOLUS_INTERRUPTED) in kinds
    assert (S.H_SUSPEND, S.STOP_BATTERY) in kinds
    assert (S.H_ALARM, S.ALARM_RAISED) in kinds
    assert records(pump, S.H_BOLUS_END, seq)[0][3:] == (S.BOLUS_INTERRUPTED, bolus_id, 500, 2000)
    pos = rig.motor.odometer
    run(rig, pump, 3600)
    assert rig.motor.odometer == pos
    assert pump.resume() == S.E_BATTERY_DEPLETED
    assert pump.bolus(S.BOLUS_NORMAL, 100, 0, 0) == S.E_BATTERY_DEPLETED
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 500, 30) == S.E_BATTERY_DEPLETED


def state_snapshot(pump):
    return {
        "profiles": [pump.settings.get_profile(p) for p in range(S.PROFILES)],
        "schedule": pump.settings.schedule(),
        "settings": [pump.setting(s) for s in range(S.SETTINGS_COUNT)],
        "days": {d: pump.day_totals(d) for d in range(2509, 2513)},
        "reservoir": pump.reservoir_mu(),
        "next_bolus": pump.state[S_NEXT_BOLUS_ID],
    }


@pytest.mark.req("BAT-1", "HIS-1", "HIS-2")
@pytest.mark.parametrize("old_level", [0, 30])
def test_battery_change_loses_no_state(old_level):
    """Depleted (or just replaced early): a new battery means a reboot at 100 %."""
    rig, pump = make_pump(50, rates=(1000,), utc=MONDAY_2026 - 3600)  # Sunday 23:00
    assert pump.settings.set_profile(1, b"weekend", [0, 16, 44], [800, 1200, 600]) == S.OK
    assert pump.settings.set_schedule([0, 0, 0, 0, 0, 1, 1]) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS, 8000) == S.OK
    assert pump.settings.set(S.SET_RES_LOW, 30000) == S.OK
    run(rig, pump, 7200, step_ms=10000)  # into Monday
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    run(rig, pump, 600)
    rig.battery.level = old_level
    run(rig, pump, 600)  # the level is saved with the state at the next basal pulse
    before = state_snapshot(pump)
    records_before = history(pump)
    rig.battery.level = 100
    pump = reboot(rig)
    assert state_snapshot(pump) == before
    after = history(pump)
    assert after[:len(records_before)] == records_before
    new = after[len(records_before):]
    assert [r[2] for r in new] == [S.H_BOOT, S.H_BATTERY_CHANGE]
    assert new[1][4:6] == (old_level, 100)
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_BATTERY_DEPLETED] == 0
    if old_level == 0:
        assert pump.state[S_STOP] == S.STOP_BATTERY
        assert pump.resume() == S.OK
    assert pump.state[S_STOP] == S.STOP_NONE
    pos = rig.motor.odometer
    run(rig, pump, 3600)
    assert rig.motor.odometer - pos == 20


@pytest.mark.req("BAT-1", "HIS-1")
def test_battery_swap_while_running_is_logged():
    rig, pump = make_pump()
    rig.battery.level = 40
    run(rig, pump, 1)
    rig.battery.level = 49  # not a change: gauge noise
    run(rig, pump, 1)
    rig.battery.level = 100
    run(rig, pump, 1)
    assert [r[4:6] for r in records(pump, S.H_BATTERY_CHANGE)] == [(49, 100)]


# ------------------------------------------------------------------------------- ALM-5
def corrupt(rig, region, offset=8):
    rig.storage.regions[region][offset] ^= 0x5A


def fail_firmware(rig):
    rig.firmware_ok = False


def fail_motor(rig):
    rig.motor.ok = False


def fail_buzzer(rig):
    rig.annunciator.ok = False


def fail_storage(rig):
    rig.storage.ok = False


def corrupt_settings(rig):
    corrupt(rig, 0)
    corrupt(rig, 1)


def corrupt_state(rig):
    corrupt(rig, 2)
    corrupt(rig, 3)


def corrupt_doses(rig):
    """Both copies of the dose rings (IOB, the 60-min and 24-h windows): never guessed low."""
    corrupt(rig, R_DOSES_A)
    corrupt(rig, R_DOSES_B)


SELF_TESTS = [
    (fail_firmware, S.ST_FIRMWARE),
    (fail_motor, S.ST_MOTOR),
    (fail_buzzer, S.ST_BUZZER),
    (fail_storage, S.ST_STORAGE),
    (corrupt_settings, S.ST_STORAGE),
    (corrupt_state, S.ST_STORAGE),
    (corrupt_doses, S.ST_STORAGE),
]


@pytest.mark.req("ALM-5", "ALM-1", "LNK-4")
@pytest.mark.parametrize("fault,bits", SELF_TESTS, ids=[f[0].__name__ for f in SELF_TESTS])
def test_self_test_failure_puts_pump_in_safe_state(fault, bits):
    rig, pump = make_pump(50, rates=(1000,))
    run(rig, pump, 600)
    assert pump.bolus(S.BOLUS_NORMAL, 3000, 0, 0) == S.OK
    run(rig, pump, 20)
    fault(rig)
    seq = pump.history.next_seq
    high = rig.annunciator.sounds[S.PRIO_HIGH]
    pump = Pump(rig.hardware())
    assert pump.boot() == bits
    assert pump.selftest_bits == bits
    assert pump.state[S_STOP] == S.STOP_SELFTEST
    assert pump.state[S_BOLUS_ID] == 0
    assert pump.alarms.active[S.A_SELFTEST] == 1
    assert rig.annunciator.sounds[S.PRIO_HIGH] == high + 1
    recs = [r for r in history(pump) if r[0] >= seq]
    boot = [r for r in recs if r[2] == S.H_BOOT]
    assert len(boot) == 1 and boot[0][4] == bits
    assert (S.A_SELFTEST, S.ALARM_RAISED, bits) in [(r[4], r[3], r[5]) for r in recs
                                                   if r[2] == S.H_ALARM]
    assert [r[3] for r in recs if r[2] == S.H_SUSPEND] == [S.STOP_SELFTEST]
    # commands that would move insulin are refused, naming the failure
    refused = [
        pump.resume(),
        pump.bolus(S.BOLUS_NORMAL, 100, 0, 0),
        pump.set_temp_basal(S.TEMP_ABSOLUTE, 500, 30),
        pump.rewind(),
        pump.prime(S.PRIME_CANNULA, 100),
        pump.prime(S.PRIME_TUBING, 100),
    ]
    assert refused == [S.E_SAFE_STATE] * len(refused)
    assert pump.detail == bits
    pos = rig.motor.odometer
    run(rig, pump, 3600, step_ms=5000)
    assert rig.motor.odometer == pos
    assert pump.state[S_STOP] == S.STOP_SELFTEST
    assert rig.annunciator.led_priority == S.PRIO_HIGH


@pytest.mark.req("ALM-5", "HIS-2")
def test_single_corrupt_copy_is_not_a_failure():
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_MAX_BOLUS, 7000) == S.OK
    assert pump.settings.set(S.SET_DIA, 240) == S.OK
    # the older copy of each pair (the newest holds the last write)
    corrupt(rig, 1 - pump.settings.slots.newest)
    corrupt(rig, 2 + 1 - pump.state_slots.newest)
    pump2 = Pump(rig.hardware())
    assert pump2.boot() == 0
    assert pump2.setting(S.SET_MAX_BOLUS) == 7000
    assert pump2.setting(S.SET_DIA) == 240
    assert pump2.state[S_STOP] == S.STOP_NONE


@pytest.mark.req("ALM-5")
def test_safe_state_ends_with_a_clean_self_test():
    """A failed self-test is not forever: the next clean boot leaves the pump suspended
    (the user resumes), not refusing everything."""
    rig, pump = make_pump()
    rig.annunciator.ok = False
    pump = reboot(rig)
    assert pump.state[S_STOP] == S.STOP_SELFTEST
    rig.annunciator.ok = True
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.alarms.active[S.A_SELFTEST] == 0
    assert pump.state[S_STOP] == S.STOP_USER
    assert pump.resume() == S.OK
    pos = rig.motor.odometer
    run(rig, pump, 3600)
    assert rig.motor.odometer - pos == 20


@pytest.mark.req("ALM-5")
def test_fresh_pump_boots_clean():
    from boards.fakes import Rig

    rig = Rig()
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.state[S_STOP] == S.STOP_USER
    assert [r[2:5] for r in history(pump)] == [(S.H_BOOT, S.RESET_POWER_ON, 0)]


@pytest.mark.req("ALM-5", "HW-1")
@pytest.mark.parametrize("ticks", [1, 10, 600])
def test_main_loop_feeds_watchdog_every_tick(ticks):
    rig, pump = make_pump()
    t0 = rig.clock.ticks_ms()
    feeds = rig.watchdog.feeds
    pump = firmware.main.run(rig.hardware(), ticks=ticks)
    assert rig.watchdog.feeds - feeds == boot_feeds(rig) + ticks
    assert (rig.clock.ticks_ms() - t0) % (1 << 30) == ticks * firmware.main.TICK_MS
    assert pump.state[S_STOP] == S.STOP_NONE


@pytest.mark.req("ALM-5")
def test_main_loop_feeds_watchdog_in_safe_state_and_delivers_otherwise():
    rig, _ = make_pump(50, rates=(1000,))
    pos = rig.motor.odometer
    feeds = rig.watchdog.feeds
    # the first tick comes at boot: 36001 ticks 100 ms apart span one hour
    firmware.main.run(rig.hardware(), ticks=36001)
    assert rig.watchdog.feeds - feeds == boot_feeds(rig) + 36001
    assert rig.motor.odometer - pos == 20
    rig.motor.ok = False
    pump = firmware.main.run(rig.hardware(), ticks=500)
    assert rig.watchdog.feeds - feeds == 2 * boot_feeds(rig) + 36501
    assert pump.state[S_STOP] == S.STOP_SELFTEST
    assert rig.motor.odometer - pos == 20


@pytest.mark.req("ALM-5", "HIS-1")
def test_boot_records_reset_cause_and_count():
    rig, pump = make_pump()
    rig.reset_cause = S.RESET_WATCHDOG
    pump = reboot(rig)
    rig.reset_cause = S.RESET_SOFT
    pump = reboot(rig)
    boots = records(pump, S.H_BOOT)
    assert [(r[3], r[4], r[5]) for r in boots] == [
        (S.RESET_POWER_ON, 0, 1), (S.RESET_WATCHDOG, 0, 2), (S.RESET_SOFT, 0, 3)]
    assert boots[1][1] == boots[2][1] == MONDAY_2026  # the saved clock: no time passed


# ------------------------------------------------------------ storage failing mid-delivery
@pytest.mark.req("HIS-2", "ALM-5", "THR-3")
def test_nothing_moves_that_could_not_be_recorded_and_owed_pulses_follow_once():
    rig, pump = make_pump(50, rates=(0,))
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
    run(rig, pump, 4)  # 1500 mU/min: a 50-mU pulse every 2 s
    assert rig.motor.odometer - 12 == 2  # 12 pulses of prime before
    rig.storage.fail = True
    run(rig, pump, 3)  # a pulse falls due; two ticks fail to save it: the motor stays still
    assert pump.storage_failures == 2
    assert rig.motor.odometer - 12 == 2
    assert pump.bolus_progress()[1] == 100
    rig.storage.fail = False
    run(rig, pump, 1)  # what was owed moves now, once, with the pulse due now
    assert rig.motor.odometer - 12 == 4
    assert pump.bolus_progress()[1] == 200
    run(rig, pump, 60)
    assert rig.motor.odometer - 12 == 20
    assert pump.status()["bolus_today"] == 1000


@pytest.mark.req("HIS-2", "ALM-5", "ALM-1")
def test_repeated_failed_saves_stop_delivery_in_the_safe_state():
    rig, pump = make_pump(50, rates=(0,))
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
    rig.storage.fail = True
    run(rig, pump, 4)  # a pulse due after 2 s, then three ticks fail to save it
    assert rig.motor.odometer == 12  # only the prime ever moved
    assert pump.state[S_STOP] == S.STOP_SELFTEST
    assert pump.selftest_bits & S.ST_STORAGE
    assert pump.alarms.active[S.A_SELFTEST]
    assert pump.resume() == S.E_SAFE_STATE
    rig.storage.fail = False
    run(rig, pump, 120)
    assert rig.motor.odometer == 12  # nothing owed is delivered later
