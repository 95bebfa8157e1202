"""THR-3 normal bolus, THR-4 extended and dual-wave bolus, THR-9 insulin on board."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.pump import iob_permille
from protocol import spec as S
from tests.pumpkit import events, make_pump, records, run

EV = S.EV_BOLUS
END = S.EV_BOLUS_END


def bolus_ok(pump, kind, now_mu, ext_mu=0, minutes=0):
    assert pump.bolus(kind, now_mu, ext_mu, minutes) == S.OK, pump.detail
    return pump.detail


def tick(rig, pump, ms):
    rig.clock.advance(ms)
    pump.tick()


# ------------------------------------------------------------------ THR-3 normal bolus
@pytest.mark.req("THR-3")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
@pytest.mark.parametrize("tick_ms", [250, 1000, 7000])
def test_normal_bolus_takes_60s_at_1500_per_min(pulse_mu, tick_ms):
    rig, pump = make_pump(pulse_mu, rates=(0,))
    assert pump.setting(S.SET_BOLUS_SPEED) == 1500
    bid = bolus_ok(pump, S.BOLUS_NORMAL, 1500)
    assert pump.bolus_progress() == (bid, 0, 1500)
    pos0 = rig.motor.odometer
    elapsed = 0
    while pump.bolus_progress()[0]:
        tick(rig, pump, tick_ms)
        elapsed += tick_ms
        done = pump.bolus_progress()[1] if pump.bolus_progress()[0] else 1500
        # never ahead of the bolus speed
        assert done <= 1500 * elapsed // 60000 + pulse_mu
    assert 60000 <= elapsed < 60000 + tick_ms  # finishes in 60 s, to within one tick
    assert (rig.motor.odometer - pos0) * pulse_mu == 1500
    assert pump.status()["bolus_today"] == 1500
    (end,) = records(pump, S.H_BOLUS_END)
    assert end[3:] == (S.BOLUS_COMPLETED, bid, 1500, 1500)


@pytest.mark.req("THR-3", "LNK-2")
def test_normal_bolus_progress_in_status_and_events():
    rig, pump = make_pump(50, rates=(0,))
    events(pump)
    bid = bolus_ok(pump, S.BOLUS_NORMAL, 1500)
    seen = events(pump)
    for t in range(1, 61):
        tick(rig, pump, 1000)
        if t == 30:
            stat = pump.status()
            assert (stat["bolus_id"], stat["bolus_kind"]) == (bid, S.BOLUS_NORMAL)
            assert (stat["bolus_delivered"], stat["bolus_requested"]) == (750, 1500)
            assert pump.bolus_progress() == (bid, 750, 1500)
        seen += events(pump)
    # one pulse of 50 mU every 2 s: an event each, then the end of the bolus
    expected = [(EV, bid, 0, 1500)] + [(EV, bid, 50 * k, 1500) for k in range(1, 31)]
    assert seen == expected + [(END, bid, 1500, S.BOLUS_COMPLETED)]
    stat = pump.status()
    assert (stat["bolus_id"], stat["bolus_kind"], stat["bolus_delivered"]) == (0, 0, 0)


@pytest.mark.req("THR-3", "HIS-1")
@pytest.mark.parametrize("cancel_s,delivered", [(0, 0), (1, 0), (21, 500), (59, 1450)])
def test_cancel_normal_bolus_records_delivered(cancel_s, delivered):
    rig, pump = make_pump(50, rates=(0,))
    bid = bolus_ok(pump, S.BOLUS_NORMAL, 1500)
    run(rig, pump, cancel_s)
    events(pump)
    pos = rig.motor.odometer
    assert pump.cancel_bolus() == S.OK
    assert pump.detail == bid
    assert pump.bolus_progress() == (0, 0, 0)
    assert events(pump) == [(END, bid, delivered, S.BOLUS_CANCELLED)]
    run(rig, pump, 120)
    assert rig.motor.odometer == pos  # nothing more
    (start,) = records(pump, S.H_BOLUS_START)
    assert start[3:] == (S.BOLUS_NORMAL, bid, 1500, 0)
    (end,) = records(pump, S.H_BOLUS_END)
    assert end[3:] == (S.BOLUS_CANCELLED, bid, delivered, 1500)
    assert pump.status()["bolus_today"] == delivered
    assert pump.cancel_bolus() == S.E_NO_BOLUS


@pytest.mark.req("THR-3", "THR-6")
@pytest.mark.parametrize("speed,seconds", [(500, 180), (3000, 30)])
def test_bolus_speed_setting(speed, seconds):
    rig, pump = make_pump(50, rates=(0,))
    assert pump.settings.set(S.SET_BOLUS_SPEED, speed) == S.OK
    bolus_ok(pump, S.BOLUS_NORMAL, 1500)
    run(rig, pump, seconds - 1)
    assert pump.bolus_progress()[0]
    run(rig, pump, 1)
    assert pump.bolus_progress()[0] == 0
    assert pump.status()["bolus_today"] == 1500


@pytest.mark.req("THR-3", "THR-7")
def test_bolus_runs_alongside_basal():
    rig, pump = make_pump(50, rates=(3000,))
    pos0 = rig.motor.odometer
    bolus_ok(pump, S.BOLUS_NORMAL, 1000)
    run(rig, pump, 600)
    stat = pump.status()
    assert stat["bolus_today"] == 1000
    assert stat["basal_today"] == 500  # 3 U/h for 10 min
    assert (rig.motor.odometer - pos0) * 50 == 1500


BAD_BOLUSES = [
    ((0, 1000, 0, 0), (S.E_BAD_ARG, 0)),
    ((4, 1000, 0, 0), (S.E_BAD_ARG, 0)),
    ((S.BOLUS_NORMAL, 0, 0, 0), (S.E_OUT_OF_RANGE, 1)),
    ((S.BOLUS_NORMAL, 40, 0, 0), (S.E_OUT_OF_RANGE, 1)),
    ((S.BOLUS_NORMAL, 1000, 100, 0), (S.E_BAD_ARG, 2)),
    ((S.BOLUS_NORMAL, 1000, 0, 30), (S.E_BAD_ARG, 2)),
    ((S.BOLUS_NORMAL, 1075, 0, 0), (S.E_INCREMENT, 50)),
    ((S.BOLUS_EXTENDED, 100, 1000, 60), (S.E_BAD_ARG, 1)),
    ((S.BOLUS_EXTENDED, 0, 0, 60), (S.E_OUT_OF_RANGE, 2)),
    ((S.BOLUS_EXTENDED, 0, 1000, 29), (S.E_OUT_OF_RANGE, 3)),
    ((S.BOLUS_EXTENDED, 0, 1000, 481), (S.E_OUT_OF_RANGE, 3)),
    ((S.BOLUS_EXTENDED, 0, 1010, 60), (S.E_INCREMENT, 50)),
    ((S.BOLUS_DUAL, 0, 1000, 60), (S.E_OUT_OF_RANGE, 1)),
    ((S.BOLUS_DUAL, 500, 0, 60), (S.E_OUT_OF_RANGE, 2)),
    ((S.BOLUS_DUAL, 500, 1000, 20), (S.E_OUT_OF_RANGE, 3)),
    ((S.BOLUS_NORMAL, 10050, 0, 0), (S.E_OVER_LIMIT, S.SET_MAX_BOLUS)),
    ((S.BOLUS_DUAL, 5000, 5050, 60), (S.E_OVER_LIMIT, S.SET_MAX_BOLUS)),
]


@pytest.mark.req("THR-3", "THR-4", "THR-6", "LNK-4")
@pytest.mark.parametrize("args,expected", BAD_BOLUSES)
def test_bolus_refusals(args, expected):
    rig, pump = make_pump(50)
    seq = pump.history.next_seq
    assert pump.bolus(*args) == expected[0]
    assert pump.detail == expected[1]
    assert pump.bolus_progress() == (0, 0, 0)
    assert pump.history.next_seq == seq


@pytest.mark.req("THR-3", "THR-5", "LNK-4")
def test_bolus_refused_while_running_suspended_or_reservoir_short():
    rig, pump = make_pump(50, rates=(0,), fill_mu=10000)  # 9400 mU left after priming
    bid = bolus_ok(pump, S.BOLUS_NORMAL, 500)
    assert pump.bolus(S.BOLUS_NORMAL, 500, 0, 0) == S.E_BOLUS_RUNNING
    assert pump.detail == bid
    run(rig, pump, 30)
    assert pump.bolus(S.BOLUS_NORMAL, 9000, 0, 0) == S.E_RESERVOIR_EMPTY
    assert pump.detail == 8900
    assert pump.suspend() == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 500, 0, 0) == S.E_SUSPENDED
    assert pump.detail == S.STOP_USER
    assert pump.resume() == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 500, 0, 0) == S.OK
    assert pump.detail == bid + 1


@pytest.mark.req("THR-3")
@pytest.mark.parametrize("pulse_mu", [10, 25, 50])
def test_smallest_bolus_is_005_U(pulse_mu):
    rig, pump = make_pump(pulse_mu, rates=(0,))
    bolus_ok(pump, S.BOLUS_NORMAL, S.MIN_BOLUS)
    run(rig, pump, 10)
    assert pump.status()["bolus_today"] == 50
    assert pump.bolus(S.BOLUS_NORMAL, S.MIN_BOLUS - pulse_mu, 0, 0) == S.E_OUT_OF_RANGE


# ------------------------------------------------------------------ THR-4 extended / dual
def pulse_times(rig, pump, seconds):
    """Tick 1 s at a time; board second of every bolus pulse."""
    times = []
    last = pump.bolus_progress()[1]
    for t in range(1, seconds + 1):
        tick(rig, pump, 1000)
        bid, done, _ = pump.bolus_progress()
        if not bid:
            done = records(pump, S.H_BOLUS_END)[-1][5]
        times += [t] * ((done - last) // pump.pulse)
        last = done
        if not bid:
            break
    return times


@pytest.mark.req("THR-4")
@pytest.mark.parametrize("ext_mu,pulse_mu", [(1000, 50), (1050, 50), (1000, 10), (975, 25)])
def test_extended_bolus_pulses_evenly_spread(ext_mu, pulse_mu):
    rig, pump = make_pump(pulse_mu, rates=(0,))
    bid = bolus_ok(pump, S.BOLUS_EXTENDED, 0, ext_mu, 30)
    n = ext_mu // pulse_mu
    times = pulse_times(rig, pump, 1800)
    # pulse k of n falls due at k * 30 min / n
    assert times == [math.ceil(k * 1800 / n) for k in range(1, n + 1)]
    (end,) = records(pump, S.H_BOLUS_END)
    assert end[3:] == (S.BOLUS_COMPLETED, bid, ext_mu, ext_mu)


@pytest.mark.req("THR-4", "LNK-2")
def test_extended_bolus_8h_half_at_half_time_and_progress():
    rig, pump = make_pump(25, rates=(0,))
    events(pump)
    bid = bolus_ok(pump, S.BOLUS_EXTENDED, 0, 2000, 480)
    progress = events(pump)
    for _ in range(240):  # the host drains the 16-entry event queue as it goes
        tick(rig, pump, 60000)
        progress += events(pump)
    assert pump.bolus_progress() == (bid, 1000, 2000)
    stat = pump.status()
    assert (stat["bolus_kind"], stat["bolus_delivered"], stat["bolus_requested"]) == \
        (S.BOLUS_EXTENDED, 1000, 2000)
    # a 25-mU pulse every 6 min, each reported
    assert progress == [(EV, bid, 25 * k, 2000) for k in range(41)]
    run(rig, pump, 4 * 3600 - 60, step_ms=60000)
    assert pump.bolus_progress() == (bid, 1975, 2000)
    run(rig, pump, 60, step_ms=60000)
    assert pump.bolus_progress() == (0, 0, 0)
    assert pump.status()["bolus_today"] == 2000
    assert events(pump)[-1] == (END, bid, 2000, S.BOLUS_COMPLETED)


@pytest.mark.req("THR-4", "HIS-1")
def test_dual_wave_immediate_then_extended():
    rig, pump = make_pump(50, rates=(0,))
    bid = bolus_ok(pump, S.BOLUS_DUAL, 500, 1000, 30)
    (start,) = records(pump, S.H_BOLUS_START)
    assert start[3:] == (S.BOLUS_DUAL, bid, 500, 1000)
    times = pulse_times(rig, pump, 2000)
    # immediate part at the bolus speed (a pulse every 2 s), then the extended part over
    # 30 min starting when the immediate part is done
    assert times == [2 * k for k in range(1, 11)] + [20 + 90 * k for k in range(1, 21)]
    (end,) = records(pump, S.H_BOLUS_END)
    assert end[3:] == (S.BOLUS_COMPLETED, bid, 1500, 1500)


@pytest.mark.req("THR-4", "HIS-1")
@pytest.mark.parametrize("kind,now_mu,cancel_s,delivered", [
    (S.BOLUS_EXTENDED, 0, 900, 500),
    (S.BOLUS_EXTENDED, 0, 89, 0),
    (S.BOLUS_DUAL, 500, 10, 250),  # during the immediate part
    (S.BOLUS_DUAL, 500, 920, 1000),  # half-way through the extended part
])
def test_cancel_extended_and_dual(kind, now_mu, cancel_s, delivered):
    rig, pump = make_pump(50, rates=(0,))
    bid = bolus_ok(pump, kind, now_mu, 1000, 30)
    run(rig, pump, cancel_s)
    assert pump.bolus_progress() == (bid, delivered, now_mu + 1000)
    pos = rig.motor.odometer
    assert pump.cancel_bolus() == S.OK
    run(rig, pump, 1800, step_ms=10000)
    assert rig.motor.odometer == pos
    (end,) = records(pump, S.H_BOLUS_END)
    assert end[3:] == (S.BOLUS_CANCELLED, bid, delivered, now_mu + 1000)
    assert pump.status()["bolus_today"] == delivered


@pytest.mark.req("THR-4")
def test_extended_duration_edges_accepted():
    rig, pump = make_pump(50, rates=(0,))
    bolus_ok(pump, S.BOLUS_EXTENDED, 0, 50, 30)
    run(rig, pump, 1800, step_ms=60000)
    assert pump.bolus_progress() == (0, 0, 0)
    bolus_ok(pump, S.BOLUS_EXTENDED, 0, 50, 480)
    run(rig, pump, 480 * 60 - 60, step_ms=60000)
    assert pump.bolus_progress()[1] == 0  # the one pulse is due at the very end
    run(rig, pump, 60, step_ms=60000)
    assert pump.bolus_progress() == (0, 0, 0)
    assert pump.status()["bolus_today"] == 100


# ------------------------------------------------------------------ THR-9 insulin on board
@pytest.mark.req("THR-9")
def test_iob_curve_values():
    assert iob_permille(-5, 300) == 1000
    assert iob_permille(0, 300) == 1000
    assert iob_permille(30, 300) == 960  # 1 - 30^2 / (75 * 300)
    assert iob_permille(75, 300) == 750  # at the activity peak
    assert iob_permille(150, 300) == 333  # (300 - 150)^2 / (300 * 225)
    assert iob_permille(299, 300) == 0
    assert iob_permille(300, 300) == 0
    assert iob_permille(1000, 300) == 0
    assert iob_permille(75, 120) == 375
    assert iob_permille(100, 120) == 74
    assert iob_permille(120, 120) == 0
    assert iob_permille(75, 480) == 844
    assert iob_permille(480, 480) == 0


@pytest.mark.req("THR-9")
@settings(max_examples=40, deadline=None)
@given(dia=st.integers(120, 480), age=st.integers(0, 480))
def test_iob_curve_is_monotone_and_continuous(dia, age):
    p = iob_permille(age, dia)
    assert 0 <= p <= 1000
    assert iob_permille(age + 1, dia) <= p
    # the two pieces meet at the peak (75 min)
    peak_a = 1000 - 75 * 75 * 1000 // (75 * dia)
    peak_b = (dia - 75) ** 2 * 1000 // (dia * (dia - 75))
    assert abs(peak_a - peak_b) <= 1
    if age >= dia:
        assert p == 0


@pytest.mark.req("THR-9")
@pytest.mark.parametrize("dia", [120, 300, 480])
def test_iob_after_bolus_decays_to_zero_after_dia(dia):
    rig, pump = make_pump(50, rates=(0,))
    assert pump.settings.set(S.SET_DIA, dia) == S.OK
    bolus_ok(pump, S.BOLUS_NORMAL, 1000)
    run(rig, pump, 40)
    assert pump.bolus_progress()[0] == 0
    assert pump.iob() == 1000
    run(rig, pump, 20)
    values = []
    for minute in range(1, dia + 31):
        values.append(pump.iob())
        # insulin is aged from the youngest instant of its 5-min bucket: IOB errs high
        youngest = minute - 5 if minute >= 5 else 0
        assert values[-1] == iob_permille(youngest, dia), minute
        assert pump.status()["iob"] == values[-1]
        run(rig, pump, 60, step_ms=60000)
    assert values == sorted(values, reverse=True)
    assert values[dia + 4] == 0  # minute dia + 5: youngest age dia
    assert pump.iob() == 0


@pytest.mark.req("THR-9")
def test_iob_adds_up_stacked_boluses():
    rig, pump = make_pump(50, rates=(0,))
    bolus_ok(pump, S.BOLUS_NORMAL, 1000)
    run(rig, pump, 3600, step_ms=60000)
    bolus_ok(pump, S.BOLUS_NORMAL, 500)
    run(rig, pump, 3600, step_ms=60000)
    # each aged from the youngest instant of its 5-min bucket
    assert pump.iob() == 1000 * iob_permille(115, 300) // 1000 + 500 * iob_permille(55, 300) // 1000
