"""Occlusion during a bolus and during basal: detected in time, delivery stopped, and the
insulin that did not flow never delivered later by surprise (ALM-3, ALM-1, ALM-6)."""

from __future__ import annotations

import pytest

from protocol import spec as S

from . import kit


def occlusion_raised(ev):
    return ev.kind == S.EV_ALARM and ev.a == S.A_OCCLUSION and ev.b == S.ALARM_RAISED


def check_no_surprise(pump, sim, pulse, minutes):
    """After clearing the line and resuming: only the programmed basal flows."""
    pump.resume()
    st0 = pump.status()
    assert st0.stop == S.STOP_NONE
    assert not kit.active(st0, S.A_OCCLUSION)  # resume clears the alarm
    sim.advance(minutes=minutes)
    st = pump.status()
    assert st.bolus_today == st0.bolus_today
    assert st.bolus_id == 0
    want = kit.programmed_mu(kit.local_ms(st0), minutes * kit.MIN_MS)
    assert abs((st.basal_today - st0.basal_today) - want) < pulse
    assert st0.reservoir - st.reservoir == st.basal_today - st0.basal_today


@pytest.mark.req("ALM-3", "ALM-1", "ALM-6", "THR-3", "HIS-1", "HW-3")
def test_occlusion_during_bolus(pump, sim, pulse):
    st0 = pump.status()
    bolus_id = pump.bolus(5000).detail
    sim.occlusion(True)
    elapsed, ev, seen = sim.run_until(occlusion_raised, 5 * kit.MIN_MS)
    assert ev is not None, "no occlusion alarm within 5 min of a blocked bolus"
    # about 3 U pushed against the blocked line at 1.5 U/min: within 2 min
    assert 80 * kit.SECOND_MS <= elapsed <= 120 * kit.SECOND_MS
    st = pump.status()
    assert (st.stop, st.bolus_id) == (S.STOP_OCCLUSION, 0)
    alarms = {a.name: a for a in pump.get_alarms()}
    assert alarms["occlusion"].active and alarms["occlusion"].priority == S.PRIO_HIGH
    ends = [e for e in seen if e.kind == S.EV_BOLUS_END]
    assert [(e.a, e.c) for e in ends] == [(bolus_id, S.BOLUS_INTERRUPTED)]
    pushed = ends[0].b
    assert 2000 <= pushed < 5000 and st.bolus_today - st0.bolus_today == pushed
    assert [e.a for e in seen if e.kind == S.EV_STATE] == [S.STOP_OCCLUSION]
    recs = kit.history(pump, st0.history_next)
    assert [(r.arg, r.v2) for r in kit.records(recs, S.H_BOLUS_END)] == [
        (S.BOLUS_INTERRUPTED, pushed)]
    assert [r.arg for r in kit.records(recs, S.H_SUSPEND)] == [S.STOP_OCCLUSION]

    sim.advance(minutes=5)  # stopped: nothing more is pushed
    assert pump.status().bolus_today == st.bolus_today
    sim.occlusion(False)
    check_no_surprise(pump, sim, pulse, 30)


@pytest.mark.req("ALM-3", "ALM-1", "THR-2", "HW-3")
def test_occlusion_during_basal_at_1_u_per_h(pump, sim, pulse):
    pump.temp_basal(S.TEMP_ABSOLUTE, 1000, 4 * 60)
    sim.occlusion(True)
    elapsed, ev, seen = sim.run_until(occlusion_raised, 4 * kit.HOUR_MS)
    assert ev is not None, "no occlusion alarm within 4 h at 1 U/h"
    assert 120 * kit.MIN_MS <= elapsed <= 180 * kit.MIN_MS  # within 3 h
    st = pump.status()
    assert (st.stop, st.temp_kind, st.basal_rate) == (S.STOP_OCCLUSION, S.TEMP_NONE, 0)
    sim.occlusion(False)
    check_no_surprise(pump, sim, pulse, 60)
