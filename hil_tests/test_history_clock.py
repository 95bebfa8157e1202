"""History by sequence range (HIS-1), clock changes (THR-11), daily totals (THR-10),
priming (THR-12) and insulin on board (THR-9), read over the protocol."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit


@pytest.mark.req("HIS-1", "LNK-2")
def test_history_by_sequence_range(pump):
    st0 = pump.status()
    n0 = st0.history_next
    pump.temp_basal(S.TEMP_PERCENT, 120, 30)
    pump.cancel_temp_basal()
    pump.set_setting("snooze", 45)
    pump.set_setting("snooze", 30)
    pump.suspend()
    pump.resume()
    pump.bolus(100)
    pump.cancel_bolus()
    pump.set_schedule(kit.SCHEDULE)
    pump.set_time(st0.utc + 60, 0)
    want = [S.H_TEMP_START, S.H_TEMP_END, S.H_SETTING, S.H_SETTING, S.H_SUSPEND, S.H_RESUME,
            S.H_BOLUS_START, S.H_BOLUS_END, S.H_SCHEDULE, S.H_TIME_CHANGE]
    st = pump.status()
    assert st.history_next == n0 + len(want)

    recs = pump.get_history(n0, len(want))  # more than one page (8 records)
    assert [r.seq for r in recs] == list(range(n0, n0 + len(want)))
    assert [r.kind for r in recs] == want
    assert [(r.arg, r.v1, r.v2) for r in recs if r.kind == S.H_SETTING] == [
        (S.SET_SNOOZE, 30, 45), (S.SET_SNOOZE, 45, 30)]
    times = [r.time for r in recs]
    assert times == sorted(times) and times[0] == st0.utc and times[-1] == st0.utc + 60
    assert recs[-1].v1 == st0.utc and recs[-1].v2 == st0.utc + 60  # old and new local time

    middle = pump.get_history(n0 + 3, 4)  # any range
    assert [r.seq for r in middle] == [n0 + 3, n0 + 4, n0 + 5, n0 + 6]
    assert middle == recs[3:7]
    assert pump.get_history(st.history_next, 8) == []  # nothing beyond the newest
    for rec in kit.raw_history_page(pump, n0, 8):  # as stored: each with its CRC
        assert kit.record_crc_ok(rec)


@pytest.mark.req("THR-11", "THR-1", "THR-3", "HIS-1")
def test_clock_change_moves_schedule_not_delivery(pump, sim):
    st0 = pump.status()
    day = st0.local_day
    weekend = kit.weekday(day) >= 5
    bolus_id = pump.bolus(2000).detail
    sim.advance(seconds=40)
    before = pump.status()
    assert before.bolus_delivered == 1000

    pump.set_time(day * kit.DAY_S + 23 * 3600, 0)  # 08:00 -> 23:00
    st = pump.status()
    assert st.profile_rate == (600 if weekend else 900) == kit.rate_at(st.utc)
    same = ("basal_today", "bolus_today", "reservoir", "iob", "bolus_delivered", "bolus_id")
    assert {k: getattr(st, k) for k in same} == {k: getattr(before, k) for k in same}

    pump.set_time(st.utc, -600)  # same instant, 10 h west: local 13:00
    st = pump.status()
    assert (st.offset, st.local_day) == (-600, day)
    assert st.profile_rate == (1500 if weekend else 1000)
    assert {k: getattr(st, k) for k in same} == {k: getattr(before, k) for k in same}

    sim.advance(seconds=41)  # the bolus runs on the monotonic clock: exactly 2 U
    st = pump.status()
    assert st.bolus_id == 0 and st.bolus_today == 2000
    recs = kit.history(pump, st0.history_next)
    changes = kit.records(recs, S.H_TIME_CHANGE)
    assert [(r.v1 - day * kit.DAY_S, r.v2 - day * kit.DAY_S, r.v3) for r in changes] == [
        (8 * 3600 + 40, 23 * 3600, 0), (23 * 3600, 13 * 3600, -600)]
    ends = kit.records(recs, S.H_BOLUS_END)
    assert [(r.v1, r.v2) for r in ends] == [(bolus_id, 2000)]
    with pytest.raises(PumpRefused) as e:  # the offset has a range
        pump.set_time(st.utc, 900)
    assert e.value.code == S.E_OUT_OF_RANGE


@pytest.mark.req("THR-10", "THR-12", "THR-1", "HIS-1")
def test_daily_totals_with_split_and_prime(pump, sim, pulse):
    st0 = pump.status()
    day = st0.local_day
    t0 = kit.local_ms(st0)
    pump.bolus(1000)
    sim.advance(seconds=41)
    pump.suspend()  # prime is logged, not counted as given (THR-12)
    pump.prime(S.PRIME_CANNULA, 300)
    pump.resume()
    st = pump.status()
    assert st0.reservoir - st.reservoir == 1000 + 300 + st.basal_today
    to_midnight = (day + 1) * kit.DAY_MS - kit.local_ms(st)
    sim.advance(to_midnight + kit.MIN_MS)

    st = pump.status()
    assert st.local_day == day + 1
    tot = pump.get_totals(day)
    assert tot.valid and (tot.bolus, tot.prime) == (1000, 300)
    programmed = kit.programmed_mu(t0, (day + 1) * kit.DAY_MS - t0)
    assert abs(tot.basal - programmed) < pulse  # the suspend took no pump time
    today = pump.get_totals(day + 1)
    assert today.valid and today.basal == st.basal_today and today.bolus == 0
    assert not pump.get_totals(day + 2).valid  # not yet
    assert not pump.get_totals(day - 200).valid  # never recorded
    closed = [r for r in kit.records(kit.history(pump, st0.history_next), S.H_DAY_TOTAL)
              if r.v1 == day]
    assert [(r.v2, r.v3) for r in closed] == [(tot.basal, tot.bolus)]

    # kept for at least 90 days: step the clock day by day
    for i in range(2, 92):
        pump.set_time((day + i) * kit.DAY_S + 8 * 3600, 0)
    again = pump.get_totals(day)
    assert again == tot
    assert pump.get_totals(day + 1).valid


@pytest.mark.req("THR-9", "THR-3")
def test_insulin_on_board_follows_the_action_curve(pump, sim):
    """IOB of a 2 U bolus over the default 5 h action time, within the 5-min bookkeeping
    step of the documented triangular curve (peak 75 min)."""
    pump.bolus(2000)
    sim.advance(seconds=80)  # the whole bolus, in its first 80 s
    assert pump.status().iob == 2000
    at = 80 * kit.SECOND_MS  # pump time since the bolus started
    last = 2000
    for minutes in (30, 60, 90, 120, 180, 240, 290):
        sim.advance(minutes * kit.MIN_MS - at)
        at = minutes * kit.MIN_MS
        iob = pump.status().iob
        # the pump ages insulin in 5-min buckets, erring high (never stacking)
        lo = 2000 * iob_permille(minutes) // 1000
        hi = 2000 * iob_permille(minutes - 7) // 1000
        assert lo <= iob <= hi, (minutes, iob, lo, hi)
        assert iob <= last
        last = iob
    sim.advance(312 * kit.MIN_MS - at)  # past the 5 h action time
    assert pump.status().iob == 0


def iob_permille(age_min: int, dia_min: int = 300, peak: int = 75) -> int:
    """The documented action curve (REQUIREMENTS THR-9; firmware/pump.py iob_permille)."""
    if age_min <= 0:
        return 1000
    if age_min >= dia_min:
        return 0
    if age_min <= peak:
        return 1000 - age_min * age_min * 1000 // (peak * dia_min)
    left = dia_min - age_min
    return left * left * 1000 // (dia_min * (dia_min - peak))
