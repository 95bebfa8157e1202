"""Virtual patient in the loop (issue 5): simglucose's adult#001 (UVA/Padova 2008) on the
emulator's sensor link, in lockstep with the virtual clock (host_tools/patient.py).

Each test starts its own emulator with a patient (the suite's shared emulator has none),
sets the pump up for that patient over the protocol (host_tools.patient.setup_pump: basal
at the patient's steady-state rate, carb ratio and correction factor from simglucose's
Quest.csv) with the clock at 06:00, so the scenario's minute 0 is 06:00 local time.
Skipped when simglucose is not installed (pip install 'micropump[patient]'; `make test`
installs it) or when the suite drives a real board (--port).
"""

from __future__ import annotations

import pytest

from host_tools import client as C
from host_tools.patient import DayDriver, PatientConfig, setup_pump, simglucose_available
from protocol import spec as S

from . import kit

pytestmark = [
    pytest.mark.patient,
    pytest.mark.skipif(not simglucose_available(),
                       reason="the virtual patient needs simglucose: "
                              "pip install 'micropump[patient]'"),
]

PATIENT = "adult#001"
DAY0 = 2196  # 2026-01-05, a Monday
START_UTC = DAY0 * kit.DAY_S + 6 * 3600  # 06:00 local (offset 0) = the patient's minute 0
MEALS = [(60, 50.0), (360, 70.0), (720, 80.0)]  # 07:00 breakfast, 12:00 lunch, 18:00 dinner
DAY_MIN = 1440


@pytest.fixture
def patient_pump(request, tmp_path):
    """A factory: (emulator, client) with a virtual patient; closed after the test."""
    if request.config.getoption("--port"):
        pytest.skip("the virtual patient lives in the emulator: not with --port")
    from host_tools.launch import launch

    started = []

    def start(meals=MEALS, sensitivity=1.0, sbl=False):
        log = open(tmp_path / "emulator.log", "wb")
        emu = launch(tmp_path / "state", lockstep=True, seed=5, console=False, stderr=log,
                     patient=PatientConfig(PATIENT, list(meals), sensitivity))
        started.append((emu, log))
        pump = C.connect(emu.port, key=C.load_key(emu.key_path), timeout=2.0, retries=3)
        started[-1] += (pump,)
        setup_pump(pump, PATIENT, START_UTC, sbl=sbl)
        return emu, pump

    yield start
    for emu, log, *pump in started:
        for p in pump:
            p.close()
        emu.close()
        log.close()


def _report(pump, tmp_path, name, hours=24, days=7):
    from host_tools import report

    data = report.collect(pump, hours=hours, days=days)
    png = report.render_png(data, tmp_path / f"{name}.png")
    assert png.stat().st_size > 20000  # a drawn figure, not an empty canvas
    return data, report.summary(data)


@pytest.mark.req("THR-8", "THR-9", "SNS-1")
def test_a_day_with_three_meals_and_calculator_boluses(patient_pump, tmp_path):
    emu, pump = patient_pump()
    drv = DayDriver(pump, MEALS)
    drv.run_to(DAY_MIN)

    # every meal bolus is the calculator's suggestion, delivered by a separate bolus
    # command: nothing else was delivered as bolus
    assert [(m, g) for m, g, _mu in drv.boluses] == [(m, int(g)) for m, g in MEALS]
    assert all(mu > 0 for _m, _g, mu in drv.boluses)
    day = pump.get_totals(DAY0)
    assert day.valid and day.bolus == sum(mu for _m, _g, mu in drv.boluses)
    # the patient got what the pump delivered (basal and bolus; priming went nowhere)
    assert emu.patient.insulin_mu == pytest.approx(day.basal + day.bolus
                                                   + pump.get_totals(DAY0 + 1).basal,
                                                   abs=1500)
    assert emu.patient.carbs_g == sum(g for _m, g in MEALS)

    data, summary = _report(pump, tmp_path, "day")
    tir = summary["cgm"]
    print(f"adult#001, three meals with calculator boluses: time in range "
          f"{tir['in_range']:.1f} % (below {tir['below_70']:.1f} %, above {tir['above_180']:.1f} "
          f"%, mean {tir['mean']:.0f} mg/dL)")
    assert tir["readings"] == 288  # SNS-1: 24 h of 5-min readings kept
    assert tir["in_range"] >= 70 and tir["below_70"] == 0
    assert summary["boluses"] == 3
    assert max(r.mg_dl for r in data.readings) > 150  # the meals show


@pytest.mark.req("SNS-2", "SNS-3", "ALM-1")
def test_induced_low_urgent_alarm_and_suspend_before_low(patient_pump):
    emu, pump = patient_pump(meals=[], sbl=True)
    drv = DayDriver(pump, [])
    drv.run_to(30)
    first = pump.status().history_next
    pump.bolus(20000)  # 20 U without food: about 175 mg/dL of drop for adult#001
    kit.drain_events(pump)

    readings: list[tuple[int, int]] = []  # (minute, mg/dL) as they arrived
    sbl_at = urgent_at = resumed_at = None
    for _ in range(10 * 12):  # up to 10 h, reading by reading
        drv.advance(5 * kit.MIN_MS)
        minute = drv.elapsed_ms // kit.MIN_MS
        for ev in kit.drain_events(pump):
            if ev.kind == S.EV_GLUCOSE and ev.a > 0:
                readings.append((minute, ev.a))
            elif ev.kind == S.EV_SBL and ev.a == 1 and sbl_at is None:
                sbl_at = minute
            elif ev.kind == S.EV_SBL and ev.a == 0 and sbl_at is not None and not resumed_at:
                resumed_at = minute
            elif (ev.kind == S.EV_ALARM and ev.a == S.A_URGENT_LOW and ev.b == 0
                  and urgent_at is None):
                urgent_at = minute
        if resumed_at is not None and readings[-1][1] > 100:
            break

    first_low = next(m for m, v in readings if v <= S.URGENT_LOW)
    first_below_limit = next(m for m, v in readings if v <= 70)
    # urgent low within one reading of the first reading at or below 55
    assert urgent_at is not None and urgent_at - first_low <= 5
    # basal stopped before the low (predicted 30 min ahead), and resumed afterwards
    assert sbl_at is not None and sbl_at < first_below_limit
    assert resumed_at is not None and resumed_at > first_low
    recs = kit.records(kit.history(pump, first), S.H_SBL)
    assert [r.arg for r in recs][:2] == [1, 0]
    assert recs[0].v1 == S.SBL_PREDICTED
    # no basal reached the patient while it was suspended (the bolus was over by then)
    inside = [mu for m, _g, mu in emu.patient.trace if sbl_at + 5 < m <= resumed_at - 10]
    assert inside and not any(inside)


@pytest.mark.req("SNS-2", "ALM-1")
def test_signal_loss_after_20_min_clears_on_next_reading(patient_pump):
    emu, pump = patient_pump(meals=[])
    drv = DayDriver(pump, [])
    drv.run_to(61)  # readings at minutes 0..60
    last = pump.get_cgm(0)[-1].utc  # the reading of minute 60
    pump.emu_fault(S.FAULT_SENSOR_LOSS, 1)
    drv.advance(18 * kit.MIN_MS)  # minute 79: 19 min without a reading
    st = pump.status()
    assert not kit.active(st, S.A_SIGNAL_LOSS) and not st.cgm & S.CGMF_LOST
    drv.advance(3 * kit.MIN_MS)  # minute 82
    st = pump.status()
    assert kit.active(st, S.A_SIGNAL_LOSS) and st.cgm & S.CGMF_LOST
    recs = [r for r in kit.history(pump, 1) if r.kind == S.H_ALARM and r.arg == 0
            and r.v1 == S.A_SIGNAL_LOSS]
    assert len(recs) == 1 and 20 * 60 <= recs[0].time - last <= 20 * 60 + 2  # at 20 min
    pump.emu_fault(S.FAULT_SENSOR_LOSS, 0)
    drv.advance(4 * kit.MIN_MS)  # the next reading (minute 85) clears it
    st = pump.status()
    assert not kit.active(st, S.A_SIGNAL_LOSS) and st.glucose_age <= 1
    assert pump.get_cgm(0)[-1].utc == START_UTC + 85 * 60
    assert emu.patient.minute == 85  # the patient lived on through the loss


@pytest.mark.req("THR-10", "THR-8", "SNS-1")
def test_insulin_resistance_raises_daily_totals(patient_pump, tmp_path):
    meals = [(d * DAY_MIN + m, g) for d in range(2) for m, g in MEALS]
    emu, pump = patient_pump(meals=meals)
    drv = DayDriver(pump, meals)
    drv.run_to(DAY_MIN)  # day 1: the patient as published
    emu.patient.set_sensitivity(0.5)  # then insulin resistant (halved insulin action)
    drv.run_to(2 * DAY_MIN)  # day 2: the same meals

    days = [pump.get_totals(DAY0 + d) for d in range(2)]
    assert all(t.valid for t in days)
    total = [t.basal + t.bolus for t in days]
    bolus = [t.bolus for t in days]
    print("daily totals, U: " + ", ".join(f"{t / 1000:.2f}" for t in total))
    # day 1 starts at 06:00 (18 h of basal): compare the boluses, the same meals each day
    assert bolus[1] > bolus[0] * 1.2
    assert total[1] > total[0]
    _data, summary = _report(pump, tmp_path, "resistance", days=3)
    drawn = {row["day"]: row["bolus_u"] for row in summary["totals"]}
    assert drawn[DAY0] < drawn[DAY0 + 1]  # the report's daily totals show the rise
    assert summary["cgm"]["above_180"] > 30  # and the glucose it could not hold
