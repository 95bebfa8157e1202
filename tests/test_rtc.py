"""The DS3231 real-time clock driver (boards/drivers.py) and firmware/dates.py (THR-13).

- Register encoding against CPython's datetime as the oracle: every day from 2020 to 2099,
  leap days, the century bit (a chip that counted past 2099), 12-hour mode, corrupt
  registers.
- The driver on a fake I2C bus with the DS3231's register behaviour (tests/fake_machine.py):
  OSF, set() clearing OSF and EOSC, bus errors (always, transient, cut after each byte of
  a write), a chip that does not keep what was written, no chip at all.
- A pump on simulated parts with the DS3231 as its rtc: the time survives a reboot with the
  backup cell, is lost (alarm, time-unknown basal) without it or when the bus is dead.
- The same on the MicroPython unix port, and now() under micropython.heap_lock() there and
  on 32-bit MicroPython (wasm), where times from 2054 on are big ints.
"""

import datetime as dt
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards import drivers
from boards.drivers import (
    DS3231,
    RTC_END_DAY,
    bcd,
    ds3231_registers,
    ds3231_seconds,
    find_rtc,
    to_bcd,
)
from boards.fakes import Rig
from firmware.dates import date_of, day_of, days_in_month, weekday
from firmware.pump import Pump
from protocol import spec as S
from tests import fake_machine as fm
from tests.pumpkit import history
from tests.runtimes import REPO_ROOT, run_unix, run_wasm

EPOCH = dt.datetime(2020, 1, 1)
DAY_S = 86400


@pytest.fixture(autouse=True)
def bus():
    fm.reset_all()
    yield fm.I2C(0, scl=fm.Pin(9), sda=fm.Pin(8))
    fm.reset_all()


def chip_on(bus_):
    chip = fm.Ds3231Chip()
    fm.I2C.devices[drivers.DS3231_ADDRESS] = chip
    return chip, DS3231(bus_)


def utc_of(*args):
    return int((dt.datetime(*args) - EPOCH).total_seconds())


def expected_registers(utc_s):
    """The seven time registers for utc_s, written out from datetime (the oracle)."""
    t = EPOCH + dt.timedelta(seconds=utc_s)
    b = lambda n: int(f"{n:02d}", 16)  # noqa: E731  BCD: the decimal digits as hex
    return bytes([b(t.second), b(t.minute), b(t.hour), t.isoweekday(), b(t.day),
                  b(t.month), b(t.year - 2000)])


def second_of(day):
    """A time of day that differs from day to day (covers every hour, minute and second)."""
    return (day * 7919 + 13) % DAY_S


# --------------------------------------------------------------------------- encoding


@pytest.mark.req("THR-13")
def test_bcd_both_ways_and_bad_nibbles():
    assert [bcd(to_bcd(n)) for n in range(100)] == list(range(100))
    assert to_bcd(59) == 0x59 and to_bcd(7) == 0x07
    assert bcd(0x5A) == -1 and bcd(0xA0) == -1 and bcd(0xFF) == -1


@pytest.mark.req("THR-13")
def test_every_day_2020_to_2099_round_trips_through_the_registers():
    assert day_of(2100, 1, 1) == RTC_END_DAY
    regs = bytearray(7)
    for day in range(RTC_END_DAY):
        utc = day * DAY_S + second_of(day)
        ds3231_registers(utc, regs)
        assert bytes(regs) == expected_registers(utc), (day, regs.hex())
        assert ds3231_seconds(regs) == utc


@pytest.mark.req("THR-13")
@pytest.mark.parametrize(("when", "regs"), [
    ((2020, 1, 1, 0, 0, 0), "00000003010120"),  # the epoch, a Wednesday
    ((2020, 2, 29, 12, 34, 56), "56341206290220"),  # leap days
    ((2024, 2, 29, 23, 59, 59), "59592304290224"),
    ((2096, 2, 29, 0, 0, 1), "01000003290296"),
    ((2026, 11, 16, 1, 2, 3), "03020101161126"),
    ((2099, 12, 31, 23, 59, 59), "59592304311299"),  # the last second of the range
])
def test_known_register_values(when, regs):
    utc = utc_of(*when)
    out = bytearray(7)
    ds3231_registers(utc, out)
    assert out.hex() == regs
    assert ds3231_seconds(bytes.fromhex(regs)) == utc


@pytest.mark.req("THR-13")
@pytest.mark.parametrize(("regs", "why"), [
    ("00000005018100", "2100-01-01: the century bit, the chip counted past 2099"),
    ("00000005298200", "2100-02-29: the DS3231 counts it, 2100 is no leap year"),
    ("00000001018199", "2199 by the century bit"),
    ("00000001290221", "2021-02-29"),
    ("00000001310421", "31 April"),
    ("00000001000121", "day 0"),
    ("00000001010021", "month 0"),
    ("00000001011321", "month 13"),
    ("60000001010121", "60 seconds"),
    ("00600001010121", "60 minutes"),
    ("00002401010121", "24 h"),
    ("0a000001010121", "a nibble that is not a digit"),
    ("000000010101a0", "year a0"),
    ("00000001010119", "2019: before the pump's epoch"),
    ("00000000000000", "registers of a chip that never ran"),
    ("00004001010121", "12-hour mode, hour 0"),
    ("00007301010121", "12-hour mode, PM 13"),
])
def test_registers_that_hold_no_valid_time_read_as_unknown(regs, why):
    assert ds3231_seconds(bytes.fromhex(regs)) == -1, why


@pytest.mark.req("THR-13")
@pytest.mark.parametrize(("hours", "hour"), [(0x52, 0), (0x41, 1), (0x51, 11), (0x72, 12),
                                            (0x61, 13), (0x71, 23)])
def test_12_hour_mode_is_read(hours, hour):
    regs = bytes([0x30, 0x15, hours, 1, 0x16, 0x11, 0x26])
    assert ds3231_seconds(regs) == utc_of(2026, 11, 16, hour, 15, 30)


@pytest.mark.req("THR-13")
@settings(max_examples=300, deadline=None)
@given(st.integers(0, RTC_END_DAY - 1))
def test_dates_weekdays_and_month_lengths_match_datetime(day):
    t = EPOCH + dt.timedelta(days=day)
    assert date_of(day) == (t.year, t.month, t.day)
    assert day_of(t.year, t.month, t.day) == day
    assert weekday(day) == t.weekday()
    following = (t.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    assert days_in_month(t.year, t.month) == (following - t.replace(day=1)).days


@pytest.mark.req("THR-13")
@pytest.mark.parametrize("utc", [-1, RTC_END_DAY * DAY_S, utc_of(2150, 1, 1)])
def test_set_outside_the_clock_range_is_refused_without_touching_the_chip(bus, utc):
    chip, rtc = chip_on(bus)
    before = bytes(chip.regs)
    with pytest.raises(ValueError, match="outside 2020-01-01 .. 2099-12-31"):
        rtc.set(utc)
    assert chip.transfers == 0 and bytes(chip.regs) == before


# --------------------------------------------------------------------------- driver


@pytest.mark.req("THR-13")
def test_new_chip_has_osf_set_and_set_clears_it_and_reads_back(bus):
    chip, rtc = chip_on(bus)
    assert rtc.present()
    assert chip.regs[0x0F] & 0x80  # a chip powered up for the first time
    assert rtc.now() == -1
    chip.regs[0x0E] |= 0x80  # EOSC: would stop the oscillator on the backup cell
    chip.regs[0x0F] |= 0x03  # alarm flags
    utc = utc_of(2026, 11, 16, 1, 2, 3)
    assert rtc.set(utc) is True
    assert chip.regs[:7].hex() == "03020101161126"
    assert chip.regs[0x0E] == 0x1C  # EOSC cleared, the rest kept
    assert chip.regs[0x0F] == 0x0B  # OSF cleared; EN32kHz and the alarm flags kept
    assert rtc.now() == utc


@pytest.mark.req("THR-13")
def test_osf_set_means_unknown_even_with_a_valid_time(bus):
    chip, rtc = chip_on(bus)
    utc = utc_of(2030, 6, 1, 8, 0, 0)
    assert rtc.set(utc)
    chip.put(expected_registers(utc), osf=True)  # the oscillator stopped for a while
    assert rtc.now() == -1
    chip.put(expected_registers(utc), osf=False)
    assert rtc.now() == utc


@pytest.mark.req("THR-13")
def test_time_kept_with_backup_and_lost_without(bus):
    chip, rtc = chip_on(bus)
    utc = utc_of(2027, 3, 4, 5, 6, 7)
    assert rtc.set(utc)
    chip.power_lost(backup=True)
    assert DS3231(bus).now() == utc  # a new driver after the reboot
    chip.power_lost(backup=False)
    assert DS3231(bus).now() == -1


@pytest.mark.req("THR-13")
def test_a_dead_bus_reads_unknown_and_set_reports_failure_without_raising(bus):
    chip, rtc = chip_on(bus)
    utc = utc_of(2026, 1, 2, 3, 4, 5)
    assert rtc.set(utc)
    before = bytes(chip.regs)
    chip.transfers = 0
    chip.fail = -1  # every transfer fails (OSError EIO)
    assert not rtc.present()
    assert rtc.now() == -1
    assert chip.transfers == 1 + 3  # present(), then three tries
    assert rtc.set(utc + 60) is False
    assert bytes(chip.regs) == before
    del fm.I2C.devices[drivers.DS3231_ADDRESS]  # nothing answers at all (ENODEV)
    assert rtc.now() == -1 and rtc.set(utc) is False


@pytest.mark.req("THR-13")
def test_a_glitch_on_the_bus_does_not_lose_the_time(bus):
    chip, rtc = chip_on(bus)
    utc = utc_of(2026, 1, 2, 3, 4, 5)
    assert rtc.set(utc)
    chip.fail = 2  # two failed transfers, then the bus works again
    assert rtc.now() == utc
    chip.fail = 3
    assert rtc.now() == -1


@pytest.mark.req("THR-13")
@pytest.mark.parametrize("cut", range(8))
def test_a_write_cut_after_any_byte_never_leaves_a_wrong_time(bus, cut):
    chip, rtc = chip_on(bus)
    old = utc_of(2026, 5, 6, 7, 8, 9)
    assert rtc.set(old)  # a trusted time (OSF clear) in the chip
    chip.fail_after = cut  # every write breaks off after `cut` bytes
    new = utc_of(2031, 12, 24, 18, 30, 0)
    ok = rtc.set(new)
    if cut == 0:  # the bus failed from the first byte: nothing changed
        assert ok is False and rtc.now() == old
    elif cut < 7:  # the time write broke off: half old, half new
        assert ok is False and rtc.now() == -1
        assert bytes(chip.regs[:cut]) == expected_registers(new)[:cut]
    else:  # the whole time arrived (the 2-byte control/status write fits too)
        assert ok is True and rtc.now() == new


class ForgetfulChip(fm.Ds3231Chip):
    """A chip (or bus) that flips a bit of the minutes as they are written."""

    def write(self, reg, value):
        super().write(reg, value ^ 0x01 if reg == 1 else value)


@pytest.mark.req("THR-13")
def test_set_reports_a_time_that_did_not_arrive(bus):
    chip = ForgetfulChip()
    fm.I2C.devices[drivers.DS3231_ADDRESS] = chip
    rtc = DS3231(bus)
    utc = utc_of(2026, 5, 6, 7, 8, 9)
    assert rtc.set(utc) is False
    assert chip.regs[1] == 0x09  # it holds 07:09:09 ...
    assert rtc.now() == -1  # ... marked unknown: the next boot asks for the time


@pytest.mark.req("THR-13", "HW-1")
def test_find_rtc_with_and_without_a_device(bus, capsys):
    assert find_rtc(bus) is None
    out = capsys.readouterr().out
    assert "no real-time clock (DS3231) at I2C 0x68" in out
    chip, _ = chip_on(bus)
    rtc = find_rtc(bus)
    assert isinstance(rtc, DS3231) and capsys.readouterr().out == ""
    assert rtc.set(utc_of(2026, 1, 1)) and not chip.regs[0x0F] & 0x80


# --------------------------------------------------------------------------- with the pump

MONDAY_2026 = 2511 * DAY_S


def pump_with_rtc(bus_):
    chip, rtc = chip_on(bus_)
    rig = Rig()
    rig.rtc = rtc
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.settings.set_profile(0, b"test", [0, 16], [500, 2000]) == S.OK
    return rig, chip, pump


def reboot(rig):
    rig.rtc = DS3231(fm.I2C(0))  # the board builds a new driver at power-on
    pump = Pump(rig.hardware())
    pump.boot()
    return pump


def time_unset(pump):
    return bool(pump.alarms.active[S.A_TIME_UNSET])


@pytest.mark.req("THR-13")
def test_pump_time_survives_power_loss_with_the_backup_cell(bus):
    rig, chip, pump = pump_with_rtc(bus)
    utc = MONDAY_2026 + 9 * 3600  # 09:00: the 2000 mU/h segment
    assert pump.set_time(utc, 0) == S.OK
    assert ds3231_seconds(chip.regs) == utc and not chip.regs[0x0F] & 0x80
    chip.power_lost(backup=True)
    again = reboot(rig)
    assert not time_unset(again)
    assert again.utc_seconds() == utc
    assert again.settings.profile_rate() == 2000


@pytest.mark.req("THR-13")
def test_the_rtc_follows_every_clock_change(bus):
    rig, chip, pump = pump_with_rtc(bus)
    utc = MONDAY_2026 + 9 * 3600
    assert pump.set_time(utc, 0) == S.OK
    assert pump.set_time(utc - 3600, 60) == S.OK  # an hour back, and a time zone
    assert ds3231_seconds(chip.regs) == utc - 3600
    again = reboot(rig)
    assert not time_unset(again)
    assert again.utc_seconds() == utc - 3600  # not the hour the RTC no longer holds


@pytest.mark.req("THR-13")
def test_pump_asks_for_the_time_when_the_backup_cell_was_flat(bus):
    rig, chip, pump = pump_with_rtc(bus)
    assert pump.set_time(MONDAY_2026 + 9 * 3600, 0) == S.OK
    chip.power_lost(backup=False)
    again = reboot(rig)
    assert time_unset(again)
    assert S.ALARMS[S.A_TIME_UNSET][1] == S.PRIO_MEDIUM
    assert any(r[2] == S.H_TIME_LOST for r in history(again))
    assert again.settings.profile_rate() == (16 * 500 + 32 * 2000) // 48  # the time-unknown basal


@pytest.mark.req("THR-13")
def test_pump_with_a_dead_rtc_bus_sets_its_time_and_asks_again_after_a_reboot(bus):
    rig, chip, pump = pump_with_rtc(bus)
    chip.fail = -1
    utc = MONDAY_2026 + 9 * 3600
    assert pump.set_time(utc, 0) == S.OK  # the pump goes on: its own clock is set
    assert pump.utc_seconds() == utc and not time_unset(pump)
    again = reboot(rig)
    assert time_unset(again)  # the RTC could not tell: time lost, said aloud


# --------------------------------------------------------------------------- unix port

UNIX_SCRIPT = """
import hashlib, micropython
import tests.fake_machine as machine
from boards import drivers
from firmware.dates import day_of

h = hashlib.sha256()
regs = bytearray(7)
bad = 0
for day in range(drivers.RTC_END_DAY):
    utc = day * 86400 + (day * 7919 + 13) % 86400
    drivers.ds3231_registers(utc, regs)
    h.update(regs)
    if drivers.ds3231_seconds(regs) != utc:
        bad += 1
print("digest", h.digest().hex(), "bad", bad)

chip = machine.Ds3231Chip()
machine.I2C.devices[drivers.DS3231_ADDRESS] = chip
rtc = drivers.find_rtc(machine.I2C(0, scl=machine.Pin(9), sda=machine.Pin(8)))
print("new", rtc.now())
utc = day_of(2026, 11, 16) * 86400 + 3723
print("set", rtc.set(utc), chip.regs[0x0F])
t = 0
micropython.heap_lock()
t = rtc.now()
micropython.heap_unlock()
print("now", t == utc)
chip.fail = 2
print("glitch", rtc.now() == utc)
chip.fail = -1
print("dead", rtc.now(), rtc.set(utc))
chip.fail = 0
chip.power_lost(backup=False)
print("flat", rtc.now())
"""


@pytest.mark.req("THR-13", "HW-1")
def test_driver_on_the_micropython_unix_port():
    expected = hashlib.sha256()
    for day in range(RTC_END_DAY):
        expected.update(expected_registers(day * DAY_S + second_of(day)))
    lines = run_unix(UNIX_SCRIPT).split("\n")
    assert f"digest {expected.hexdigest()} bad 0" in lines
    assert "new -1" in lines
    assert "set True 8" in lines  # OSF cleared, EN32kHz kept
    assert "now True" in lines  # read under heap_lock: no allocation
    assert "glitch True" in lines
    assert "dead -1 False" in lines
    assert "flat -1" in lines


WASM_SCRIPT = """
import hashlib, micropython
from boards import drivers
from firmware.dates import day_of

h = hashlib.sha256()
regs = bytearray(7)
bad = 0
for day in range(0, drivers.RTC_END_DAY, 37):
    utc = day * 86400 + (day * 7919 + 13) % 86400
    drivers.ds3231_registers(utc, regs)
    h.update(regs)
    if drivers.ds3231_seconds(regs) != utc:
        bad += 1
print("digest", h.digest().hex(), "bad", bad)

chip = Ds3231Chip()
I2C.devices[drivers.DS3231_ADDRESS] = chip
rtc = drivers.find_rtc(I2C(0))
utc = day_of(2026, 11, 16) * 86400 + 3723
ok = rtc.set(utc)
t = 0
micropython.heap_lock()
t = rtc.now()
micropython.heap_unlock()
print("now", ok, t == utc)
late = day_of(2099, 12, 31) * 86400 + 86399
print("late", rtc.set(late), rtc.now() == late)
"""


@pytest.mark.req("THR-13", "HW-1")
def test_driver_on_32_bit_micropython():
    # wasm mounts only firmware/, boards/ and protocol/: the fake bus comes with the code
    fake = (REPO_ROOT / "tests" / "fake_machine.py").read_text()
    expected = hashlib.sha256()
    for day in range(0, RTC_END_DAY, 37):
        expected.update(expected_registers(day * DAY_S + second_of(day)))
    lines = run_wasm(fake + WASM_SCRIPT).stdout.split("\n")
    assert f"digest {expected.hexdigest()} bad 0" in lines
    assert "now True True" in lines  # read under heap_lock: no allocation on 32 bits
    assert "late True True" in lines  # 2099-12-31 23:59:59 = 2524607999 s, a big int there
