"""HIS-1: the append-only history. Records carry a sequence number (consecutive), a time and a
CRC; they cover every event the requirement lists; the ring wraps with reads by range intact;
it holds well over 90 days of typical use."""

import pytest

from boards.fakes import Rig
from firmware.pump import Pump
from firmware.store import REC_SIZE
from protocol import spec as S
from tests.pumpkit import MONDAY_2026, history, make_pump, reboot, records, run, run_until

REC = bytearray(REC_SIZE)


def read(pump, seq):
    """The decoded record `seq`, or None if it is not stored or fails its CRC."""
    buf = bytearray(REC_SIZE)
    return pump.history.decode(buf) if pump.history.read(seq, buf) else None


@pytest.mark.req("HIS-1", "THR-1", "THR-2", "THR-3", "THR-4", "THR-5", "THR-10", "THR-11",
                 "THR-12", "ALM-6", "BAT-1")
def test_history_covers_every_event_with_exact_values():
    rig = Rig(50)
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    t = MONDAY_2026 + 22 * 3600  # 23:00 local at UTC+1
    assert pump.settings.set_profile(0, b"day", [0, 12], [800, 1200]) == S.OK
    assert pump.settings.set_schedule([0] * 7) == S.OK
    assert pump.set_time(t, 60) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS, 8000) == S.OK
    assert pump.settings.set(S.SET_MAX_BOLUS, 99999) == S.E_OUT_OF_RANGE  # not logged
    assert pump.rewind() == S.OK
    assert pump.fill(200000) == S.OK
    assert pump.prime(S.PRIME_TUBING, 500) == S.OK
    assert pump.prime(S.PRIME_CANNULA, 100) == S.OK
    assert pump.resume() == S.OK
    assert pump.set_temp_basal(S.TEMP_PERCENT, 50, 30) == S.OK
    run(rig, pump, 1800)  # expires
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 500, 60) == S.OK
    assert pump.cancel_temp_basal() == S.OK
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK
    run(rig, pump, 60)  # 40 s at 1.5 U/min: completed
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 1000, 30) == S.OK
    run(rig, pump, 300)  # 20 pulses over 30 min: one every 90 s, 3 by now
    assert pump.cancel_bolus() == S.OK
    assert pump.bolus(S.BOLUS_DUAL, 500, 1000, 60) == S.OK
    run(rig, pump, 10)  # 5 immediate pulses
    assert pump.suspend() == S.OK
    assert pump.resume() == S.OK
    rig.battery.level = 15
    run(rig, pump, 1)
    assert pump.ack_alarm(S.A_BATTERY_LOW) == S.OK
    rig.battery.level = 100
    run(rig, pump, 1)
    run(rig, pump, 3600, step_ms=10000)  # past local midnight
    rig.reset_cause = S.RESET_WATCHDOG
    pump = reboot(rig)

    recs = history(pump)
    assert [r[0] for r in recs] == list(range(1, len(recs) + 1))
    assert (pump.history.first_seq, pump.history.next_seq) == (1, len(recs) + 1)
    got = [(r[1] - t if r[1] else None,) + r[2:] for r in recs]
    local = t + 3600
    assert got == [
        (None, S.H_BOOT, S.RESET_POWER_ON, 0, 1, 0),
        (None, S.H_PROFILE, 0, 2, 1200, 0),
        (None, S.H_SCHEDULE, 0, 0, 0, 0),
        (0, S.H_TIME_CHANGE, 0, 0, local, 60),
        (0, S.H_DAY_TOTAL, 0, 0, 0, 0),  # the unset clock's day is closed, after the change
        (0, S.H_SETTING, S.SET_MAX_BOLUS, 10000, 8000, 0),
        (0, S.H_REWIND, 0, 0, 0, 0),
        (0, S.H_FILL, 0, 200000, 0, 0),
        (0, S.H_PRIME, S.PRIME_TUBING, 500, 0, 0),
        (0, S.H_PRIME, S.PRIME_CANNULA, 100, 0, 0),
        (0, S.H_RESUME, S.STOP_USER, 0, 0, 0),
        (0, S.H_TEMP_START, S.TEMP_PERCENT, 50, 30, 0),
        (1800, S.H_TEMP_END, S.TEMP_END_EXPIRED, 0, 0, 0),
        (1800, S.H_TEMP_START, S.TEMP_ABSOLUTE, 500, 60, 0),
        (1800, S.H_TEMP_END, S.TEMP_END_CANCELLED, 0, 0, 0),
        (1800, S.H_BOLUS_START, S.BOLUS_NORMAL, 1, 1000, 0),
        (1840, S.H_BOLUS_END, S.BOLUS_COMPLETED, 1, 1000, 1000),
        (1860, S.H_BOLUS_START, S.BOLUS_EXTENDED, 2, 0, 1000),
        (2160, S.H_BOLUS_END, S.BOLUS_CANCELLED, 2, 150, 1000),
        (2160, S.H_BOLUS_START, S.BOLUS_DUAL, 3, 500, 1000),
        (2170, S.H_BOLUS_END, S.BOLUS_INTERRUPTED, 3, 250, 1500),
        (2170, S.H_SUSPEND, S.STOP_USER, 0, 0, 0),
        (2170, S.H_RESUME, S.STOP_USER, 0, 0, 0),
        (2170, S.H_ALARM, S.ALARM_RAISED, S.A_BATTERY_LOW, 15, 0),
        (2171, S.H_ALARM, S.ALARM_ACKED, S.A_BATTERY_LOW, 0, 0),
        (2171, S.H_BATTERY_CHANGE, 0, 15, 100, 0),
        (2171, S.H_ALARM, S.ALARM_CLEARED, S.A_BATTERY_LOW, 100, 0),
        (3600, S.H_DAY_TOTAL, 0, 2511, 900, 1400),  # 23:00-24:00: 0.3 U temp + 0.6 U
        (recs[-1][1] - t, S.H_BOOT, S.RESET_WATCHDOG, 0, 2, 0),
    ]
    assert recs[-1][1] - t >= 3600
    assert pump.day_totals(2511) == (900, 1400, 600)


@pytest.mark.req("HIS-1")
def test_crc_detects_any_corrupted_byte():
    rig, pump = make_pump()
    recs = history(pump)
    region = rig.storage.regions[4]
    cap = pump.history.capacity
    for seq in (1, 4, recs[-1][0]):
        base = ((seq - 1) % cap) * REC_SIZE
        for i in range(REC_SIZE):
            for mask in (0x01, 0x80, 0xFF):
                region[base + i] ^= mask
                assert read(pump, seq) is None, (seq, i, mask)
                region[base + i] ^= mask
        assert read(pump, seq) == recs[seq - 1]
    # a corrupted old record is skipped; the others stay readable after a reboot
    region[((3 - 1) % cap) * REC_SIZE + 9] ^= 0x10
    pump = reboot(rig)
    assert read(pump, 3) is None
    assert [read(pump, s) for s in range(1, len(recs) + 1) if s != 3] == \
        [r for r in recs if r[0] != 3]
    assert pump.history.next_seq == len(recs) + 2  # the boot record was appended


@pytest.mark.req("HIS-1")
def test_read_by_sequence_range():
    rig, pump = make_pump()
    for _ in range(5):
        assert pump.bolus(S.BOLUS_NORMAL, 100, 0, 0) == S.OK
        run(rig, pump, 10)
    recs = history(pump)
    n = pump.history.next_seq
    assert read(pump, 0) is None
    assert read(pump, n) is None
    assert read(pump, n + 100) is None
    assert [read(pump, s) for s in range(4, 9)] == recs[3:8]
    ends = records(pump, S.H_BOLUS_END)
    assert [(r[3], r[4], r[5], r[6]) for r in ends] == [
        (S.BOLUS_COMPLETED, i, 100, 100) for i in range(1, 6)]


def fill_ring(pump, extra):
    """Append capacity + extra records straight to the history (the pump's own writer)."""
    h = pump.history
    t = pump.utc_seconds()
    for i in range(h.capacity + extra):
        assert h.append(t + i, S.H_ALARM, S.ALARM_RAISED, S.A_SET_CHANGE, i, 0) == h.next_seq - 1


@pytest.mark.req("HIS-1")
def test_ring_wraps_and_reads_stay_valid():
    rig, pump = make_pump()
    h = pump.history
    cap = h.capacity
    assert cap == 6144
    start = h.next_seq
    fill_ring(pump, 37)
    assert h.next_seq == start + cap + 37
    assert h.first_seq == h.next_seq - cap
    assert read(pump, h.first_seq - 1) is None  # overwritten
    assert read(pump, 1) is None
    recs = history(pump)  # every stored record readable, in order
    assert len(recs) == cap
    assert [r[0] for r in recs] == list(range(h.first_seq, h.next_seq))
    first = recs[0]
    assert first[2] == S.H_ALARM and first[5] == first[0] - start  # value = append index
    # one more append moves the oldest on by exactly one
    f = h.first_seq
    h.append(0, S.H_REWIND, 0, 0, 0, 0)
    assert h.first_seq == f + 1
    # a reboot finds the same window (moved on by its own boot record)
    before = (h.first_seq, h.next_seq)
    recs = history(pump)
    pump = reboot(rig)
    assert (pump.history.first_seq, pump.history.next_seq) == (before[0] + 1, before[1] + 1)
    after = history(pump)
    assert after[:-1] == recs[1:]
    assert after[-1][0] == before[1] and after[-1][2] == S.H_BOOT
    # the pump works on with a wrapped history: a bolus is started, ended and found
    assert pump.bolus(S.BOLUS_NORMAL, 500, 0, 0) == S.OK
    bolus_id = pump.detail
    pump = reboot(rig)  # mid-bolus: recorded as interrupted, once
    ends = records(pump, S.H_BOLUS_END, before[1])
    assert [(r[3], r[4]) for r in ends] == [(S.BOLUS_INTERRUPTED, bolus_id)]
    run(rig, pump, 60)
    assert pump.bolus_progress()[0] == 0


@pytest.mark.req("HIS-1")
def test_ring_wrap_over_several_laps_keeps_boundaries():
    _, pump = make_pump()
    h = pump.history
    for lap in range(3):
        fill_ring(pump, 1000 * lap)
        assert h.next_seq - h.first_seq == h.capacity
        assert read(pump, h.first_seq) is not None
        assert read(pump, h.first_seq - 1) is None
        assert read(pump, h.next_seq - 1)[0] == h.next_seq - 1


@pytest.mark.req("HIS-1", "THR-10")
def test_history_holds_90_days_of_typical_use():
    """A typical day: 6 boluses, a temp basal, a low-battery alarm acknowledged and cleared,
    the day total; every third day a set change (suspend, rewind, fill, primes, resume) and
    its reminder. Three such days at most fill capacity / 90 records a day."""
    rig, pump = make_pump(50, starts=(0, 12, 44), rates=(600, 1100, 700))
    start = pump.history.next_seq
    for day in range(3):
        for meal in range(6):
            assert pump.bolus(S.BOLUS_NORMAL, 3000 + 250 * meal, 0, 0) == S.OK
            run_until(rig, pump, lambda: pump.bolus_progress()[0] == 0, 600)
            run(rig, pump, 2 * 3600, step_ms=60000)
        assert pump.set_temp_basal(S.TEMP_PERCENT, 70, 120) == S.OK
        rig.battery.level = 18
        run(rig, pump, 60)
        assert pump.ack_alarm(S.A_BATTERY_LOW) == S.OK
        rig.battery.level = 100
        run(rig, pump, 60)
        if day == 2:
            for code in (pump.suspend(), pump.rewind(), pump.fill(300000),
                         pump.prime(S.PRIME_TUBING, 1000), pump.prime(S.PRIME_CANNULA, 300),
                         pump.resume()):
                assert code == S.OK
        day_now = pump.status()["day"]
        assert run_until(rig, pump, lambda d=day_now: pump.status()["day"] == d + 1,
                         24 * 3600, step_ms=60000) is not None
    per_day = (pump.history.next_seq - start) / 3
    assert pump.history.capacity >= 90 * per_day, per_day
    assert len(records(pump, S.H_DAY_TOTAL, start)) == 3
    assert pump.history.first_seq == 1  # nothing lost yet
