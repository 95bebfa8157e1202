"""Alarms: repeat, escalation, acknowledge by command and by button, no snooze for high
priority (ALM-1, ALM-2, ALM-6), and auto-off (ALM-4)."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit

BUTTON_ACK = 1  # firmware/hal.py BUTTON_ACK


def alarm(pump, name):
    return {a.name: a for a in pump.get_alarms()}[name]


@pytest.mark.req("ALM-2", "ALM-1", "ALM-6", "BAT-1", "HIS-1")
def test_repeat_escalation_ack_and_snooze(pump, sim):
    st0 = pump.status()
    sim.battery(15)
    sim.advance(seconds=2)
    a = alarm(pump, "battery_low")
    assert (a.active, a.acked, a.level, a.priority) == (True, False, 0, S.PRIO_MEDIUM)
    sim.advance(minutes=5)  # default repeat: 5 min; unacknowledged -> louder
    assert alarm(pump, "battery_low").level == 1
    sim.advance(minutes=5)
    assert alarm(pump, "battery_low").level == 2
    sim.advance(minutes=5)
    assert alarm(pump, "battery_low").level == 2  # the loudest step

    pump.ack_alarm("battery_low")
    a = alarm(pump, "battery_low")
    assert (a.active, a.acked, a.level) == (True, True, 0)  # the condition holds
    sim.advance(minutes=29)  # medium priority: snoozed for 30 min (default)
    assert alarm(pump, "battery_low").acked
    sim.advance(minutes=2)
    a = alarm(pump, "battery_low")
    assert (a.active, a.acked, a.level) == (True, False, 0)  # sounds again

    # high priority cannot be snoozed: acknowledged, it sounds again at the next repeat
    sim.battery(0)
    sim.advance(seconds=2)
    pump.ack_alarm("battery_depleted")
    assert alarm(pump, "battery_depleted").acked
    sim.advance(minutes=5, seconds=1)
    assert not alarm(pump, "battery_depleted").acked

    # the button acknowledges the highest-priority alarm first
    sim.press(BUTTON_ACK)
    sim.advance(seconds=1)
    assert alarm(pump, "battery_depleted").acked
    assert not alarm(pump, "battery_low").acked

    events = kit.drain_events(pump)
    assert [e.b for e in kit.alarm_events(events, S.A_BATTERY_DEPLETED)] == [
        S.ALARM_RAISED, S.ALARM_ACKED, S.ALARM_ACKED]
    logged = [(r.v1, r.arg) for r in kit.records(kit.history(pump, st0.history_next),
                                                 S.H_ALARM)]
    assert logged[:2] == [(S.A_BATTERY_LOW, S.ALARM_RAISED), (S.A_BATTERY_LOW, S.ALARM_ACKED)]
    assert (S.A_BATTERY_DEPLETED, S.ALARM_ACKED) in logged


@pytest.mark.req("ALM-2", "LNK-4")
def test_ack_of_an_inactive_alarm_is_refused(pump):
    with pytest.raises(PumpRefused) as e:
        pump.ack_alarm("occlusion")
    assert (e.value.code, e.value.detail) == (S.E_UNKNOWN_ALARM, S.A_OCCLUSION)
    assert "occlusion" in str(e.value)


@pytest.mark.req("ALM-4", "ALM-1", "ALM-6")
def test_auto_off(pump, sim):
    pump.set_setting("auto_off", 5)  # hours without interaction
    sim.advance(minutes=5 * 60 - 1)
    assert not kit.active(pump.status(), S.A_AUTO_OFF)  # queries are not interactions
    kit.drain_events(pump)
    elapsed, ev, _ = sim.run_until(
        lambda e: e.kind == S.EV_ALARM and e.a == S.A_AUTO_OFF, 2 * kit.MIN_MS)
    assert ev is not None and ev.b == S.ALARM_RAISED
    assert elapsed <= kit.MIN_MS + 3 * kit.SECOND_MS
    assert alarm(pump, "auto_off").priority == S.PRIO_HIGH
    sim.advance(seconds=25)
    assert pump.status().stop == S.STOP_NONE  # 30 s to react
    sim.advance(seconds=9)  # 30 s after the alarm, counted at the 1-Hz housekeeping
    st = pump.status()
    assert (st.stop, st.basal_rate) == (S.STOP_AUTO_OFF, 0)
    pump.resume()  # clears it
    assert not kit.active(pump.status(), S.A_AUTO_OFF)

    # acknowledged within 30 s by command: delivery goes on
    sim.run_until(lambda e: e.kind == S.EV_ALARM and e.a == S.A_AUTO_OFF, 6 * kit.HOUR_MS)
    sim.advance(seconds=10)
    pump.ack_alarm("auto_off")
    sim.advance(minutes=1)
    st = pump.status()
    assert st.stop == S.STOP_NONE and not kit.active(st, S.A_AUTO_OFF)

    # ... or by the button
    sim.run_until(lambda e: e.kind == S.EV_ALARM and e.a == S.A_AUTO_OFF, 6 * kit.HOUR_MS)
    sim.press(BUTTON_ACK)
    sim.advance(minutes=1)
    st = pump.status()
    assert st.stop == S.STOP_NONE and not kit.active(st, S.A_AUTO_OFF)


@pytest.mark.req("HW-3", "ALM-2", "THR-1")
def test_stuck_button_does_not_stop_therapy(pump, sim, pulse):
    st0 = pump.status()
    sim.fault(S.FAULT_BUTTON_STUCK, BUTTON_ACK)
    sim.advance(minutes=30)
    sim.fault(S.FAULT_BUTTON_STUCK, 0)
    st = pump.status()
    assert st.stop == S.STOP_NONE
    want = kit.programmed_mu(kit.local_ms(st0), 30 * kit.MIN_MS)
    assert abs((st.basal_today - st0.basal_today) - want) < pulse


@pytest.mark.req("THR-12", "ALM-1", "ALM-2", "ALM-6", "HIS-1", "HIS-2")
def test_prime_incomplete(pump, sim):
    """Issue 15: delivery resumed after a fill without a tubing prime raises the medium
    prime-incomplete alarm; it survives a power cut and acknowledgement, and a completed
    tubing prime clears it."""
    st0 = pump.status()
    pump.suspend()
    pump.rewind()
    pump.fill(kit.FILL_MU)
    pump.prime(S.PRIME_CANNULA, kit.PRIME_CANNULA_MU)  # the cannula is not the tubing
    sim.advance(seconds=2)
    assert not alarm(pump, "prime_incomplete").active  # suspended: nothing to say yet
    kit.drain_events(pump)
    pump.resume()  # not refused: the person may know the line is full
    sim.advance(seconds=2)
    a = alarm(pump, "prime_incomplete")
    assert (a.alarm, a.active, a.acked, a.priority) == (
        S.A_PRIME_INCOMPLETE, True, False, S.PRIO_MEDIUM)
    assert kit.alarm_events(kit.drain_events(pump), S.A_PRIME_INCOMPLETE, S.ALARM_RAISED)
    assert pump.status().stop == S.STOP_NONE

    sim.power_cut()
    st = pump.status()
    assert st.stop == S.STOP_NONE and kit.active(st, S.A_PRIME_INCOMPLETE)  # raised again
    pump.ack_alarm("prime_incomplete")
    a = alarm(pump, "prime_incomplete")
    assert (a.active, a.acked) == (True, True)  # snoozed, not cleared

    pump.suspend()
    pump.prime(S.PRIME_TUBING, kit.PRIME_TUBING_MU)
    assert not alarm(pump, "prime_incomplete").active
    pump.resume()
    sim.advance(seconds=2)
    assert not kit.active(pump.status(), S.A_PRIME_INCOMPLETE)
    logged = [(r.arg, r.v2) for r in kit.records(kit.history(pump, st0.history_next), S.H_ALARM)
              if r.v1 == S.A_PRIME_INCOMPLETE]
    assert logged == [(S.ALARM_RAISED, 0), (S.ALARM_RAISED, 0), (S.ALARM_ACKED, 0),
                      (S.ALARM_CLEARED, kit.PRIME_TUBING_MU)]
