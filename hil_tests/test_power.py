"""Power cuts and storage faults on the emulator (HIS-2, ALM-5, LNK-3)."""

from __future__ import annotations

import pytest

from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit


@pytest.mark.req("HIS-2", "ALM-5", "THR-3", "HIS-1", "HW-3")
def test_power_cut_mid_bolus(pump, sim):
    """A bolus cut off by power loss: recorded interrupted with what was delivered, counted
    once, never resumed; the pump boots with its self-tests passed."""
    bolus_id = pump.bolus(4000).detail  # 160 s at 1.5 U/min
    sim.advance(seconds=60)
    before = pump.status()
    assert before.bolus_delivered == 1500
    seq0 = before.history_next

    info = sim.power_cut(after_ms=10 * kit.SECOND_MS)  # dies 10 s later, mid-bolus

    st = pump.status()
    assert st.bolus_id == 0, "the bolus must not resume after a power cut"
    recs = kit.history(pump, seq0)
    ends = [r for r in kit.records(recs, S.H_BOLUS_END) if r.v1 == bolus_id]
    assert len(ends) == 1 and ends[0].arg == S.BOLUS_INTERRUPTED and ends[0].v3 == 4000
    delivered = ends[0].v2
    assert 1500 <= delivered <= 1500 + 10 * 1500 // 60 + 100
    # counted once: totals and the plunger agree with the record
    assert st.bolus_today - before.bolus_today == delivered - 1500
    moved = before.reservoir - st.reservoir
    assert moved == (delivered - 1500) + (st.basal_today - before.basal_today)
    boots = kit.records(recs, S.H_BOOT)
    assert len(boots) == 1 and boots[0].v1 == 0 and boots[0].v2 == info.boots  # self-tests ok
    assert st.selftest == 0

    sim.advance(minutes=5)  # still not resumed; basal goes on as before the cut
    after = pump.status()
    assert after.bolus_today == st.bolus_today and after.bolus_id == 0
    assert after.stop == S.STOP_NONE and after.basal_today > st.basal_today
    # the host can still find out what its last command did (LNK-3)
    assert after.last_cmd_id != 0


@pytest.mark.req("HIS-2", "LNK-3", "SEC-2", "HW-3")
def test_power_cut_keeps_command_ids_and_counter(pump, sim, raw):
    """After a restart a repeated command id returns its first result and acts no second
    time, and an old auth counter is still refused."""
    cid = pump.counter + 1
    fields = {"cmd_id": cid, "kind": S.TEMP_PERCENT, "value": 80, "minutes": 60}
    seq, first = raw.frame("temp_basal", fields)
    raw.send(first)
    ans = raw.answer(seq)
    assert (ans["cmd_id"], ans["code"]) == (cid, S.OK)
    seq0 = pump.status().history_next

    sim.power_cut()

    m = raw.exchange("temp_basal", fields)  # same cmd id, fresh counter
    assert (m.name, m["cmd_id"], m["code"]) == ("result", cid, S.OK)
    raw.send(first)  # the very same frame: its counter was used before the cut
    m = raw.answer(seq)
    assert (m["code"], m["detail"]) == (S.E_BAD_AUTH, S.AUTH_REPLAYED)
    starts = kit.records(kit.history(pump, seq0), S.H_TEMP_START)
    assert starts == []  # no second start
    st = pump.status()
    assert (st.temp_kind, st.temp_value) == (S.TEMP_PERCENT, 80)


@pytest.mark.req("ALM-5", "ALM-1", "HIS-2", "LNK-4", "HW-3")
def test_storage_failure_stops_delivery_safely(pump, sim):
    """Flash writes of the pump's data fail: nothing is moved that could not be recorded,
    and after repeated failures the pump stops in the safe state with a high-priority
    alarm. Only a reboot with healthy storage (self-tests pass) leaves the safe state."""
    st0 = pump.status()
    sim.fault(S.FAULT_STORAGE_FAIL, 1)  # the pump's regions; the link's counter still works
    with pytest.raises(PumpRefused) as e:
        pump.set_setting("snooze", 31)
    assert e.value.code == S.E_STORAGE
    sim.advance(minutes=5)  # the next basal pulses cannot be recorded
    st = pump.status()
    assert st.stop == S.STOP_SELFTEST and st.selftest & S.ST_STORAGE
    assert kit.active(st, S.A_SELFTEST)
    assert S.ALARMS[S.A_SELFTEST][1] == S.PRIO_HIGH
    # nothing was counted that did not move, nothing moved that was not counted
    assert st0.reservoir - st.reservoir == st.basal_today - st0.basal_today
    for call in (pump.resume, lambda: pump.bolus(500)):
        with pytest.raises(PumpRefused) as e:
            call()
        assert (e.value.code, e.value.detail) == (S.E_SAFE_STATE, st.selftest)
    sim.advance(minutes=5)
    assert pump.status().reservoir == st.reservoir  # stopped

    # a power cut with the storage still failing: the power-on self-test finds it (ALM-5)
    sim.power_cut()
    st = pump.status()
    assert st.stop == S.STOP_SELFTEST and st.selftest & S.ST_STORAGE
    assert kit.active(st, S.A_SELFTEST)

    sim.fault(S.FAULT_STORAGE_FAIL, 0)  # healed, but only a reboot re-runs the self-tests
    with pytest.raises(PumpRefused) as e:
        pump.resume()
    assert e.value.code == S.E_SAFE_STATE
    info = sim.power_cut()
    st = pump.status()
    assert (st.selftest, st.stop) == (0, S.STOP_USER)  # suspended until the user resumes
    boots = kit.records(kit.history(pump, st0.history_next), S.H_BOOT)
    assert (boots[-1].v1, boots[-1].v2) == (0, info.boots)  # self-tests passed at power-on
    pump.resume()
    assert pump.status().delivering
