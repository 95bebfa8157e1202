"""The time model and the safety state across reboots, outages and clock changes (issue 9).

Each numbered scenario of issue 9 has a test here (unit level, simulated parts); the same
scenarios run over the protocol on the emulator in hil_tests/test_time_model.py.
"""

import pytest

from firmware.layout import S_BOOTS, S_LAST_DELIVERY_S, S_MONO_S, S_TEMP_LEFT, S_TIME_SET
from firmware.pump import CHECKPOINT_S, Pump, iob_permille
from protocol import spec as S
from tests.pumpkit import MONDAY_2026, events, history, make_pump, reboot, records, run

MIN = 60
HOUR = 3600


def power_cycle(rig, outage_s=0):
    """The supply dies now and comes back after `outage_s`: a fresh pump boots."""
    rig.outage(outage_s)
    return reboot(rig)


def times_never_go_backwards(pump):
    """History times only go back at a record that says why (a time change)."""
    last = 0
    for r in history(pump):
        if r[2] == S.H_TIME_CHANGE:
            last = 0
        assert r[1] >= last, r
        last = r[1]


# ------------------------------------------------------------- 1. the wall clock after a cut
@pytest.mark.req("THR-13", "HIS-3", "THR-11")
@pytest.mark.parametrize("outage_s", [0, 10 * MIN, 3 * HOUR + 7])
def test_the_rtc_keeps_the_time_through_suspension_cuts_and_outages(outage_s):
    """Scenario 1: 3 h suspended (nothing else saved), then a power cut and an outage: the
    clock is exact, and so is every timer that runs on the monotonic clock."""
    rig, pump = make_pump()
    assert pump.suspend() == S.OK
    run(rig, pump, 3 * HOUR, step_ms=60000)
    utc = pump.utc_seconds()
    mono = pump.state[S_MONO_S]
    pump = power_cycle(rig, outage_s)
    assert pump.utc_seconds() == utc + outage_s
    assert pump.state[S_MONO_S] == mono + outage_s
    st = pump.status()
    assert st["day"] * 86400 + st["local_ms"] // 1000 == utc + outage_s
    assert pump.state[S_TIME_SET] == 1
    assert not pump.alarms.active[S.A_TIME_UNSET]
    assert records(pump, S.H_TIME_LOST) == []
    times_never_go_backwards(pump)


@pytest.mark.req("THR-13", "HIS-3")
@pytest.mark.parametrize("why", ["no_rtc", "backup_removed"])
def test_without_a_trustworthy_clock_the_pump_says_the_time_is_unset(why):
    """Scenario 1 without an RTC (or with its backup cell removed): status says unset, a
    medium alarm asks for the time, history records the loss, and history times never go
    back; the basal schedule is not followed on the wrong clock (flat 24-h mean)."""
    rig, pump = make_pump(starts=(0, 12, 36), rates=(400, 1600, 400))  # mean 1000 mU/h
    if why == "no_rtc":
        rig.rtc = None
        pump = reboot(rig)  # a board without RTC: the time is lost at this boot already
    else:
        rig.rtc.backup = False
    assert pump.set_time(MONDAY_2026 + 8 * HOUR, 0) == S.OK
    seq = pump.history.next_seq
    run(rig, pump, HOUR)  # 09:00: the 1.6 U/h segment
    assert pump.basal_rate() == 1600
    last = pump.utc_seconds()
    pump = power_cycle(rig, 2 * HOUR)
    assert pump.status()["stop"] == S.STOP_NONE
    assert pump.state[S_TIME_SET] == 0  # S_TIME_SET
    assert pump.alarms.active[S.A_TIME_UNSET]
    assert S.ALARMS[S.A_TIME_UNSET][1] == S.PRIO_MEDIUM
    lost = records(pump, S.H_TIME_LOST, seq)
    assert len(lost) == 1 and lost[0][4] >= last - CHECKPOINT_S and lost[0][5] == -1
    assert pump.basal_rate() == 1000  # the flat mean, not the 09:00 segment
    times_never_go_backwards(pump)
    # a second reboot before the time is set says it again, and records it once only
    pump = power_cycle(rig, 0)
    assert pump.alarms.active[S.A_TIME_UNSET] and len(records(pump, S.H_TIME_LOST, seq)) == 1
    # setting the time ends it; the schedule runs again
    assert pump.set_time(MONDAY_2026 + 11 * HOUR + 5, 0) == S.OK
    assert not pump.alarms.active[S.A_TIME_UNSET]
    assert pump.state[S_TIME_SET] == 1 and pump.basal_rate() == 1600
    assert records(pump, S.H_TIME_CHANGE)[-1][3] == 1  # arg 1: set after a loss
    times_never_go_backwards(pump)


@pytest.mark.req("THR-13", "THR-2", "HIS-3")
def test_a_temp_basal_ends_when_the_time_is_lost_and_is_never_extended():
    """Issue 19: a 0 % temp basal restarted with its full duration after a reboot. With an
    RTC it loses the outage; without one it ends (its progress is unknown)."""
    rig, pump = make_pump()
    assert pump.set_temp_basal(S.TEMP_PERCENT, 0, 120) == S.OK
    run(rig, pump, 50 * MIN)
    pump = power_cycle(rig, 20 * MIN)
    assert pump.state[S_TEMP_LEFT] == 50 * MIN * 1000  # 120 - 50 - 20 min
    run(rig, pump, 50 * MIN - 1)
    assert pump.status()["temp_kind"] == S.TEMP_PERCENT
    run(rig, pump, 1)
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    # without trustworthy time
    assert pump.set_temp_basal(S.TEMP_PERCENT, 0, 120) == S.OK
    run(rig, pump, 10 * MIN)
    rig.rtc.backup = False
    pump = power_cycle(rig, 5 * MIN)
    assert pump.status()["temp_kind"] == S.TEMP_NONE
    assert records(pump, S.H_TEMP_END)[-1][3] == S.TEMP_END_TIME_LOST


# --------------------------------------------------------------------- 2. no delivery (THR-5)
@pytest.mark.req("THR-5", "HIS-3", "THR-13")
def test_the_no_delivery_timer_survives_reboots_and_counts_the_outage():
    """Scenario 2: suspended 3 h 59 min, reboot, and the alarm comes 4 h after the last
    insulin (within one 1-s tick), not 4 h after the reboot; an outage counts too."""
    rig, pump = make_pump()
    run(rig, pump, 10 * MIN)
    assert pump.suspend() == S.OK
    last = pump.state[S_LAST_DELIVERY_S]
    since = pump.state[S_MONO_S] - last
    run(rig, pump, 3 * HOUR + 59 * MIN - since - 30 * MIN, step_ms=60000)
    pump = power_cycle(rig, 30 * MIN)  # the outage is 30 min of it
    assert not pump.alarms.active[S.A_NO_DELIVERY]
    left = 4 * HOUR - (pump.state[S_MONO_S] - last)
    assert left == MIN
    run(rig, pump, left - 1)
    assert not pump.alarms.active[S.A_NO_DELIVERY]
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_NO_DELIVERY]


@pytest.mark.req("THR-5", "THR-13", "HIS-3")
def test_without_a_clock_the_no_delivery_alarm_errs_early_and_learns_the_outage():
    """An unknown outage: the pump assumes the longest unsaved time (CHECKPOINT_S) at boot,
    and once the time is set again it adds the outage the new time reveals."""
    rig, pump = make_pump()
    assert pump.suspend() == S.OK
    run(rig, pump, HOUR, step_ms=60000)
    gap0 = pump.state[S_MONO_S] - pump.state[S_LAST_DELIVERY_S]
    rig.rtc.backup = False
    utc = pump.utc_seconds()
    pump = power_cycle(rig, 2 * HOUR)
    assert pump.state[S_MONO_S] - pump.state[S_LAST_DELIVERY_S] >= gap0 + CHECKPOINT_S - 60
    before = pump.state[S_LAST_DELIVERY_S]
    assert pump.set_time(utc + 2 * HOUR, 0) == S.OK
    assert before - pump.state[S_LAST_DELIVERY_S] >= 2 * HOUR - CHECKPOINT_S
    run(rig, pump, HOUR - CHECKPOINT_S, step_ms=60000)
    assert pump.alarms.active[S.A_NO_DELIVERY]  # 1 h + 2 h + 1 h: at most 4 h


# ------------------------------------------------------------- 3. IOB and the 60-min window
@pytest.mark.req("THR-9", "THR-6", "HIS-3", "THR-11")
@pytest.mark.parametrize("shift_s", [-HOUR, HOUR, -26 * HOUR, 0])
def test_iob_and_the_hour_limit_survive_a_clock_change_and_a_reboot(shift_s):
    """Scenario 3: set the clock back 1 h and reboot: IOB read 0 and a second 10-U bolus
    was accepted with max 10 U/h; forward, IOB aged early. Now both run on the monotonic
    clock: neither moves."""
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 10000) == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK
    run(rig, pump, 10 * MIN)
    assert pump.status()["bolus_id"] == 0  # delivered
    iob = pump.iob()
    assert 9000 < iob < 10000
    assert pump.set_time(pump.utc_seconds() + shift_s, 0) == S.OK
    pump = power_cycle(rig, 0)
    assert pump.iob() == iob
    assert pump.bolus_last_hour() == 10000
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.E_OVER_LIMIT
    assert pump.detail == S.SET_MAX_BOLUS_1H


@pytest.mark.req("THR-9", "HIS-3")
def test_iob_ages_through_an_outage_known_to_the_rtc_and_not_through_an_unknown_one():
    rig, pump = make_pump()
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    run(rig, pump, 5 * MIN)
    iob = pump.iob()
    pump = power_cycle(rig, 2 * HOUR)
    aged = pump.iob()
    # the same dose 2 h 5 min old by the curve, within one 5-min bucket
    assert 5000 * iob_permille(120, 300) // 1000 <= aged <= 5000 * iob_permille(115, 300) // 1000
    rig.rtc.backup = False
    pump = power_cycle(rig, 2 * HOUR)
    assert pump.iob() == aged  # unknown outage: IOB errs high (no ageing)
    assert aged < iob


# ---------------------------------------------------------- 4. day totals and the 24-h limit
@pytest.mark.req("THR-10", "HIS-3", "THR-11")
def test_midnight_into_a_day_that_has_a_total_merges_it():
    """Scenario 4: the clock set back a day; midnight rolls into the day that already has
    a total: it continues from it, never overwrites it."""
    rig, pump = make_pump(rates=(1000,))
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    run(rig, pump, 12 * HOUR, step_ms=60000)
    monday = pump.day_totals(2511)
    assert monday == (12000, 2000, 600)
    assert pump.set_time(MONDAY_2026 - HOUR, 0) == S.OK  # Sunday 23:00
    run(rig, pump, 2 * HOUR, step_ms=60000)  # into Monday again, 01:00
    got = pump.day_totals(2511)
    assert got == (monday[0] + 1000, monday[1], monday[2])
    assert pump.day_totals(2510)[:2] == (1000, 0)


@pytest.mark.req("THR-6", "HIS-3", "THR-11")
def test_no_clock_change_resets_the_24h_limit():
    """Scenario 4: twice the maximum daily dose on one calendar day was possible (a
    westward time-zone change, or just midnight). The rolling window forbids it."""
    rig, pump = make_pump(rates=(0,))
    assert pump.settings.set(S.SET_MAX_TDD, 20000) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS_1H, 20000) == S.OK
    for _ in range(2):
        assert pump.bolus(S.BOLUS_NORMAL, 10000, 0, 0) == S.OK
        run(rig, pump, 10 * MIN)
    run(rig, pump, HOUR)  # out of the 60-min window, inside the 24-h one
    assert pump.dose_last_day() == 20000
    for offset in (-12 * 60, 14 * 60, 0):
        assert pump.set_time(pump.utc_seconds() - 86400, offset) == S.OK
        assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_OVER_LIMIT
        assert pump.detail == S.SET_MAX_TDD
    pump = power_cycle(rig, 0)
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.E_OVER_LIMIT
    run(rig, pump, 24 * HOUR, step_ms=60000)
    assert pump.bolus(S.BOLUS_NORMAL, 50, 0, 0) == S.OK


# ----------------------------------------------------------------- 7. owed pulses at a cancel
@pytest.mark.req("HIS-2", "THR-3", "LNK-4")
def test_owed_pulses_never_follow_a_cancel_and_a_failed_save_is_reported():
    """Scenario 7: pulses owed after a failed state save moved after the cancel, counted
    in the day's bolus total with no record; and the cancel said OK though its save
    failed."""
    rig, pump = make_pump(rates=(0,))
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    bolus_id = pump.detail
    run(rig, pump, 10)
    rig.storage.fail = True
    run(rig, pump, 2)  # the moves are owed, not made
    assert pump.owed_now > 0
    pos = rig.motor.pos
    done = pump.status()["bolus_delivered"]
    assert pump.cancel_bolus() == S.E_STORAGE and pump.detail == bolus_id
    rig.storage.fail = False
    run(rig, pump, 60)
    assert rig.motor.pos == pos
    assert pump.status()["bolus_today"] == done
    assert (S.EV_BOLUS_END, bolus_id, done, S.BOLUS_CANCELLED) in events(pump)


@pytest.mark.req("THR-5", "HIS-2")
def test_a_suspend_whose_save_failed_says_so_and_stops_anyway():
    rig, pump = make_pump()
    rig.storage.fail = True
    pos = rig.motor.pos
    assert pump.suspend() == S.E_STORAGE
    run(rig, pump, HOUR)
    assert rig.motor.pos == pos


# ------------------------------------------------------------------------ layout upgrades
@pytest.mark.req("HIS-2", "HIS-3")
def test_a_state_saved_by_the_layout_before_the_time_model_still_loads():
    from firmware.layout import STATE_LEN_1
    from firmware.store import Slots

    rig, pump = make_pump()
    pos = rig.motor.pos
    old = pump.state[:STATE_LEN_1]
    # write both copies with the older, shorter layout
    from array import array

    short = array("i", old)
    slots = Slots(rig.storage, 2, 3, short)
    assert slots.save() and slots.save()
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    same = [i for i in range(1, STATE_LEN_1) if i != S_BOOTS]
    assert [pump.state[i] for i in same] == [old[i] for i in same]
    assert pump.state[S_BOOTS] == old[S_BOOTS] + 1
    assert pump.state[S_MONO_S] == 0 and rig.motor.pos == pos


# ------------------------------------------------------------------ motor faults (ALM-7)
@pytest.mark.req("ALM-7", "ALM-1", "THR-5")
@pytest.mark.parametrize("fault", ["fault_pin", "stall"])
def test_a_motor_that_fails_mid_therapy_alarms_stops_and_counts_nothing(fault):
    """Issue 11: a driver that faults after boot gave an hour of 'delivered' insulin with
    no alarm, and reset the no-delivery timer. Now the first move that does not happen
    raises the motor fault (high) and stops; nothing is counted."""
    rig, pump = make_pump(rates=(2000,))
    run(rig, pump, 10 * MIN)
    st = pump.status()
    last = pump.state[S_LAST_DELIVERY_S]
    if fault == "fault_pin":
        rig.motor.faulted = True
    else:
        rig.motor.stall = True
    pos = rig.motor.pos
    run(rig, pump, 2 * MIN)  # a pulse every 90 s is due
    assert pump.alarms.active[S.A_MOTOR_FAULT]
    assert S.ALARMS[S.A_MOTOR_FAULT][1] == S.PRIO_HIGH
    assert pump.status()["stop"] == S.STOP_SELFTEST
    assert pump.selftest_bits & S.ST_MOTOR
    assert rig.motor.pos == pos
    assert pump.status()["basal_today"] == st["basal_today"]
    assert pump.state[S_LAST_DELIVERY_S] == last
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.E_SAFE_STATE
    # repaired, rebooted: the power-on self-test passes, the pump waits suspended
    rig.motor.faulted = rig.motor.stall = False
    pump = power_cycle(rig)
    assert pump.status()["stop"] == S.STOP_USER and pump.selftest_bits == 0


@pytest.mark.req("ALM-7")
def test_a_fault_signal_while_idle_and_a_failing_periodic_self_test_are_noticed():
    rig, pump = make_pump(rates=(0,))
    rig.motor.faulted = True  # signalled with no move pending
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_MOTOR_FAULT]
    rig.motor.faulted = False
    pump = power_cycle(rig)
    assert pump.resume() == S.OK
    run(rig, pump, 10)
    rig.motor.ok = False  # the hourly self-test fails (no fault signal)
    run(rig, pump, HOUR)
    assert pump.alarms.active[S.A_MOTOR_FAULT]
    assert pump.status()["stop"] == S.STOP_SELFTEST


@pytest.mark.req("ALM-7", "THR-12")
def test_a_prime_that_does_not_move_is_refused_as_a_motor_fault():
    rig, pump = make_pump(resume=False)
    rig.motor.stall = True
    assert pump.prime(S.PRIME_TUBING, 500) == S.E_SAFE_STATE
    assert pump.alarms.active[S.A_MOTOR_FAULT]
    assert records(pump, S.H_PRIME)[-1][4] == 0  # 0 mU primed


# --------------------------------------------------------------- boot before the watchdog
@pytest.mark.req("ALM-5", "HIS-1")
def test_the_boot_scan_of_a_full_history_feeds_the_watchdog():
    """Issue 11: boot read all 6144 records before the loop's first watchdog feed."""
    rig, pump = make_pump()
    while pump.history.next_seq <= 6200:  # a full, wrapped history
        pump._log(S.H_SETTING, 0, 0, 0, 0)
    reads = []
    storage_read = rig.storage.read

    def read(region, offset, buf):
        reads.append(rig.watchdog.feeds)
        storage_read(region, offset, buf)

    rig.storage.read = read
    reboot(rig)
    # between two feeds, at most SCAN_FEED reads (plus the boot's other few reads)
    from collections import Counter

    from firmware.store import SCAN_FEED

    assert max(Counter(reads).values()) <= SCAN_FEED + 16


# ---------------------------------------- timers and accumulators across reboots (HIS-3)
@pytest.mark.req("ALM-3", "HIS-3")
def test_the_occlusion_accumulator_survives_a_reboot():
    """Insulin pushed against a blocked line before a reboot still counts: the alarm comes
    after 2.5 U in all, not 2.5 U after the reboot. (The line reads blocked from 150 kPa:
    the first 6 pulses raise the pressure, the other 24 of 1.5 U count.)"""
    rig, pump = make_pump(rates=(0,))
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 1500, 0, 0) == S.OK
    run(rig, pump, 70)  # 1.5 U at 1.5 U/min, all blocked
    assert not pump.alarms.active[S.A_OCCLUSION]
    pump = power_cycle(rig)
    assert pump.resume() == S.E_NOT_SUSPENDED  # delivering (the bolus ended interrupted)
    assert pump.bolus(S.BOLUS_NORMAL, 1500, 0, 0) == S.OK
    run(rig, pump, 70)  # 1.2 + 1.5 = 2.7 U: over 2.5 U in all (1.5 U alone is not)
    assert pump.alarms.active[S.A_OCCLUSION]
    assert pump.status()["stop"] == S.STOP_OCCLUSION


@pytest.mark.req("ALM-4", "HIS-3")
def test_auto_off_counts_across_a_reboot_and_the_outage():
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_AUTO_OFF, 5) == S.OK
    run(rig, pump, 3 * HOUR, step_ms=60000)
    pump = power_cycle(rig, HOUR)
    run(rig, pump, HOUR - 60, step_ms=10000)
    assert not pump.alarms.active[S.A_AUTO_OFF]
    run(rig, pump, 60, step_ms=1000)
    assert pump.alarms.active[S.A_AUTO_OFF]


@pytest.mark.req("THR-5", "HIS-3")
def test_a_reboot_never_delays_the_suspend_reminder():
    rig, pump = make_pump()
    assert pump.settings.set(S.SET_SUSPEND_REMINDER, 30) == S.OK
    assert pump.suspend() == S.OK
    run(rig, pump, 20 * MIN, step_ms=10000)
    pump = power_cycle(rig, 5 * MIN)
    run(rig, pump, 5 * MIN - 1)
    assert not pump.alarms.active[S.A_SUSPEND_REMINDER]
    run(rig, pump, 1)
    assert pump.alarms.active[S.A_SUSPEND_REMINDER]


@pytest.mark.req("THR-13", "THR-9", "HIS-3")
def test_an_rtc_that_could_not_be_set_is_not_trusted_at_the_next_boot():
    """The clock set back 2 h while the RTC's bus fails: the RTC keeps the later time, and
    the next boot must not take the difference for an outage (IOB would age 2 h)."""
    rig, pump = make_pump()
    assert pump.bolus(S.BOLUS_NORMAL, 4000, 0, 0) == S.OK
    run(rig, pump, 5 * MIN)
    iob = pump.iob()
    rig.rtc.broken = True
    assert pump.set_time(pump.utc_seconds() - 2 * HOUR, 0) == S.OK
    pump = power_cycle(rig)
    assert pump.iob() == iob
    assert pump.alarms.active[S.A_TIME_UNSET]
    rig.rtc.broken = False
    assert pump.set_time(pump.utc_seconds(), 0) == S.OK
    pump = power_cycle(rig, 60)
    assert not pump.alarms.active[S.A_TIME_UNSET]
