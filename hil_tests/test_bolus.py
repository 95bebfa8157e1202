"""Boluses over the protocol: normal, extended, dual wave, cancel (THR-3, THR-4), with
progress in status and in events (LNK-2) and exact accounting (history, totals, plunger)."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit


def bolus_events(events, bolus_id):
    prog = [(e.b, e.c) for e in events if e.kind == S.EV_BOLUS and e.a == bolus_id]
    ends = [(e.b, e.c) for e in events if e.kind == S.EV_BOLUS_END and e.a == bolus_id]
    return prog, ends


def check_accounting(pump, st0, bolus_mu):
    """Bolus and basal counted as the plunger moved them; nothing else."""
    st = pump.status()
    assert st.bolus_today - st0.bolus_today == bolus_mu
    moved = st0.reservoir - st.reservoir
    assert moved == bolus_mu + st.basal_today - st0.basal_today
    return st


@pytest.mark.req("THR-3", "LNK-2", "HIS-1", "THR-9")
def test_normal_bolus_progress_and_completion(pump, sim):
    st0 = pump.status()
    r = pump.bolus(1500)
    bolus_id = r.detail
    st = pump.status()
    assert (st.bolus_id, st.bolus_kind, st.bolus_requested) == (bolus_id, S.BOLUS_NORMAL, 1500)
    assert st.bolus_delivered == 0

    sim.advance(seconds=30)  # 1.5 U/min (default speed): half of it after 30 s
    st = pump.status()
    assert st.bolus_id == bolus_id and st.bolus_delivered == 750
    sim.advance(seconds=31)
    st = pump.status()
    assert st.bolus_id == 0 and st.iob > 0
    prog, ends = bolus_events(kit.drain_events(pump), bolus_id)
    # progress: requested 1.5 U throughout, delivered growing pulse by pulse up to all of it
    # (the pump keeps the latest 16 events: the earliest may have been dropped)
    assert len(prog) >= 5 and prog[-1] == (1500, 1500)
    assert {c for _, c in prog} == {1500}
    assert [d for d, _ in prog] == sorted(d for d, _ in prog)
    assert ends == [(1500, S.BOLUS_COMPLETED)]
    check_accounting(pump, st0, 1500)
    recs = kit.history(pump, st0.history_next)
    assert [(r.arg, r.v1, r.v2, r.v3) for r in kit.records(recs, S.H_BOLUS_START)] == [
        (S.BOLUS_NORMAL, bolus_id, 1500, 0)]
    assert [(r.arg, r.v1, r.v2, r.v3) for r in kit.records(recs, S.H_BOLUS_END)] == [
        (S.BOLUS_COMPLETED, bolus_id, 1500, 1500)]


@pytest.mark.req("THR-4", "LNK-2")
def test_extended_bolus_spreads_evenly(pump, sim):
    st0 = pump.status()
    bolus_id = pump.bolus(0, 2000, 60).detail
    st = pump.status()
    assert (st.bolus_kind, st.bolus_requested) == (S.BOLUS_EXTENDED, 2000)
    sim.advance(minutes=15)
    assert pump.status().bolus_delivered == 500
    sim.advance(minutes=15)
    assert pump.status().bolus_delivered == 1000
    sim.advance(minutes=30)
    st = pump.status()
    assert st.bolus_id == 0
    _prog, ends = bolus_events(kit.drain_events(pump), bolus_id)
    assert ends == [(2000, S.BOLUS_COMPLETED)]
    check_accounting(pump, st0, 2000)


@pytest.mark.req("THR-4")
def test_dual_wave_bolus(pump, sim):
    st0 = pump.status()
    bolus_id = pump.bolus(1000, 1000, 30).detail
    st = pump.status()
    assert (st.bolus_kind, st.bolus_requested) == (S.BOLUS_DUAL, 2000)
    sim.advance(seconds=40)  # the immediate part, at 1.5 U/min
    assert pump.status().bolus_delivered == 1000
    # then the extended part over 30 min, from the end of the tick that finished the first
    # (pulse k of 20 is due k * 90 s later)
    sim.advance(minutes=15, seconds=10)
    assert pump.status().bolus_delivered == 1500
    sim.advance(minutes=16)
    st = pump.status()
    assert st.bolus_id == 0
    _prog, ends = bolus_events(kit.drain_events(pump), bolus_id)
    assert ends == [(2000, S.BOLUS_COMPLETED)]
    check_accounting(pump, st0, 2000)
    starts = kit.records(kit.history(pump, st0.history_next), S.H_BOLUS_START)
    assert [(r.arg, r.v2, r.v3) for r in starts] == [(S.BOLUS_DUAL, 1000, 1000)]


@pytest.mark.req("THR-3", "THR-4", "LNK-4", "HIS-1")
@pytest.mark.parametrize(("now", "ext", "minutes", "run_s"), [
    (5000, 0, 0, 20),  # normal: 0.5 U after 20 s
    (0, 3000, 60, 20 * 60),  # extended: 1 U after 20 min
    (1000, 2000, 30, 70),  # dual: all of the immediate part, then some extended
])
def test_cancel_bolus(pump, sim, now, ext, minutes, run_s):
    st0 = pump.status()
    bolus_id = pump.bolus(now, ext, minutes).detail
    with pytest.raises(PumpRefused) as e:  # one bolus at a time
        pump.bolus(100)
    assert (e.value.code, e.value.detail) == (S.E_BOLUS_RUNNING, bolus_id)
    sim.advance(seconds=run_s)
    done = pump.status().bolus_delivered
    assert 0 < done < now + ext
    r = pump.cancel_bolus()
    assert r.detail == bolus_id
    st = pump.status()
    assert st.bolus_id == 0 and st.bolus_today - st0.bolus_today == done
    sim.advance(minutes=10)  # nothing more of it is delivered
    check_accounting(pump, st0, done)
    with pytest.raises(PumpRefused) as e:
        pump.cancel_bolus()
    assert e.value.code == S.E_NO_BOLUS
    _prog, ends = bolus_events(kit.drain_events(pump), bolus_id)
    assert ends == [(done, S.BOLUS_CANCELLED)]
    end = kit.records(kit.history(pump, st0.history_next), S.H_BOLUS_END)
    assert [(r.arg, r.v1, r.v2, r.v3) for r in end] == [
        (S.BOLUS_CANCELLED, bolus_id, done, now + ext)]


@pytest.mark.req("THR-3", "THR-7", "LNK-4")
def test_bolus_amounts_refused_without_rounding(pump, pulse):
    st0 = pump.status()
    with pytest.raises(PumpRefused) as e:
        pump.bolus(1000 + pulse // 2)  # not a whole number of pulses
    assert (e.value.code, e.value.detail) == (S.E_INCREMENT, pulse)
    with pytest.raises(PumpRefused) as e:
        pump.bolus(S.MIN_BOLUS - 10)  # under 0.05 U
    assert e.value.code == S.E_OUT_OF_RANGE
    with pytest.raises(PumpRefused) as e:
        pump.bolus(0, 1000, 20)  # extended under 30 min
    assert (e.value.code, e.value.detail) == (S.E_OUT_OF_RANGE, 3)
    with pytest.raises(PumpRefused) as e:
        pump.bolus(0, 1000, 8 * 60 + 1)  # over 8 h
    assert (e.value.code, e.value.detail) == (S.E_OUT_OF_RANGE, 3)
    st = pump.status()
    assert st.bolus_id == 0 and st.history_next == st0.history_next  # nothing logged
