"""Sensor-link scenarios through the sensor transport (SNS-4, SNS-2, SNS-3, ALM-1): CGM
Measurement records from the host's transmitter (the `sensor` fixture) onto the emulator's
sensor pty, or a board's sensor UART with --sensor-port (docs/boards.md). On a board the
minutes between readings pass in real time."""

from __future__ import annotations

import pytest

from firmware import cgm_record as R
from host_tools.sensor import SensorSession
from protocol import cgm_record as H
from protocol import spec as S

from . import kit


def on(st, alarm):
    return kit.active(st, alarm)


def fresh(sensor):
    """A warm-up record: the pump forgets the trend of earlier tests' readings."""
    st = sensor.reading("NaN")
    assert on(st, S.A_SENSOR_WARMUP)


@pytest.mark.req("SNS-4", "SNS-2", "ALM-1")
def test_urgent_low_low_and_high(sensor):
    fresh(sensor)
    st = sensor.reading(120)
    assert st.glucose == 120 and not on(st, S.A_SENSOR_WARMUP)
    st = sensor.reading(65)
    assert on(st, S.A_GLUCOSE_LOW) and not on(st, S.A_URGENT_LOW)
    st = sensor.reading(50)
    assert on(st, S.A_URGENT_LOW) and S.ALARMS[S.A_URGENT_LOW][1] == S.PRIO_HIGH
    st = sensor.reading(30, status=R.SS_BELOW_DEVICE)  # the sensor's LOW
    assert st.glucose == S.CGM_LOW and on(st, S.A_URGENT_LOW)
    st = sensor.reading(110)
    assert not on(st, S.A_URGENT_LOW) and not on(st, S.A_GLUCOSE_LOW)
    st = sensor.reading(260)
    assert on(st, S.A_GLUCOSE_HIGH)
    st = sensor.reading(0, status=R.SS_ABOVE_DEVICE)  # the sensor's HIGH
    assert st.glucose == S.CGM_HIGH and on(st, S.A_GLUCOSE_HIGH)
    st = sensor.reading(180)
    assert not on(st, S.A_GLUCOSE_HIGH)


@pytest.mark.req("SNS-4", "SNS-2")
def test_rise_fall_and_urgent_low_soon(sensor):
    fresh(sensor)
    for g in (100, 120):
        sensor.reading(g)
    st = sensor.reading(140)  # +4 mg/dL/min
    assert st.trend == 40 and on(st, S.A_GLUCOSE_RISE)
    for g in (120,):
        sensor.reading(g)
    st = sensor.reading(100)  # -4 mg/dL/min
    assert on(st, S.A_GLUCOSE_FALL) and not on(st, S.A_GLUCOSE_RISE)
    st = sensor.reading(80)  # falling 4/min: 55 predicted within 20 min
    assert on(st, S.A_URGENT_LOW_SOON) and not on(st, S.A_URGENT_LOW)
    for g in (85, 95):
        st = sensor.reading(g)
    assert not on(st, S.A_URGENT_LOW_SOON) and not on(st, S.A_GLUCOSE_FALL)


@pytest.mark.req("SNS-4", "SNS-2")
def test_signal_loss_warmup_and_expiry(sensor):
    fresh(sensor)
    st = sensor.reading(130)
    assert not on(st, S.A_SIGNAL_LOSS)
    sensor.wait(16)
    st = sensor.pump.status()
    assert on(st, S.A_SIGNAL_LOSS) and st.cgm & S.CGMF_LOST
    st = sensor.reading(131)
    assert not on(st, S.A_SIGNAL_LOSS)
    st = sensor.reading("NaN", status=R.SS_SESSION_STOPPED)
    assert on(st, S.A_SENSOR_EXPIRED) and st.cgm & S.CGMF_EXPIRED
    sensor.wait(30)  # an expired sensor is no signal loss
    assert not on(sensor.pump.status(), S.A_SIGNAL_LOSS)
    st = sensor.reading("NaN")  # a new session warms up
    assert on(st, S.A_SENSOR_WARMUP) and not on(st, S.A_SENSOR_EXPIRED)
    st = sensor.reading(128)
    assert not on(st, S.A_SENSOR_WARMUP) and st.glucose == 128


@pytest.mark.req("SNS-4", "SNS-3")
def test_suspend_before_low_and_resume_with_hysteresis(sensor):
    pump = sensor.pump
    pump.set_setting("suspend_before_low", 1)
    fresh(sensor)
    for g in (130, 115):
        st = sensor.reading(g)
    assert not st.cgm & S.CGMF_SBL
    st = sensor.reading(100)  # -3/min: 10 predicted in 30 min
    assert st.cgm & S.CGMF_SBL and st.basal_rate == 0 and on(st, S.A_SBL)
    for g in (95, 100):
        st = sensor.reading(g)
        assert st.cgm & S.CGMF_SBL  # 100 >= 90, but 100 predicted in 30 min: not yet
    st = sensor.reading(110)  # rising: 155 predicted, above low + 40
    assert not st.cgm & S.CGMF_SBL and st.basal_rate > 0 and not on(st, S.A_SBL)


@pytest.mark.req("SNS-4", "SNS-2")
def test_bad_records_raise_no_alarm(sensor):
    fresh(sensor)
    st = sensor.reading(140)
    good = sensor.offset
    sensor.record(45, corrupt=True)
    sensor.record(45, tx=sensor.TX + 1)
    sensor.record(45, offset=good)  # a replay of the accepted offset
    sensor.record(45, offset=good - 5)  # older
    sensor.record(2000)  # impossible
    sensor.record(45, status=R.SS_MALFUNCTION)
    st = sensor.pump.status()
    assert st.glucose == 140 and not on(st, S.A_URGENT_LOW) and not on(st, S.A_GLUCOSE_LOW)
    st = sensor.reading(45)
    assert on(st, S.A_URGENT_LOW)


@pytest.mark.req("SNS-4", "ALM-1")
def test_pairing_lost_when_only_another_transmitter_is_heard(sensor):
    fresh(sensor)
    sensor.reading(120)
    for _ in range(2):
        st = sensor.reading(121, tx=0x777)
    assert not on(st, S.A_PAIRING_LOST)  # 15 min since the paired transmitter's record
    for _ in range(2):
        st = sensor.reading(122, tx=0x777)
    assert on(st, S.A_PAIRING_LOST)  # 25 min
    sensor.pair(0x777)  # the user pairs the new transmitter
    st = sensor.reading(123, tx=0x777)
    assert st.glucose == 123 and not on(st, S.A_PAIRING_LOST)
    sensor.pair()


@pytest.mark.req("SNS-4", "SNS-3")
def test_noisy_sensor_does_not_make_suspend_before_low_chatter(sensor):
    """simglucose's CGM noise on a glucose that falls to 85 (below low + 20) and stays
    there: noise never resumes basal (SNS-3's hysteresis); only the 2-h limit does."""
    pump = sensor.pump
    pump.set_setting("suspend_before_low", 1)
    fresh(sensor)
    before = pump.status().history_next

    def glucose(m):
        return max(85.0, 140.0 - m)

    session = SensorSession(glucose, noise_seed=7, seed=7)
    for minute in range(0, 180, 5):
        rec = session.record(minute)
        p = H.parse_record(rec)
        sensor.reading(float(H.sfloat_value(p.glucose)))
    sbl = kit.records(kit.history(pump, before), S.H_SBL)
    suspended = [r for r in sbl if r.arg == 1]
    resumed = [r.v1 for r in sbl if r.arg == 0]
    assert suspended  # the fall towards the low limit suspended basal
    # the true glucose never recovers above low + 20: noise must not resume basal, so
    # every resumption is the 2-h limit, each followed by the 30-min wait (SNS-3)
    assert all(reason == S.SBL_MAX for reason in resumed), resumed
    assert len(suspended) <= 1 + len(resumed)
    for again, prev in zip(suspended[1:], [r for r in sbl if r.arg == 0], strict=False):
        assert again.time - prev.time >= S.SBL_WAIT_MIN * 60


@pytest.mark.req("SNS-4", "SNS-1", "SNS-2")
def test_the_virtual_patient_as_the_transmitter(sensor):
    """simglucose's adult#001 eats 60 g at minute 5 with no bolus, fed the pump's basal:
    every reading it sends is taken, the pump holds exactly those values with their trend,
    the high alarm (set to 180) follows the patient's glucose, and the patient got exactly
    the insulin the pump delivered, which is the programmed basal."""
    from host_tools.patient import simglucose_available

    if not simglucose_available():
        pytest.skip("the virtual patient needs simglucose (the `patient` extra)")
    pump = sensor.pump
    pump.set_setting("glucose_high", 180)
    fresh(sensor)
    before = pump.status()
    patient, steps = sensor.play_patient(90, meals=[(5, 60)])
    assert [s.minute - steps[0].minute for s in steps] == list(range(0, 90, 5))
    assert all(s.taken for s in steps)
    values = [int(H.sfloat_value(H.parse_record(s.record).glucose)) for s in steps]
    assert values == [round(g) for _m, g, _mu in patient.trace]  # no noise: as the model
    assert values[-1] - values[0] >= 50  # the meal, untreated
    st = pump.status()
    assert st.glucose == values[-1]
    assert st.trend == values[-1] - values[-3]  # mg/dL per 10 min = 0.1 mg/dL/min units
    assert on(st, S.A_GLUCOSE_HIGH) == (values[-1] >= 180) and values[-1] >= 180
    held = [r.mg_dl for r in pump.get_cgm(since=before.utc // 60)]
    assert held[-len(values):] == values
    # insulin: what the pump delivered between the first and the last reading, all of it
    # to the patient, and that is the programmed basal (within a pulse)
    assert sum(s.insulin_mu for s in steps) == patient.insulin_mu > 0
    programmed = kit.programmed_mu(kit.local_ms(before), 85 * kit.MIN_MS)
    assert abs(patient.insulin_mu - programmed) <= sensor.pump.info.pulse_mu


@pytest.mark.req("SNS-4")
def test_records_arrive_through_the_boards_sensor_transport(request, bench, sensor):
    """One record is one frame in the pump's sensor-link statistics, taken; without
    --sensor-port the pump is a simulated board of the session's kind (the QEMU ARM board
    reads its UART1), not a stand-in."""
    before = sensor.pump.get_sensor_stats()
    st = sensor.reading(123)
    after = sensor.pump.get_sensor_stats()
    assert (after.frames - before.frames, after.accepted - before.accepted) == (1, 1)
    assert st.glucose == 123
    if not request.config.getoption("--sensor-port") and bench.started_board is not None:
        assert sensor.pump.info.board == bench.started_board


@pytest.mark.req("SNS-4", "HIS-2")
def test_a_replayed_record_is_still_dropped_after_a_power_cut(sensor):
    """The time-offset order survives a reboot (the pump's persistent state): the replay
    of the last record and an older one, sent after a power cut, are counted and dropped;
    the next record is taken."""
    if sensor.sim is None:
        pytest.skip("a power cut needs the simulated board's fault injection")
    fresh(sensor)
    st = sensor.reading(140)
    good = sensor.offset
    sensor.sim.power_cut()
    before = sensor.pump.get_sensor_stats()
    sensor.record(45, offset=good)
    sensor.record(45, offset=good - 5)
    after = sensor.pump.get_sensor_stats()
    assert (after.duplicate - before.duplicate, after.out_of_order - before.out_of_order,
            after.accepted - before.accepted) == (1, 1, 0)
    st = sensor.pump.status()
    assert st.glucose == 140 and not on(st, S.A_URGENT_LOW) and not on(st, S.A_GLUCOSE_LOW)
    st = sensor.reading(138)
    assert st.glucose == 138
