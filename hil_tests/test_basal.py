"""Basal delivery over the protocol: profiles, weekly schedule, temp basal (THR-1, THR-2, THR-7).

Delivered insulin is read back as the pump reports it (daily totals, status, reservoir);
the programmed integral is computed here from the baseline profiles (kit.PROFILES)."""

from __future__ import annotations

import pytest

from protocol import spec as S

from . import kit


def pulses_apart(delivered: int, programmed, pulse: int) -> float:
    return abs(delivered - programmed) / pulse


@pytest.mark.req("THR-1", "THR-7", "THR-10", "THR-12", "HW-3")
def test_basal_72h_matches_programmed_integral(pump, sim, pulse):
    """72 h from Friday 08:00 (weekday -> weekend -> weekday profile) in lockstep: the basal
    delivered, from daily totals and from the plunger, equals the programmed integral to
    within one pulse, and each whole day within one pulse too."""
    st = pump.status()
    start = kit.next_day_at(st, want_weekday=4)  # a Friday, 08:00 local (offset 0)
    pump.set_time(start, 0)
    sim.fault(S.FAULT_BATTERY_DRAIN, 0)  # isolate basal from the battery model
    st0 = pump.status()
    assert (st0.utc, st0.basal_today) == (start, 0)
    t0 = kit.local_ms(st0)
    day0 = start // kit.DAY_S

    sim.advance(hours=72)

    st = pump.status()
    assert st.utc == start + 72 * 3600
    assert st.stop == S.STOP_NONE, st.stop_reason
    days = [pump.get_totals(day0 + i) for i in range(4)]
    assert all(d.valid for d in days)
    assert all(d.bolus == 0 and d.prime == 0 for d in days)
    assert days[3].basal == st.basal_today
    delivered = sum(d.basal for d in days)
    programmed = kit.programmed_mu(t0, 72 * kit.HOUR_MS)
    assert pulses_apart(delivered, programmed, pulse) < 1, (delivered, float(programmed))
    # the plunger moved exactly what was counted
    assert st0.reservoir - st.reservoir == delivered
    # whole days (Saturday, Sunday) within one pulse of their day's profile
    for i in (1, 2):
        day_programmed = kit.programmed_mu((day0 + i) * kit.DAY_MS, kit.DAY_MS)
        assert pulses_apart(days[i].basal, day_programmed, pulse) < 1, i
    assert kit.programmed_mu((day0 + 1) * kit.DAY_MS, kit.DAY_MS) == 28600  # weekend
    assert kit.programmed_mu(day0 * kit.DAY_MS, kit.DAY_MS) == 23400  # weekday

    # THR-12: 3 days after the cannula was filled, the set-change reminder comes
    sim.advance(minutes=2)
    assert kit.active(pump.status(), S.A_SET_CHANGE)


@pytest.mark.req("THR-1")
def test_weekday_and_weekend_profiles_switch_at_midnight(pump, sim):
    st = pump.status()
    friday = kit.next_day_at(st, hour=23, want_weekday=4)
    pump.set_time(friday + 59 * 60, 0)  # Friday 23:59
    st = pump.status()
    assert st.profile_rate == st.basal_rate == 900  # weekday profile, 18:00-24:00
    sim.advance(minutes=2)  # Saturday 00:01
    st = pump.status()
    assert kit.weekday(st.local_day) == 5
    assert st.profile_rate == st.basal_rate == 700  # weekend profile, 00:00-07:00
    sim.advance(minutes=7 * 60)  # Saturday 07:01
    assert pump.status().profile_rate == 1500

    sunday_late = (st.local_day + 1) * kit.DAY_S + 23 * 3600 + 59 * 60
    pump.set_time(sunday_late, 0)  # Sunday 23:59
    assert pump.status().profile_rate == 600
    sim.advance(minutes=2)  # Monday 00:01
    st = pump.status()
    assert kit.weekday(st.local_day) == 0
    assert st.profile_rate == st.basal_rate == 800
    assert pump.get_schedule() == list(kit.SCHEDULE)


@pytest.mark.req("THR-2", "THR-7", "HIS-1")
def test_temp_basal_absolute_runs_and_expires(pump, sim, pulse):
    st0 = pump.status()
    assert st0.profile_rate in (1200, 1500)  # 08:00, weekday or weekend
    pump.temp_basal(S.TEMP_ABSOLUTE, 300, 30)
    st = pump.status()
    assert (st.temp_kind, st.temp_value, st.temp_left_min) == (S.TEMP_ABSOLUTE, 300, 30)
    assert st.basal_rate == 300 and st.profile_rate == st0.profile_rate

    sim.advance(minutes=29)
    st = pump.status()
    assert st.temp_kind == S.TEMP_ABSOLUTE and st.temp_left_min <= 1
    sim.advance(minutes=1)
    st = pump.status()
    assert st.temp_kind == S.TEMP_NONE and st.basal_rate == st.profile_rate  # expired
    assert pulses_apart(st.basal_today, 150, pulse) < 1  # 0.3 U/h for 30 min

    sim.advance(minutes=30)  # back on the profile
    st = pump.status()
    assert pulses_apart(st.basal_today, 150 + st0.profile_rate // 2, pulse) < 1
    recs = kit.history(pump, st0.history_next)
    starts = kit.records(recs, S.H_TEMP_START)
    ends = kit.records(recs, S.H_TEMP_END)
    assert [(r.arg, r.v1, r.v2) for r in starts] == [(S.TEMP_ABSOLUTE, 300, 30)]
    assert [r.arg for r in ends] == [S.TEMP_END_EXPIRED]
    assert ends[0].time - starts[0].time == 30 * 60


@pytest.mark.req("THR-2", "THR-7")
@pytest.mark.parametrize("percent", [0, 50, 250])
def test_temp_basal_percent_of_profile(pump, sim, pulse, percent):
    st0 = pump.status()
    pump.temp_basal(S.TEMP_PERCENT, percent, 60)
    st = pump.status()
    assert st.temp_kind == S.TEMP_PERCENT and st.temp_value == percent
    assert st.basal_rate == st0.profile_rate * percent // 100
    sim.advance(minutes=60)
    st = pump.status()
    assert st.temp_kind == S.TEMP_NONE
    want = kit.programmed_mu(kit.local_ms(st0), kit.HOUR_MS) * percent / 100
    assert pulses_apart(st.basal_today, want, pulse) < 1


@pytest.mark.req("THR-2", "LNK-4", "HIS-1")
def test_temp_basal_cancel_and_replace(pump, sim):
    st0 = pump.status()
    pump.temp_basal(S.TEMP_ABSOLUTE, 2000, 120)
    sim.advance(minutes=10)
    pump.temp_basal(S.TEMP_PERCENT, 50, 15)  # replaces the running one
    st = pump.status()
    assert (st.temp_kind, st.temp_value, st.temp_left_min) == (S.TEMP_PERCENT, 50, 15)
    pump.cancel_temp_basal()
    st = pump.status()  # back to the profile at once
    assert st.temp_kind == S.TEMP_NONE and st.basal_rate == st.profile_rate == st0.profile_rate
    with pytest.raises(kit.C.PumpRefused) as e:
        pump.cancel_temp_basal()
    assert e.value.code == S.E_NO_TEMP_BASAL
    ends = kit.records(kit.history(pump, st0.history_next), S.H_TEMP_END)
    assert [r.arg for r in ends] == [S.TEMP_END_CANCELLED, S.TEMP_END_CANCELLED]


@pytest.mark.req("THR-2", "LNK-4")
@pytest.mark.parametrize(("kind", "value", "minutes", "detail"), [
    (S.TEMP_ABSOLUTE, 1000, 20, 2),  # not a 15-min step
    (S.TEMP_ABSOLUTE, 1000, 0, 2),
    (S.TEMP_ABSOLUTE, 1000, 24 * 60 + 15, 2),  # over 24 h
    (S.TEMP_PERCENT, 251, 30, 1),  # over 250 %
])
def test_temp_basal_out_of_range_refused(pump, kind, value, minutes, detail):
    with pytest.raises(kit.C.PumpRefused) as e:
        pump.temp_basal(kind, value, minutes)
    assert (e.value.code, e.value.detail) == (S.E_OUT_OF_RANGE, detail)
    assert pump.status().temp_kind == S.TEMP_NONE
    pump.temp_basal(kind, min(value, 250), 24 * 60)  # the longest is fine
