"""Sensor link, glucose alerts and suspend before low in the firmware (SNS-1, SNS-2, SNS-3).

The readings come from boards.fakes.Radio (the hw.radio driver contract of firmware/hal.py):
pushed one at a time with `radio.push(value)` (returned by the next 1-Hz poll) or scripted
by board-clock minute. Alerts go through the alarm manager (ALM-1/ALM-6: priority, history
record and host event for every raise and clear).
"""

import pytest

from boards.fakes import Radio
from firmware import pump_boot
from firmware.cgm import Cgm
from firmware.layout import S_MONO_S
from protocol import spec as S
from tests.pumpkit import events, history, make_pump, reboot, run

GLUCOSE_ALARMS = (S.A_URGENT_LOW, S.A_GLUCOSE_LOW, S.A_GLUCOSE_HIGH, S.A_GLUCOSE_RISE,
                  S.A_GLUCOSE_FALL, S.A_URGENT_LOW_SOON, S.A_SIGNAL_LOSS, S.A_SENSOR_EXPIRED,
                  S.A_SENSOR_WARMUP, S.A_SBL)


def sensor_pump(script=None, settings=(), **kwargs):
    """make_pump (profile 1.0 U/h, delivering) with a fake radio on its sensor link."""
    rig, pump = make_pump(**kwargs)
    radio = Radio(rig.clock, script)
    rig.radio = radio
    pump.cgm.plug(radio)  # the pump was built before the radio: plug it in
    for sid, value in settings:
        assert pump.settings.set(sid, value) == S.OK
    events(pump)
    return rig, pump, radio


def feed(rig, pump, radio, value, then_s=300):
    """One reading, then `then_s` seconds of ticks (the next reading 5 min later)."""
    radio.push(value)
    run(rig, pump, 1)
    if then_s > 1:
        run(rig, pump, then_s - 1)


def glucose_alarms(pump):
    return {S.ALARMS[a][0] for a in GLUCOSE_ALARMS if pump.alarms.active[a]}


def alarm_records(pump, alarm):
    return [r[3] for r in history(pump) if r[2] == S.H_ALARM and r[4] == alarm]


# ------------------------------------------------------------------------ SNS-1 ring
@pytest.mark.req("SNS-1")
def test_ring_keeps_exactly_the_last_288_readings():
    script = [(5 * i, 100 + i % 50) for i in range(1, 301)]  # 300 readings, every 5 min
    rig, pump, radio = sensor_pump(script)
    cgm = pump.cgm
    minute0 = pump.utc_seconds() // 60
    run(rig, pump, 5 * 60 * 300, step_ms=60000)
    assert radio.sent == cgm.readings == 300
    assert cgm.count == S.CGM_READINGS == 288
    held = [cgm.reading(i) for i in range(cgm.count)]
    # the 12 oldest were overwritten: readings 13..300 remain, 5 min apart, oldest first
    assert held[0] == (minute0 + 5 * 13, 100 + 13 % 50)
    assert held[-1] == (minute0 + 5 * 300, 100 + 300 % 50)
    assert all(b[0] - a[0] == 5 for a, b in zip(held, held[1:], strict=False))
    assert [v for _, v in held] == [100 + i % 50 for i in range(13, 301)]


@pytest.mark.req("SNS-1")
def test_readings_clamped_to_low_and_high_and_one_per_minute():
    rig, pump, radio = sensor_pump()
    feed(rig, pump, radio, 20, then_s=1)
    assert pump.cgm.reading(0)[1] == S.CGM_LOW  # below 40: LOW
    feed(rig, pump, radio, 180, then_s=1)  # same minute: replaces
    assert pump.cgm.count == 1 and pump.cgm.reading(0)[1] == 180
    run(rig, pump, 60)
    feed(rig, pump, radio, 900, then_s=1)
    assert pump.cgm.count == 2 and pump.cgm.reading(1)[1] == S.CGM_HIGH  # above 400: HIGH


@pytest.mark.req("SNS-1", "LNK-2")
def test_each_reading_is_sent_to_the_host_as_an_event():
    rig, pump, radio = sensor_pump()
    minute = pump.utc_seconds() // 60
    feed(rig, pump, radio, 120, then_s=300)
    feed(rig, pump, radio, 110, then_s=300)
    feed(rig, pump, radio, 104, then_s=1)
    got = [e for e in events(pump) if e[0] == S.EV_GLUCOSE]
    assert got == [(S.EV_GLUCOSE, 120, minute, S.NO_TREND),
                   (S.EV_GLUCOSE, 110, minute + 5, S.NO_TREND),
                   (S.EV_GLUCOSE, 104, minute + 10, -16)]  # (104 - 120) / 10 min


@pytest.mark.req("SNS-1")
def test_a_board_without_radio_has_no_sensor_link():
    rig, pump = make_pump()
    run(rig, pump, 3600)
    assert pump.cgm.radio is None and pump.cgm.readings == 0
    assert pump.status()["cgm"] == 0 and glucose_alarms(pump) == set()


# ------------------------------------------------------------------------ SNS-2 alerts
@pytest.mark.req("SNS-2", "ALM-1", "ALM-6", "ALM-8")
def test_low_high_and_urgent_low_raised_and_cleared_at_the_right_reading():
    rig, pump, radio = sensor_pump(settings=((S.SET_GLUCOSE_ALERTS, S.GA_LOW | S.GA_HIGH),))
    steps = [(100, set()), (70, {"glucose_low"}), (71, set()),
             (55, {"glucose_low", "urgent_low"}), (56, {"glucose_low"}),
             (39, {"glucose_low", "urgent_low"}), (120, set()), (249, set()),
             (250, {"glucose_high"}), (401, {"glucose_high"}), (249, set())]
    for value, want in steps:
        feed(rig, pump, radio, value)
        assert glucose_alarms(pump) == want, value
    assert S.ALARMS[S.A_URGENT_LOW][1] == S.PRIO_HIGH
    assert S.ALARMS[S.A_GLUCOSE_LOW][1] == S.ALARMS[S.A_GLUCOSE_HIGH][1] == S.PRIO_MEDIUM
    # never acknowledged: each clear is followed by "cleared, was not acknowledged" (ALM-8)
    assert alarm_records(pump, S.A_URGENT_LOW) == [
        S.ALARM_RAISED, S.ALARM_CLEARED, S.ALARM_UNACKED] * 2
    high = [e for e in events(pump) if e[0] == S.EV_ALARM and e[1] == S.A_GLUCOSE_HIGH]
    assert high == [(S.EV_ALARM, S.A_GLUCOSE_HIGH, S.ALARM_RAISED, 250),
                      (S.EV_ALARM, S.A_GLUCOSE_HIGH, S.ALARM_CLEARED, 249),
                      (S.EV_ALARM, S.A_GLUCOSE_HIGH, S.ALARM_UNACKED, 2)]


@pytest.mark.req("SNS-2")
def test_thresholds_and_switches_are_settings_urgent_low_always_on():
    rig, pump, radio = sensor_pump(settings=((S.SET_GLUCOSE_LOW, 80), (S.SET_GLUCOSE_HIGH, 180)))
    feed(rig, pump, radio, 80)
    assert "glucose_low" in glucose_alarms(pump)
    feed(rig, pump, radio, 180)
    assert "glucose_high" in glucose_alarms(pump)
    assert pump.settings.set(S.SET_GLUCOSE_ALERTS, 0) == S.OK
    feed(rig, pump, radio, 200)
    feed(rig, pump, radio, 150)
    feed(rig, pump, radio, 50)  # -10 mg/dL/min: no fall alert, no low; urgent low still
    assert glucose_alarms(pump) == {"urgent_low"}
    for sid, bad in ((S.SET_GLUCOSE_LOW, 59), (S.SET_GLUCOSE_HIGH, 401),
                     (S.SET_GLUCOSE_RATE, 0), (S.SET_GLUCOSE_ALERTS, 32), (S.SET_SBL, 2)):
        assert pump.settings.set(sid, bad) == S.E_OUT_OF_RANGE and pump.detail == sid


@pytest.mark.req("SNS-2")
def test_fast_rise_and_fall_over_the_last_three_readings():
    rig, pump, radio = sensor_pump(settings=((S.SET_GLUCOSE_ALERTS, S.GA_RISE | S.GA_FALL),))
    for value, want in [(100, set()), (110, set()), (125, set()),  # +2.5 mg/dL/min
                        (140, {"glucose_rise"}),  # 110 -> 140 in 10 min: +3.0
                        (141, set()), (130, set()), (111, {"glucose_fall"}),  # -3.0
                        (100, {"glucose_fall"}), (100, set())]:
        feed(rig, pump, radio, value)
        assert glucose_alarms(pump) == want, value
    assert pump.settings.set(S.SET_GLUCOSE_RATE, 2) == S.OK
    feed(rig, pump, radio, 110)
    feed(rig, pump, radio, 120)  # +2.0
    assert glucose_alarms(pump) == {"glucose_rise"}


@pytest.mark.req("SNS-2")
def test_urgent_low_soon_predicted_within_20_min():
    rig, pump, radio = sensor_pump(settings=((S.SET_GLUCOSE_ALERTS, S.GA_URGENT_LOW_SOON),))
    for value, want in [(100, set()), (95, set()),
                        (90, set()),  # 100, 95, 90: 70 in 20 min
                        (80, {"urgent_low_soon"}),  # 95, 90, 80: 50 in 20 min
                        (70, {"urgent_low_soon"}), (62, {"urgent_low_soon"}),
                        (56, {"urgent_low_soon"}),
                        (55, {"urgent_low"}),  # now urgent low, no longer "soon"
                        (60, set())]:  # 56, 55, 60: rising
        feed(rig, pump, radio, value)
        assert glucose_alarms(pump) == want, value
    assert S.ALARMS[S.A_URGENT_LOW_SOON][1] == S.PRIO_HIGH


@pytest.mark.req("SNS-2", "ALM-1", "ALM-8")
def test_signal_loss_after_20_min_and_cleared_by_the_next_reading():
    rig, pump, radio = sensor_pump()
    run(rig, pump, 3600)
    assert glucose_alarms(pump) == set()  # no reading yet: no sensor, no signal loss
    feed(rig, pump, radio, 120, then_s=1)
    run(rig, pump, 20 * 60 - 1)
    assert glucose_alarms(pump) == set()
    run(rig, pump, 1)
    assert glucose_alarms(pump) == {"signal_loss"}
    assert pump.status()["cgm"] & S.CGMF_LOST
    assert S.ALARMS[S.A_SIGNAL_LOSS][1] == S.PRIO_MEDIUM
    run(rig, pump, 3600)
    feed(rig, pump, radio, 118, then_s=1)
    assert glucose_alarms(pump) == set()
    assert alarm_records(pump, S.A_SIGNAL_LOSS) == [
        S.ALARM_RAISED, S.ALARM_CLEARED, S.ALARM_UNACKED]  # never acknowledged (ALM-8)


@pytest.mark.req("SNS-2")
def test_signal_loss_from_a_silenced_radio():
    rig, pump, radio = sensor_pump([(5 * i, 120) for i in range(1, 100)])
    run(rig, pump, 10 * 60)
    radio.lost = True
    run(rig, pump, 20 * 60 - 1)
    assert glucose_alarms(pump) == set()
    run(rig, pump, 1)
    assert glucose_alarms(pump) == {"signal_loss"}
    radio.lost = False
    run(rig, pump, 5 * 60)
    assert glucose_alarms(pump) == set()


@pytest.mark.req("SNS-2")
def test_sensor_warm_up_and_expiry():
    rig, pump, radio = sensor_pump()
    feed(rig, pump, radio, 120, then_s=1)
    feed(rig, pump, radio, S.CGM_EXPIRED, then_s=1)
    assert glucose_alarms(pump) == {"sensor_expired"}
    run(rig, pump, 3600)  # no signal loss for an expired sensor
    assert glucose_alarms(pump) == {"sensor_expired"}
    assert pump.status()["cgm"] == S.CGMF_EXPIRED
    feed(rig, pump, radio, S.CGM_WARMUP, then_s=1)  # a new sensor
    assert glucose_alarms(pump) == {"sensor_warmup"}
    assert pump.status()["cgm"] == S.CGMF_WARMUP
    run(rig, pump, 2 * 3600)
    assert glucose_alarms(pump) == {"sensor_warmup"}
    feed(rig, pump, radio, 130, then_s=1)
    assert glucose_alarms(pump) == set() and pump.status()["cgm"] == 0
    assert S.ALARMS[S.A_SENSOR_WARMUP][1] == S.PRIO_LOW
    assert S.ALARMS[S.A_SENSOR_EXPIRED][1] == S.PRIO_MEDIUM
    readings = [e for e in events(pump) if e[0] == S.EV_GLUCOSE]
    assert [e[1] for e in readings] == [120, S.CGM_EXPIRED, S.CGM_WARMUP, 130]


@pytest.mark.req("SNS-2", "ALM-2")
def test_glucose_alarms_repeat_and_are_acknowledged_like_others():
    rig, pump, radio = sensor_pump()
    feed(rig, pump, radio, 50, then_s=1)
    ann = rig.annunciator
    high = ann.sounds[S.PRIO_HIGH]
    assert pump.ack_alarm(S.A_URGENT_LOW) == S.OK
    assert pump.alarms.active[S.A_URGENT_LOW]  # a condition: stays until glucose rises
    run(rig, pump, 5 * 60)
    assert ann.sounds[S.PRIO_HIGH] > high  # high priority: no snooze


# ------------------------------------------------------------------------ SNS-3
def sbl_pump(**kwargs):
    return sensor_pump(settings=((S.SET_SBL, 1),), **kwargs)


def sbl_records(pump):
    return [r[3:7] for r in history(pump) if r[2] == S.H_SBL]


@pytest.mark.req("SNS-3")
def test_suspend_before_low_is_off_by_default():
    rig, pump, radio = sensor_pump()
    assert pump.setting(S.SET_SBL) == 0
    for value in (120, 100, 80, 60):
        feed(rig, pump, radio, value)
    assert pump.cgm.sbl == 0 and pump.basal_rate() == 1000


@pytest.mark.req("SNS-3", "HIS-1", "ALM-6")
def test_suspend_before_low_stops_basal_and_resumes_by_itself():
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 130)
    feed(rig, pump, radio, 125)  # one/two readings: no trend, 125 > 90
    assert pump.cgm.sbl == 0
    pos = rig.motor.pos
    feed(rig, pump, radio, 115, then_s=1)  # 130, 125, 115: 70 in 30 min <= 70 + 20
    assert pump.cgm.sbl == 1 and pump.basal_rate() == 0 and pump.settings.profile_rate() == 1000
    assert pump.state[0] and pump.status()["stop"] == S.STOP_NONE  # not a delivery stop
    assert pump.status()["cgm"] & S.CGMF_SBL and glucose_alarms(pump) == {"suspend_before_low"}
    run(rig, pump, 299)
    feed(rig, pump, radio, 110)  # falling on
    feed(rig, pump, radio, 108, then_s=1)  # 115, 110, 108: 87 predicted, still falling
    assert pump.cgm.sbl == 1
    moved = rig.motor.pos - pos
    run(rig, pump, 299)
    feed(rig, pump, radio, 112, then_s=1)  # 110, 108, 112: rising above the low limit
    assert pump.cgm.sbl == 0 and pump.basal_rate() == 1000
    assert moved == 0  # no basal pulse during the 15-min suspension
    assert sbl_records(pump) == [(1, S.SBL_PREDICTED, 115, 70),
                                 (0, S.SBL_RECOVERED, 112, 118)]
    ev = [e for e in events(pump) if e[0] == S.EV_SBL]
    assert ev == [(S.EV_SBL, 1, S.SBL_PREDICTED, 115), (S.EV_SBL, 0, S.SBL_RECOVERED, 112)]


@pytest.mark.req("SNS-3")
def test_a_reading_at_the_low_limit_suspends_even_while_rising_fast():
    """A reading at or below the low limit suspends basal whatever the prediction: a fast
    rise from a low is not yet a recovery (mutant sbl-no-low-reading)."""
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 50, then_s=1)
    assert pump.cgm.sbl == 1  # no trend yet: 50 <= 70
    assert pump.resume() == S.OK  # a manual resume: the feature waits 30 min
    run(rig, pump, 20 * 60)
    feed(rig, pump, radio, 50)  # during the wait: no suspension
    feed(rig, pump, radio, 60)
    assert pump.cgm.sbl == 0
    feed(rig, pump, radio, 70, then_s=1)  # 50, 60, 70: 130 predicted in 30 min, but 70 <= 70
    assert pump.cgm.pred30 == 130
    assert pump.cgm.sbl == 1 and pump.basal_rate() == 0
    assert sbl_records(pump)[-1] == (1, S.SBL_PREDICTED, 70, 130)


@pytest.mark.req("SNS-3")
def test_suspend_before_low_resumes_only_with_hysteresis():
    """Resumption needs glucose >= low + 20 and 30-min prediction >= low + 40: a slow
    drift back above the suspension line is not enough (SNS-3)."""
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 95)  # no trend: 95 > 90, nothing
    feed(rig, pump, radio, 90)  # 90 <= 90: suspended
    assert pump.cgm.sbl == 1
    feed(rig, pump, radio, 88)
    feed(rig, pump, radio, 91)  # 90, 88, 91: rising, but 91 and 94 predicted < 110
    assert pump.cgm.sbl == 1
    feed(rig, pump, radio, 100)  # 88, 91, 100: 100 >= 90, predicted 136 >= 110
    assert pump.cgm.sbl == 0
    assert sbl_records(pump) == [(1, S.SBL_PREDICTED, 90, 90), (0, S.SBL_RECOVERED, 100, 136)]


@pytest.mark.req("SNS-3")
def test_a_flat_trace_near_the_line_does_not_chatter():
    """Issue 9, scenario 6: a flat 82-86 mg/dL trace with the low limit at 70 suspended and
    resumed 7 times in 3 h without hysteresis. Now: one suspension, ended by the 2-h limit,
    then the 30-min wait, then one more."""
    rig, pump, radio = sbl_pump()
    trace = [82, 86, 84, 83, 85, 86, 82, 84]
    for i in range(36):  # 3 h of readings every 5 min
        feed(rig, pump, radio, trace[i % len(trace)])
    starts = [r for r in sbl_records(pump) if r[0] == 1]
    ends = [r for r in sbl_records(pump) if r[0] == 0]
    assert len(starts) == 2 and [r[1] for r in ends] == [S.SBL_MAX]


@pytest.mark.req("SNS-3", "THR-3")
def test_a_bolus_is_not_blocked_while_basal_is_suspended_before_low():
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 85, then_s=1)
    assert pump.cgm.sbl == 1
    assert pump.bolus(S.BOLUS_NORMAL, 500, 0, 0) == S.OK
    run(rig, pump, 60)
    assert pump.state[9] == 0 and pump.state[7] == 500  # S_BOLUS_ID done, S_BOLUS_TODAY
    assert pump.cgm.sbl == 1


@pytest.mark.req("SNS-3")
def test_manual_resume_then_the_feature_waits_30_min():
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 85, then_s=1)
    assert pump.cgm.sbl == 1
    assert pump.resume() == S.OK  # the resume command ends it
    assert pump.cgm.sbl == 0 and pump.basal_rate() == 1000
    assert pump.status()["cgm"] & S.CGMF_SBL_WAIT
    run(rig, pump, 299)
    for _ in range(4):  # 85 at 5, 10, 15, 20 min after the resume: waits
        feed(rig, pump, radio, 85)
        assert pump.cgm.sbl == 0
    run(rig, pump, 299)
    feed(rig, pump, radio, 85, then_s=1)  # 29:59 after the resume
    assert pump.cgm.sbl == 0
    feed(rig, pump, radio, 85, then_s=1)  # 30:00: the wait is over
    assert pump.cgm.sbl == 1
    assert [r[:2] for r in sbl_records(pump)] == [
        (1, S.SBL_PREDICTED), (0, S.SBL_MANUAL), (1, S.SBL_PREDICTED)]
    assert pump.resume() == S.OK and pump.resume() == S.E_NOT_SUSPENDED


@pytest.mark.req("SNS-3", "THR-5")
def test_no_suspension_while_delivery_is_stopped_and_resume_ends_both():
    rig, pump, radio = sbl_pump()
    assert pump.suspend() == S.OK
    feed(rig, pump, radio, 85, then_s=1)
    assert pump.cgm.sbl == 0  # stopped already
    assert pump.resume() == S.OK
    feed(rig, pump, radio, 84, then_s=1)
    assert pump.cgm.sbl == 1
    assert pump.suspend() == S.OK
    assert pump.resume() == S.OK  # one resume ends the stop and the suspension
    assert pump.cgm.sbl == 0 and pump.basal_rate() == 1000


@pytest.mark.req("SNS-3")
def test_suspension_ends_after_two_hours_and_when_switched_off():
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 80, then_s=1)
    assert pump.cgm.sbl == 1
    run(rig, pump, S.SBL_MAX_MIN * 60 - 1)
    assert pump.cgm.sbl == 1
    run(rig, pump, 1)
    assert pump.cgm.sbl == 0
    assert sbl_records(pump)[-1][:2] == (0, S.SBL_MAX)
    run(rig, pump, 30 * 60)
    feed(rig, pump, radio, 80, then_s=1)
    assert pump.cgm.sbl == 1
    assert pump.settings.set(S.SET_SBL, 0) == S.OK
    assert pump.cgm.sbl == 0 and sbl_records(pump)[-1][:2] == (0, S.SBL_OFF)


@pytest.mark.req("SNS-3", "HIS-3", "SNS-1")
def test_a_reboot_keeps_the_suspension_and_the_readings():
    """Issue 9, scenario 5: glucose 62 with suspend-before-low active, the sensor goes
    silent, reboot. Basal stays suspended, the readings are kept, and signal loss is timed
    from the last reading, not from boot."""
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 80)
    feed(rig, pump, radio, 70)
    feed(rig, pump, radio, 62, then_s=60)
    assert pump.cgm.sbl == 1 and pump.alarms.active[S.A_GLUCOSE_LOW]
    readings = [pump.cgm.reading(i) for i in range(pump.cgm.count)]
    radio.lost = True
    pos = rig.motor.pos
    pump = reboot(rig)
    assert pump.cgm.sbl == 1 and pump.basal_rate() == 0 and pump.settings.profile_rate() == 1000
    assert [pump.cgm.reading(i) for i in range(pump.cgm.count)] == readings
    assert pump.status()["glucose"] == 62
    run(rig, pump, 18 * 60)  # 19 min after the last reading: not yet
    assert not pump.alarms.active[S.A_SIGNAL_LOSS]
    run(rig, pump, 61)
    assert pump.alarms.active[S.A_SIGNAL_LOSS]
    assert rig.motor.pos == pos  # no basal moved
    assert pump.setting(S.SET_SBL) == 1


@pytest.mark.req("SNS-3", "HIS-3", "HIS-2")
def test_a_cut_right_after_the_suspension_started_keeps_it():
    """The suspension is saved when it starts, not only by the next 60-s checkpoint: a
    power cut one second later still finds basal suspended (mutant sbl-not-saved)."""
    rig, pump, radio = sbl_pump()
    feed(rig, pump, radio, 120, then_s=1)
    assert pump.cgm.sbl == 0
    run(rig, pump, 60)  # a checkpoint saves the state without a suspension
    feed(rig, pump, radio, 65, then_s=1)
    assert pump.cgm.sbl == 1
    assert pump.state[S_MONO_S] - pump.saved_s == 0  # saved by the suspension itself
    pos = rig.motor.pos
    pump = reboot(rig)
    assert pump.cgm.sbl == 1 and pump.basal_rate() == 0
    run(rig, pump, 600)
    assert rig.motor.pos == pos


@pytest.mark.req("SNS-1")
def test_cgm_state_is_small_and_preallocated():
    rig, pump = make_pump()
    cgm = Cgm(pump, Radio(rig.clock), pump.cgm.log)
    assert len(cgm.minutes) == len(cgm.values) == 288
    assert cgm.minutes.itemsize == 4 and cgm.values.itemsize == 2
    # without a sensor link and no reading on flash there is nothing to keep: no ring
    # (heap, issue 12); one reading on flash brings it back at the boot's restore
    bare = Cgm(pump, None, pump.cgm.log)
    assert bare.minutes is None and bare.values is None
    pump_boot.restore_cgm(bare)
    assert bare.minutes is None and bare.count == 0
