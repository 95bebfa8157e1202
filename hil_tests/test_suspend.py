"""Suspend and resume, the suspend reminder and the no-delivery alarm (THR-5, ALM-1, ALM-6)."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit


@pytest.mark.req("THR-5", "THR-2", "LNK-4", "HIS-1", "HIS-2")
def test_suspend_stops_everything_and_resume_restarts_basal_only(pump, sim):
    st0 = pump.status()
    pump.temp_basal(S.TEMP_PERCENT, 150, 120)
    bolus_id = pump.bolus(3000).detail
    sim.advance(seconds=40)
    done = pump.status().bolus_delivered
    assert done == 1000

    pump.suspend()
    st = pump.status()
    assert (st.stop, st.basal_rate, st.bolus_id, st.temp_kind) == (S.STOP_USER, 0, 0, 0)
    events = kit.drain_events(pump)
    assert [(e.b, e.c) for e in events if e.kind == S.EV_BOLUS_END] == [
        (done, S.BOLUS_INTERRUPTED)]
    assert [e.a for e in events if e.kind == S.EV_STATE] == [S.STOP_USER]
    recs = kit.history(pump, st0.history_next)
    assert [(r.arg, r.v1, r.v2, r.v3) for r in kit.records(recs, S.H_BOLUS_END)] == [
        (S.BOLUS_INTERRUPTED, bolus_id, done, 3000)]
    assert [r.arg for r in kit.records(recs, S.H_TEMP_END)] == [S.TEMP_END_SUSPENDED]
    assert [r.arg for r in kit.records(recs, S.H_SUSPEND)] == [S.STOP_USER]

    # nothing moves while suspended; commands that would deliver are refused
    sim.advance(minutes=20)
    st1 = pump.status()
    assert (st1.reservoir, st1.basal_today, st1.bolus_today) == (
        st.reservoir, st.basal_today, st.bolus_today)
    for call in (lambda: pump.bolus(500), lambda: pump.temp_basal(S.TEMP_ABSOLUTE, 500, 30),
                 pump.suspend):
        with pytest.raises(PumpRefused) as e:
            call()
        assert (e.value.code, e.value.detail) == (S.E_SUSPENDED, S.STOP_USER)

    pump.resume()
    st = pump.status()
    assert st.stop == S.STOP_NONE and st.bolus_id == 0 and st.temp_kind == S.TEMP_NONE
    assert st.basal_rate == st.profile_rate
    sim.advance(minutes=30)
    st = pump.status()
    assert st.bolus_today == st1.bolus_today  # the interrupted bolus is not resumed
    assert st.basal_today > st1.basal_today
    with pytest.raises(PumpRefused) as e:
        pump.resume()
    assert e.value.code == S.E_NOT_SUSPENDED


@pytest.mark.req("THR-5", "ALM-1", "ALM-2", "ALM-6")
def test_suspend_reminder_repeats(pump, sim):
    pump.suspend()
    kit.drain_events(pump)
    sim.advance(minutes=29)
    assert not kit.active(pump.status(), S.A_SUSPEND_REMINDER)
    sim.advance(minutes=1, seconds=3)  # housekeeping runs once a second (+- tick jitter)
    st = pump.status()
    assert kit.active(st, S.A_SUSPEND_REMINDER)
    assert S.ALARMS[S.A_SUSPEND_REMINDER][1] == S.PRIO_LOW
    raised = kit.alarm_events(kit.drain_events(pump), S.A_SUSPEND_REMINDER, S.ALARM_RAISED)
    assert len(raised) == 1 and raised[0].c == S.STOP_USER
    pump.ack_alarm(S.A_SUSPEND_REMINDER)  # a reminder clears when acknowledged
    assert not kit.active(pump.status(), S.A_SUSPEND_REMINDER)
    sim.advance(minutes=31)  # and comes again
    assert kit.active(pump.status(), S.A_SUSPEND_REMINDER)
    events = kit.drain_events(pump)
    assert [e.b for e in kit.alarm_events(events, S.A_SUSPEND_REMINDER)] == [
        S.ALARM_ACKED, S.ALARM_CLEARED, S.ALARM_RAISED]


@pytest.mark.req("THR-5", "ALM-1", "ALM-2", "ALM-6", "HIS-1")
def test_no_delivery_alarm_after_four_hours(pump, sim):
    """No insulin for 4 h (default): a high-priority alarm, measured event by event."""
    st0 = pump.status()
    pump.suspend()
    kit.drain_events(pump)
    elapsed, ev, seen = sim.run_until(
        lambda e: e.kind == S.EV_ALARM and e.a == S.A_NO_DELIVERY, 5 * kit.HOUR_MS)
    assert ev is not None and ev.b == S.ALARM_RAISED, seen
    # the last pulse came at most 32 s before the test started (the strategy's settle step)
    assert 239 * kit.MIN_MS <= elapsed <= 240 * kit.MIN_MS + 3 * kit.SECOND_MS
    alarms = {a.name: a for a in pump.get_alarms()}
    assert alarms["no_delivery"].active and alarms["no_delivery"].priority == S.PRIO_HIGH
    # the suspend reminder came every 30 min on the way
    reminders = kit.alarm_events(seen, S.A_SUSPEND_REMINDER, S.ALARM_RAISED)
    assert len(reminders) == elapsed // (30 * kit.MIN_MS)

    pump.ack_alarm(S.A_NO_DELIVERY)  # acknowledged, but the condition holds: stays active
    alarms = {a.name: a for a in pump.get_alarms()}
    assert alarms["no_delivery"].active and alarms["no_delivery"].acked
    pump.resume()
    _ms, ev, _seen = sim.run_until(
        lambda e: e.kind == S.EV_ALARM and e.a == S.A_NO_DELIVERY and e.b == S.ALARM_CLEARED,
        5 * kit.MIN_MS)
    assert ev is not None  # cleared by the first pulse
    recs = kit.records(kit.history(pump, st0.history_next), S.H_ALARM)
    assert [r.arg for r in recs if r.v1 == S.A_NO_DELIVERY] == [
        S.ALARM_RAISED, S.ALARM_ACKED, S.ALARM_CLEARED]
