"""Reservoir and battery alarms and stops (RES-1, BAT-1, ALM-1, THR-12)."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit


def run_bolus(pump, sim, mu):
    """Deliver a normal bolus of `mu` to the end (1.5 U/min)."""
    pump.bolus(mu)
    sim.advance(seconds=mu * 60 // 1500 + 2)
    st = pump.status()
    assert st.bolus_id == 0, st
    return st


def alarm_state(pump):
    return {a.name: a for a in pump.get_alarms()}


@pytest.mark.req("RES-1", "ALM-1", "ALM-6", "THR-12", "LNK-4")
def test_reservoir_low_very_low_empty(pump, sim, pulse):
    pump.suspend()
    pump.rewind()
    with pytest.raises(PumpRefused) as e:
        pump.resume()  # not filled
    assert e.value.code == S.E_NOT_FILLED
    pump.fill(25000 + kit.PRIME_TUBING_MU)
    pump.prime(S.PRIME_TUBING, kit.PRIME_TUBING_MU)  # else the prime-incomplete alarm
    pump.resume()
    sim.advance(seconds=2)
    st = pump.status()
    assert st.reservoir == 25000 and st.alarms == 0
    assert st.minutes_left == 25000 * 60 // st.basal_rate  # time left at the current rate

    st = run_bolus(pump, sim, 4800)
    assert 20000 < st.reservoir < 20200 and not kit.active(st, S.A_RESERVOIR_LOW)
    st = run_bolus(pump, sim, 300)
    assert st.reservoir <= 20000
    al = alarm_state(pump)
    assert al["reservoir_low"].active and al["reservoir_low"].priority == S.PRIO_MEDIUM
    assert not al["reservoir_very_low"].active
    while st.reservoir > 5600 + 10000:
        st = run_bolus(pump, sim, 10000)
    st = run_bolus(pump, sim, st.reservoir - 5600)
    assert 5000 < st.reservoir <= 5600 and not kit.active(st, S.A_RESERVOIR_VERY_LOW)
    with pytest.raises(PumpRefused) as e:  # more than is left
        pump.bolus(st.reservoir + pulse)
    assert (e.value.code, e.value.detail) == (S.E_RESERVOIR_EMPTY, st.reservoir)

    # at the highest basal rate, the reservoir runs dry when status said it would
    pump.temp_basal(S.TEMP_ABSOLUTE, 5000, 120)
    st = pump.status()
    predicted = st.minutes_left
    assert predicted == st.reservoir * 60 // 5000
    kit.drain_events(pump)
    elapsed, ev, seen = sim.run_until(
        lambda e: e.kind == S.EV_ALARM and e.a == S.A_RESERVOIR_EMPTY, 2 * kit.HOUR_MS)
    assert ev is not None and ev.b == S.ALARM_RAISED
    assert abs(elapsed - predicted * kit.MIN_MS) <= 2 * kit.MIN_MS
    assert kit.alarm_events(seen, S.A_RESERVOIR_VERY_LOW, S.ALARM_RAISED)
    assert [e.a for e in seen if e.kind == S.EV_STATE] == [S.STOP_RESERVOIR]

    st = pump.status()
    assert (st.stop, st.reservoir, st.basal_rate, st.temp_kind) == (
        S.STOP_RESERVOIR, 0, 0, S.TEMP_NONE)
    al = alarm_state(pump)
    assert al["reservoir_empty"].active and al["reservoir_empty"].priority == S.PRIO_HIGH
    for call in (pump.resume, lambda: pump.bolus(100)):
        with pytest.raises(PumpRefused) as e:
            call()
        assert e.value.code == S.E_RESERVOIR_EMPTY
    sim.advance(minutes=10)
    assert pump.status().basal_today == st.basal_today  # nothing moves when empty


@pytest.mark.req("BAT-1", "ALM-1", "THR-5", "HIS-1", "HW-3")
def test_battery_low_very_low_depleted_and_change(pump, sim):
    st0 = pump.status()
    sim.battery(21)
    sim.advance(seconds=2)
    st = pump.status()
    assert st.battery == 21 and st.alarms == 0
    sim.battery(20)
    sim.advance(seconds=2)
    al = alarm_state(pump)
    assert al["battery_low"].active and al["battery_low"].priority == S.PRIO_MEDIUM
    sim.battery(5)
    sim.advance(seconds=2)
    al = alarm_state(pump)
    assert al["battery_very_low"].active and al["battery_very_low"].priority == S.PRIO_MEDIUM
    before = pump.status()
    sim.advance(minutes=10)  # very low: delivery goes on
    st = pump.status()
    assert st.stop == S.STOP_NONE and st.basal_today > before.basal_today

    bolus_id = pump.bolus(2000).detail
    sim.advance(seconds=20)
    done = pump.status().bolus_delivered
    kit.drain_events(pump)
    sim.battery(0)
    sim.advance(seconds=2)
    st = pump.status()
    assert (st.stop, st.battery, st.bolus_id) == (S.STOP_BATTERY, 0, 0)
    al = alarm_state(pump)
    assert al["battery_depleted"].active and al["battery_depleted"].priority == S.PRIO_HIGH
    ends = [e for e in kit.drain_events(pump) if e.kind == S.EV_BOLUS_END]
    assert [(e.a, e.c) for e in ends] == [(bolus_id, S.BOLUS_INTERRUPTED)]
    # what moved until the 1-Hz battery check saw the empty battery, and not one pulse more
    assert done <= ends[0].b <= done + 1500 // 60
    assert st.bolus_today - st0.bolus_today == ends[0].b
    for call in (pump.resume, lambda: pump.bolus(100)):
        with pytest.raises(PumpRefused) as e:
            call()
        assert e.value.code == S.E_BATTERY_DEPLETED
    sim.advance(minutes=10)
    depleted = pump.status()
    assert depleted.basal_today == st.basal_today and depleted.reservoir == st.reservoir

    # a new battery: logged, no state lost, delivery resumes on the user's command
    sim.battery(100)
    sim.advance(seconds=2)
    st = pump.status()
    assert st.battery == 100 and st.stop == S.STOP_BATTERY
    assert (st.basal_today, st.bolus_today, st.reservoir) == (
        depleted.basal_today, depleted.bolus_today, depleted.reservoir)
    assert not {"battery_low", "battery_very_low", "battery_depleted"} & set(st.alarm_names)
    changes = kit.records(kit.history(pump, st0.history_next), S.H_BATTERY_CHANGE)
    assert [(r.v1, r.v2) for r in changes] == [(0, 100)]
    assert pump.get_settings() == kit.SETTINGS
    assert pump.get_profile(0).rates == kit.PROFILES[0][2]
    pump.resume()
    assert pump.status().delivering


@pytest.mark.req("BAT-1", "HW-3")
def test_battery_drain_model(pump, sim):
    """The emulator's battery drains with time and pulses; the drain fault scales it."""
    sim.fault(S.FAULT_BATTERY_DRAIN, 0)
    sim.advance(hours=12)
    assert pump.status().battery == 100
    sim.fault(S.FAULT_BATTERY_DRAIN, 1000)
    sim.advance(hours=24)
    normal = 100 - pump.status().battery
    assert 0 <= normal < 20  # a battery lasts days at the model's normal drain
    sim.battery(100)
    sim.fault(S.FAULT_BATTERY_DRAIN, 20000)
    sim.advance(hours=24)
    fast = 100 - pump.status().battery
    assert fast > normal and fast >= 5
