"""Safety state through reboots, outages and clock changes, over the protocol (issue 9).

Each scenario of issue 9 as a black-box test on the emulator in lockstep: power cuts and
outages of chosen length, the real-time clock with and without its backup cell, clock
changes, a motor driver that faults mid-therapy (ALM-7).
"""

from __future__ import annotations

import pytest

from host_tools import client as C
from host_tools.client import PumpRefused
from protocol import spec as S

from . import kit
from .strategy import PumpStrategy

HOUR_MS = 3600 * kit.SECOND_MS
MIN_MS = 60 * kit.SECOND_MS


def outage(sim, seconds: int):
    """A power cut now that keeps the board off `seconds`."""
    sim.fault(S.FAULT_OUTAGE, seconds)
    return sim.power_cut()


@pytest.mark.req("THR-13", "HIS-3", "THR-11", "HW-3")
def test_the_clock_is_exact_after_a_suspension_and_an_outage(pump, sim):
    """Scenario 1: 3 h suspended, then a 10-min battery swap: the pump's clock lost 11 min
    and still said 'time set'. With its RTC it is exact."""
    pump.suspend()
    sim.advance(minutes=180)
    before = pump.status()
    outage(sim, 600)
    st = pump.status()
    assert st.time_set == 1
    assert st.utc == before.utc + 600
    assert not kit.active(st, S.A_TIME_UNSET)
    boot = kit.records(kit.history(pump, before.history_next), S.H_BOOT)
    assert boot[0].time == before.utc + 600  # the boot record is not earlier than the cut


@pytest.mark.req("THR-13", "HIS-3", "HW-3")
def test_without_the_rtc_backup_the_time_is_unset_alarmed_and_recorded(pump, sim):
    """Scenario 1 with the RTC's backup cell removed: status says unset, a medium alarm
    asks for the time, history marks the gap; the schedule is not followed meanwhile."""
    sim.fault(S.FAULT_RTC_BACKUP, 0)
    before = pump.status()
    outage(sim, 3600)
    st = pump.status()
    assert st.time_set == 0
    assert kit.active(st, S.A_TIME_UNSET)
    recs = kit.history(pump, before.history_next)
    lost = kit.records(recs, S.H_TIME_LOST)
    assert len(lost) == 1 and lost[0].v2 == -1
    times = [r.time for r in recs]
    assert times == sorted(times) and times[0] >= before.utc  # never backwards
    # the time is set again: alarm cleared, the schedule runs on the right clock
    pump.set_time(before.utc + 3600 + 60, before.offset)
    st = pump.status()
    assert st.time_set == 1 and not kit.active(st, S.A_TIME_UNSET)
    assert st.basal_rate == st.profile_rate == kit.rate_at(kit.local_ms(st) // 1000)


@pytest.mark.req("THR-5", "HIS-3", "THR-13", "HW-3")
def test_no_delivery_alarm_counts_across_a_reboot(pump, sim):
    """Scenario 2: suspended 3 h 59 min, reboot, 3 h more: no alarm after 6 h 59 min
    without insulin. Now it comes at 4 h after the last pulse (one 1-s tick of slack)."""
    pump.suspend()
    sim.advance(minutes=3 * 60 + 55)
    outage(sim, 3 * 60)  # 3 h 58 min without insulin, the last 3 min with the power off
    st = pump.status()
    assert not kit.active(st, S.A_NO_DELIVERY)
    ms = sim.until_event(10 * MIN_MS)  # the alarm's event
    assert 60 * kit.SECOND_MS <= ms <= 3 * MIN_MS
    assert kit.active(pump.status(), S.A_NO_DELIVERY)


@pytest.mark.req("THR-9", "THR-6", "HIS-3", "THR-11", "HW-3")
def test_iob_and_the_hour_limit_survive_a_clock_set_back_and_a_reboot(pump, sim):
    """Scenario 3: clock back 1 h, reboot: IOB read 0 and a second 10-U bolus was accepted
    minutes after the first with max 10 U per hour."""
    sim.empty_day_window()  # no bolus of earlier tests in the 60-min window or in IOB
    pump.set_setting("max_bolus_1h", 10000)
    pump.bolus(10000)
    sim.advance(minutes=8)
    st = pump.status()
    assert st.bolus_id == 0 and st.iob > 9000
    pump.set_time(st.utc - 3600, st.offset)
    sim.power_cut()
    after = pump.status()
    assert after.iob == st.iob
    with pytest.raises(PumpRefused) as exc:
        pump.bolus(10000)
    assert exc.value.code == S.E_OVER_LIMIT and exc.value.detail == S.SET_MAX_BOLUS_1H


@pytest.mark.req("THR-10", "THR-6", "HIS-3", "THR-11", "HW-3")
def test_a_day_set_back_merges_its_total_and_keeps_the_24h_limit(pump, sim):
    """Scenario 4: midnight into a day that already had a total overwrote it (20 U gone)
    and restarted the daily limit."""
    sim.empty_day_window()
    pump.set_setting("max_tdd", 10000)
    pump.bolus(8000)
    sim.advance(minutes=10)
    st = pump.status()
    day = st.utc // 86400
    first = pump.get_totals(day)
    assert first.bolus == 8000
    pump.set_time((day - 1) * 86400 + 23 * 3600 + 59 * 60, st.offset)  # the day before
    sim.advance(minutes=2)  # midnight into `day` again
    again = pump.get_totals(day)
    assert again.bolus == first.bolus and again.basal >= first.basal
    with pytest.raises(PumpRefused) as exc:  # 8 U and basal in the last 24 h: 2 U more is over
        pump.bolus(2000)
    assert exc.value.code == S.E_OVER_LIMIT and exc.value.detail == S.SET_MAX_TDD


@pytest.mark.req("ALM-7", "ALM-1", "HW-3")
@pytest.mark.parametrize("kind", [S.MOTOR_FAULT_PIN, S.MOTOR_STALL])
def test_a_motor_fault_mid_therapy_alarms_and_counts_nothing(pump, sim, kind):
    """Issue 11: a driver that faults after boot gave an hour of 'delivered' insulin."""
    st = pump.status()
    sim.fault(S.FAULT_MOTOR, kind)
    sim.advance(minutes=30)
    after = pump.status()
    assert kit.active(after, S.A_MOTOR_FAULT)
    assert after.stop == S.STOP_SELFTEST
    assert after.reservoir == st.reservoir  # the plunger did not move
    assert after.basal_today == st.basal_today
    sim.fault(S.FAULT_MOTOR, S.MOTOR_OK)
    sim.power_cut()  # repaired: the power-on self-test passes
    assert pump.status().stop == S.STOP_USER


@pytest.fixture
def own_pump(request, tmp_path):
    """(client, sim) of an emulator of the test's own: CGM readings and their timing now
    survive reboots (HIS-3), so a test that feeds them must not share its pump."""
    if request.config.getoption("--port"):
        pytest.skip("needs an emulator of its own: not with --port")
    from host_tools.launch import launch

    log = open(tmp_path / "emulator.log", "wb")
    emu = launch(tmp_path / "state", lockstep=True, seed=7, console=False, stderr=log)
    pump = C.connect(emu.port, key=C.load_key(emu.key_path), timeout=2.0, retries=3)
    sim = kit.Sim(pump)
    try:
        PumpStrategy(pump, sim).to_ready()
        yield pump, sim
    finally:
        pump.close()
        emu.close()
        log.close()


def reading(sim, mg_dl: int, minutes: int = 5):
    """One CGM reading now (the sensor link's next poll), then `minutes` of therapy."""
    sim.fault(S.FAULT_GLUCOSE, mg_dl)
    sim.advance(minutes=minutes)


@pytest.mark.req("SNS-3", "SNS-1", "SNS-2", "HIS-3", "HW-3")
def test_suspend_before_low_and_the_readings_survive_a_reboot(own_pump):
    """Scenario 5: glucose 62 with suspend-before-low active, the sensor goes silent,
    reboot: basal resumed at once and no signal-loss alarm came within 2 h. Now basal
    stays suspended, the readings are kept, signal loss is timed from the last reading."""
    pump, sim = own_pump
    pump.set_setting("suspend_before_low", 1)
    sim.fault(S.FAULT_SENSOR_LOSS, 0)
    for mg in (90, 75):
        reading(sim, mg)
    reading(sim, 62, minutes=1)
    st = pump.status()
    assert st.cgm & S.CGMF_SBL and st.basal_rate == 0 and st.glucose == 62
    held = pump.get_cgm(0)
    sim.fault(S.FAULT_SENSOR_LOSS, 1)
    sim.power_cut()
    st = pump.status()
    assert st.cgm & S.CGMF_SBL and st.basal_rate == 0 and st.glucose == 62
    assert pump.get_cgm(0) == held
    sim.advance(minutes=18)  # 19 min after the last reading
    assert not kit.active(pump.status(), S.A_SIGNAL_LOSS)
    sim.advance(minutes=2)
    assert kit.active(pump.status(), S.A_SIGNAL_LOSS)


@pytest.mark.req("SNS-3", "HW-3")
def test_suspend_before_low_does_not_chatter_on_a_flat_trace(own_pump):
    """Scenario 6: a flat 82-86 mg/dL trace (low limit 70) gave 7 suspend/resume cycles in
    3 h. With hysteresis: the first suspension lasts until the 2-h limit."""
    pump, sim = own_pump
    pump.set_setting("suspend_before_low", 1)
    seq = pump.status().history_next
    trace = [82, 86, 84, 83, 85, 86, 82, 84]
    for i in range(36):
        reading(sim, trace[i % len(trace)])
    sbl = kit.records(kit.history(pump, seq), S.H_SBL)
    assert [r.arg for r in sbl] == [1, 0, 1]
    assert sbl[1].v1 == S.SBL_MAX


@pytest.mark.req("HIS-2", "THR-3", "LNK-4", "HW-3")
def test_a_cancel_whose_save_failed_says_so_and_owed_pulses_never_move(pump, sim):
    """Scenario 7: after failed state saves the cancel said OK and the owed pulses moved
    after it, counted with no record."""
    pump.bolus(3000)
    sim.advance(seconds=20)
    sim.fault(S.FAULT_STORAGE_FAIL, 1)
    sim.advance(seconds=2)  # pulses due, not moved: owed
    before = pump.status()
    with pytest.raises(PumpRefused) as exc:
        pump.cancel_bolus()
    assert exc.value.code == S.E_STORAGE
    sim.fault(S.FAULT_STORAGE_FAIL, 0)
    sim.advance(minutes=2)
    after = pump.status()
    assert after.bolus_id == 0
    assert after.bolus_today == before.bolus_today
    assert before.reservoir - after.reservoir == after.basal_today - before.basal_today
