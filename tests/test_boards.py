"""Board definitions (HW-1): boards/pico.py, boards/esp32.py and boards/drivers.py.

- mypy type-checks each board module (with the shared drivers) against its own MicroPython
  stubs package, in separate runs: rp2 stubs for the Pico, esp32 stubs for the ESP32.
- The driver logic runs under CPython with tests/fake_machine.py as `machine`: discharge
  curve, debounce, stepper pulse counts and position persistence, storage regions,
  buzzer patterns, serial drivers, the firmware-hash manifest.
- make_hardware() of both boards builds a Hardware that the real firmware boots and ticks
  with, on CPython and on the MicroPython unix port (real file and struct semantics, and the
  tick-path driver calls under micropython.heap_lock()).
- The optional DS3231 real-time clock: pins that clash with nothing, the time kept over a
  power loss with the chip, asked for again without it (the driver itself: test_rtc.py).
"""

import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards import drivers, fakes
from boards.drivers import (
    IDLE,
    MOVING,
    Annunciator,
    BatteryGauge,
    Buttons,
    FlashStorage,
    Stepper,
    curve_percent,
)
from firmware import signals
from firmware.hal import BUTTON_ACK, REGIONS
from firmware.layout import S_TIME_SET
from protocol import spec
from tests import fake_machine as fm
from tests.runtimes import REPO_ROOT, run_unix

BOARDS = ("pico", "esp32")


@pytest.fixture(autouse=True)
def fake_machine(monkeypatch):
    """tests/fake_machine.py is `machine`; boards are imported afresh for each test."""
    fm.reset_all()
    monkeypatch.setitem(sys.modules, "machine", fm)
    for name in ("boards.pico", "boards.esp32"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return fm


def import_board(name):
    import importlib

    return importlib.import_module("boards." + name)


# --------------------------------------------------------------------------- type check


def stub_requirements():
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return data["tool"]["micropump"]["board-stubs"]


def stubs_dir(board):
    """The board's stubs package, installed once into <venv>/stubs/<board> (pip --target)."""
    req = stub_requirements()[board]
    target = Path(sys.prefix) / "stubs" / board
    marker = target / ".requirement"
    if marker.is_file() and marker.read_text() == req:
        return target
    tmp = target.with_name(board + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--target", str(tmp), req],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"cannot install {req}:\n{proc.stdout}\n{proc.stderr}"
    (tmp / ".requirement").write_text(req)
    tmp.rename(target)
    return target


# A line the stubs must reject: proves mypy really checked against them (Pin has no OUTPUT).
PROBE = "import machine\n\nmachine.Pin(2, machine.Pin.OUTPUT)\n"


@pytest.mark.req("HW-1")
@pytest.mark.parametrize("board", BOARDS)
def test_board_type_checks_against_its_micropython_stubs(board, tmp_path):
    stubs = stubs_dir(board)
    probe = tmp_path / "probe_machine.py"
    probe.write_text(PROBE)
    env = dict(os.environ, MYPYPATH=str(stubs))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(stubs),
         "--no-site-packages", "--follow-imports=silent", "--check-untyped-defs",
         "--show-error-codes", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"),
         f"boards/{board}.py", "boards/drivers.py", str(probe)],
        cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [ln for ln in lines if ": error:" in ln]
    # errors inside the stubs themselves (they have a few) are not ours to fix
    stub_root = stubs.resolve()
    errors = [ln for ln in errors
              if not (REPO_ROOT / ln.split(":", 1)[0]).resolve().is_relative_to(stub_root)]
    ours = [ln for ln in errors if ln.startswith("boards/")]
    assert ours == [], "\n".join(ours)
    assert len(errors) == 1, "\n".join(lines)
    assert errors[0].startswith(str(probe)), errors
    assert '"type[Pin]" has no attribute "OUTPUT"' in errors[0]


# --------------------------------------------------------------------------- battery

PICO_CURVE = ((4200, 100), (4100, 90), (4000, 80), (3900, 65), (3800, 50), (3750, 40),
              (3700, 30), (3650, 20), (3600, 10), (3500, 5), (3300, 0))


def curve_arrays(curve):
    return [p[0] for p in curve], [p[1] for p in curve]


@pytest.mark.req("HW-1", "BAT-1")
@pytest.mark.parametrize(
    ("mv", "percent"),
    [(5000, 100), (4200, 100), (4150, 95), (4000, 80), (3950, 72), (3899, 64), (3825, 53),
     (3650, 20), (3601, 10), (3400, 2), (3300, 0), (3000, 0), (0, 0)],
)
def test_discharge_curve_interpolates_linearly_in_integers(mv, percent):
    mvs, pcts = curve_arrays(PICO_CURVE)
    assert curve_percent(mv, mvs, pcts) == percent


@pytest.mark.req("HW-1", "BAT-1")
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 6000), st.integers(0, 6000))
def test_discharge_curve_is_monotonic_and_bounded(a, b):
    mvs, pcts = curve_arrays(PICO_CURVE)
    lo, hi = min(a, b), max(a, b)
    p_lo, p_hi = curve_percent(lo, mvs, pcts), curve_percent(hi, mvs, pcts)
    assert 0 <= p_lo <= p_hi <= 100
    assert type(p_lo) is int


@pytest.mark.req("HW-1", "BAT-1")
def test_battery_gauge_reads_mv_through_divider_and_curve():
    pico = import_board("pico")
    gauge = BatteryGauge(fm.ADC(29), pico.DISCHARGE, pico.VSYS_NUM, pico.VSYS_DEN)
    fm.ADC.u16[29] = 3950 * 65535 // 9900 + 1  # VSYS 3.95 V through the Pico's /3
    assert gauge.millivolts() == 3950
    assert gauge.percent() == 72
    fm.ADC.u16[29] = 65535  # 9.9 V (USB power reads high): full
    assert gauge.percent() == 100
    esp32 = import_board("esp32")
    gauge = BatteryGauge(fm.ADC(39), esp32.DISCHARGE, esp32.BATTERY_NUM, esp32.BATTERY_DEN,
                         microvolts=True)
    fm.ADC.uv[39] = 1_825_000  # 3.65 V through 2:1
    assert gauge.millivolts() == 3650
    assert gauge.percent() == 20
    with pytest.raises(ValueError):
        BatteryGauge(fm.ADC(39), ((3000, 0), (4000, 100)), 1, 1)


@pytest.mark.req("HW-1", "ALM-3")
def test_force_sensor_kpa_from_adc_calibration():
    sensor = drivers.ForceSensor(fm.ADC(26), zero=2000, num=1, den=100)
    fm.ADC.u16[26] = 1500
    assert sensor.read() == 0  # below zero: no negative pressure
    fm.ADC.u16[26] = 2000 + 150 * 100
    assert sensor.read() == 150


# --------------------------------------------------------------------------- buttons


@pytest.mark.req("HW-1", "ALM-2")
def test_button_debounce_counts_one_press_per_stable_change():
    t = [1000]
    pin = fm.Pin(14, fm.Pin.IN, fm.Pin.PULL_UP)
    buttons = Buttons((pin,), (BUTTON_ACK,), lambda: t[0], debounce_ms=40)

    def at(ms, level):
        t[0] = ms
        fm.Pin.levels[14] = level
        return buttons.pressed()

    # contact bounce: never stable for 40 ms
    assert [at(1000 + i * 10, i % 2 == 0 and 0 or 1) for i in range(8)] == [0] * 8
    assert at(1100, 1) == 0
    # a real press: low from 1200, reported once it has been low for 40 ms
    assert at(1200, 0) == 0
    assert at(1220, 0) == 0
    assert at(1239, 0) == 0
    assert at(1240, 0) == BUTTON_ACK
    assert at(1300, 0) == 0  # still held: one press, not a repeat
    assert at(1400, 1) == 0
    assert at(1450, 1) == 0  # released (stable)
    assert at(1500, 0) == 0
    assert at(1545, 0) == BUTTON_ACK  # a second press


@pytest.mark.req("HW-1")
def test_button_held_at_start_is_not_a_press_and_timer_polling_loses_nothing():
    t = [0]
    fm.Pin.levels[14] = 0  # held while the board starts
    buttons = Buttons((fm.Pin(14, fm.Pin.IN, fm.Pin.PULL_UP),), (BUTTON_ACK,), lambda: t[0],
                      debounce_ms=40, timer=True)
    assert buttons.held()
    for t[0] in range(0, 200, 20):
        buttons.poll()
    assert buttons.pressed() == 0
    fm.Pin.levels[14] = 1
    for t[0] in range(200, 300, 20):
        buttons.poll()
    fm.Pin.levels[14] = 0
    for t[0] in range(300, 400, 20):
        buttons.poll()
    assert fm.Pin.levels[14] == 0
    # pressed() does not poll in timer mode: the press counted by the timer is reported once
    assert buttons.pressed() == BUTTON_ACK
    assert buttons.pressed() == 0


# --------------------------------------------------------------------------- stepper

STEP, DIR, EN, FAULT, HOME = 2, 3, 4, 5, 6
MICRO = 45


class Cut(Exception):
    """Power dies (raised from the STEP delay)."""


def make_stepper(path, delay=None, **kw):
    return Stepper(fm.Pin(STEP, fm.Pin.OUT, value=0), fm.Pin(DIR, fm.Pin.OUT, value=0),
                   fm.Pin(EN, fm.Pin.OUT, value=1), str(path), MICRO,
                   delay or (lambda us: None), **kw)


def cutting_delay(after_steps):
    """A delay function that cuts power after `after_steps` STEP pulses."""

    def delay(us):
        if fm.Pin.rises.get(STEP, 0) >= after_steps:
            raise Cut()

    return delay


@pytest.mark.req("HW-1", "THR-7")
def test_stepper_pulses_microsteps_per_insulin_pulse_with_dir_and_enable(tmp_path):
    fm.Pin.traced.update((DIR, EN))
    motor = make_stepper(tmp_path / "motor.pos")
    fm.Pin.writes.clear()
    motor.step(3)
    assert fm.Pin.rises[STEP] == 3 * MICRO
    assert fm.Pin.writes[DIR] == [1]  # forward
    assert fm.Pin.writes[EN] == [0, 1]  # enabled (active low) for the move only
    assert motor.position() == 3
    motor.step(0)
    motor.step(-2)
    assert fm.Pin.rises[STEP] == 3 * MICRO and motor.position() == 3


@pytest.mark.req("HW-1", "HIS-2")
def test_stepper_position_survives_restart(tmp_path):
    path = tmp_path / "motor.pos"
    motor = make_stepper(path)
    motor.step(7)
    motor.step(5)
    assert path.stat().st_size == 14
    again = make_stepper(path)
    assert again.position() == 12
    assert again.interrupted == IDLE
    assert again.self_test()


@pytest.mark.req("HW-1", "HIS-2")
def test_power_cut_mid_move_errs_on_the_counted_side(tmp_path):
    path = tmp_path / "motor.pos"
    motor = make_stepper(path)
    motor.step(2)
    fm.Pin.rises.clear()
    cut = make_stepper(path, delay=cutting_delay(MICRO + 10))
    with pytest.raises(Cut):
        cut.step(4)
    assert fm.Pin.rises[STEP] == MICRO + 10  # 1.2 of 4 pulses actually moved
    after = make_stepper(path)
    assert after.position() == 6  # all 4 counted: never delivered again after the cut
    assert after.interrupted == MOVING
    assert after.self_test()


@pytest.mark.req("HW-1", "HIS-2")
def test_rewind_cut_by_power_loss_is_finished_at_start_up(tmp_path):
    path = tmp_path / "motor.pos"
    fm.Pin.traced.add(DIR)
    make_stepper(path).step(10)
    fm.Pin.rises.clear()
    cut = make_stepper(path, delay=cutting_delay(100))
    with pytest.raises(Cut):
        cut.rewind()
    fm.Pin.rises.clear()
    fm.Pin.writes.clear()
    after = make_stepper(path)  # keeps the old count, then rewinds it all
    assert 1 not in fm.Pin.writes[DIR]  # backwards only
    assert fm.Pin.rises[STEP] == 10 * MICRO
    assert after.position() == 0
    assert make_stepper(path).interrupted == IDLE


@pytest.mark.req("HW-1")
def test_rewind_stops_at_the_home_switch_and_fails_self_test_without_it(tmp_path):
    fm.Pin(HOME, fm.Pin.IN, fm.Pin.PULL_UP)
    backwards = [0]

    def on_step(level):  # the home switch closes after 300 backward microsteps
        if level and fm.Pin.levels[DIR] == 0:
            backwards[0] += 1
            if backwards[0] >= 300:
                fm.Pin.levels[HOME] = 0

    fm.Pin.hooks[STEP] = on_step
    motor = make_stepper(tmp_path / "a.pos", home=fm.Pin(HOME), home_margin=1000)
    motor.step(10)  # counted 450 microsteps out; the plunger was not fully home before
    fm.Pin.rises.clear()
    motor.rewind()
    assert fm.Pin.rises[STEP] == 300
    assert motor.position() == 0 and motor.self_test()

    fm.Pin.hooks.clear()
    fm.Pin.levels[HOME] = 1
    broken = make_stepper(tmp_path / "b.pos", home=fm.Pin(HOME), home_margin=100)
    broken.step(2)
    fm.Pin.rises.clear()
    broken.rewind()
    assert fm.Pin.rises[STEP] == 2 * MICRO + 100  # gave up after the margin
    assert not broken.self_test()


@pytest.mark.req("HW-1", "ALM-3")
def test_relieve_backs_off_without_changing_position(tmp_path):
    motor = make_stepper(tmp_path / "motor.pos", relieve_steps=90)
    motor.step(4)
    fm.Pin.rises.clear()
    motor.relieve()
    assert fm.Pin.rises[STEP] == 90
    assert fm.Pin.levels[DIR] == 0
    assert motor.position() == 4
    fm.Pin.rises.clear()
    motor.step(1)  # takes the slack up first
    assert fm.Pin.rises[STEP] == 90 + MICRO
    assert motor.position() == 5


@pytest.mark.req("HW-1", "ALM-5")
def test_long_moves_feed_the_watchdog(tmp_path):
    wdt = fm.WDT(timeout=5000)
    motor = make_stepper(tmp_path / "motor.pos", feed=wdt.feed)
    motor.step(60)  # 2700 microsteps: a prime
    assert wdt.feeds == 2700 // 256


@pytest.mark.req("HW-1", "ALM-5")
def test_motor_self_test_fails_on_corrupt_position_or_driver_fault(tmp_path):
    path = tmp_path / "motor.pos"
    make_stepper(path).step(3)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(data)
    assert not make_stepper(path).self_test()
    path.write_bytes(b"")  # created, then power died before the first record
    empty = make_stepper(path)
    assert empty.position() == 0 and empty.self_test() and path.stat().st_size == 14
    path.unlink()
    fresh = make_stepper(path, fault=fm.Pin(FAULT, fm.Pin.IN, fm.Pin.PULL_UP))
    assert fresh.position() == 0 and fresh.self_test()
    fm.Pin.levels[FAULT] = 0
    assert not fresh.self_test()


# --------------------------------------------------------------------------- storage


@pytest.mark.req("HW-1", "HIS-2")
def test_storage_regions_are_preallocated_files(tmp_path):
    folder = tmp_path / "data"
    storage = FlashStorage(str(folder))
    assert drivers.REGION_SIZES == fakes.REGION_SIZES
    assert len(drivers.REGION_SIZES) == REGIONS
    for region, size in enumerate(drivers.REGION_SIZES):
        assert storage.size(region) == size
        assert (folder / f"r{region}").read_bytes() == b"\xff" * size
    assert storage.self_test()
    assert not (folder / "selftest").exists()


@pytest.mark.req("HW-1", "HIS-2")
def test_storage_read_write_round_trip_and_survive_reopen(tmp_path):
    folder = str(tmp_path / "data")
    storage = FlashStorage(folder)
    storage.write(4, 24 * 100, bytearray(b"history record 100......"))
    storage.write(0, 0, bytearray(range(16)))
    buf = bytearray(24)
    storage.read(4, 24 * 100, buf)
    assert buf == b"history record 100......"
    again = FlashStorage(folder)
    small = bytearray(16)
    again.read(0, 0, small)
    assert small == bytes(range(16))
    again.read(0, 16, small)
    assert small == b"\xff" * 16
    with pytest.raises(ValueError):
        again.write(2, 510, bytearray(4))  # past the end of the 512-byte region
    with pytest.raises(ValueError):
        again.read(7, -1, small)


@pytest.mark.req("HW-1", "ALM-5")
def test_storage_grows_short_region_files_and_self_test_sees_damage(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "r1").write_bytes(b"\x01\x02")
    storage = FlashStorage(str(folder))
    assert (folder / "r1").read_bytes() == b"\x01\x02" + b"\xff" * 2046  # kept, then filled
    (folder / "r5").write_bytes(b"")
    assert not storage.self_test()


# --------------------------------------------------------------------------- annunciator


def pwm_pulses(ann, pwm, ms, period=20):
    """Run the driver's service timer for `ms` and read the tone pulses off the PWM:
    [(start ms, Hz, duration ms, duty)], as a scope on the buzzer pin would see them."""
    out = []
    on = None
    for k in range(ms // period + 1):
        duty = pwm.duty_u16()
        if duty and on is None:
            on = (k * period, pwm.freq(), duty)
        elif not duty and on is not None:
            out.append((on[0], on[1], k * period - on[0], on[2]))
            on = None
        ann.advance()
    return out


def in_range(name, priority, values):
    """Every value within the standard's range for that figure (firmware/signals.STANDARD)."""
    rows = [r for r in signals.STANDARD if r[0] == name and r[1] == priority]
    assert len(rows) == 1, (name, priority)
    _, _, lo, hi, _ = rows[0]
    assert values, (name, priority)
    return all(lo <= v <= hi for v in values)


@pytest.mark.req("HW-1", "ALM-8", "ALM-2")
@pytest.mark.parametrize(("priority", "level"), [(1, 0), (2, 1), (3, 0), (3, 2)])
def test_buzzer_plays_iec_bursts_per_priority(priority, level):
    """The PWM buzzer driver, read off a fake PWM every 20 ms for 45 s: pulse count, pulse
    duration, spacing, burst repeat interval and fundamental within IEC 60601-1-8."""
    from host_tools.alarm_signals import bursts, measure

    pwm = fm.PWM(fm.Pin(15), freq=2000, duty_u16=0)
    ann = Annunciator(pwm, fm.Pin(25, fm.Pin.OUT))
    ann.sound(priority, level)
    pulses = pwm_pulses(ann, pwm, 45000)
    fig = measure(pulses, priority)
    assert {p[3] for p in pulses} == {drivers.DUTIES[level]}  # louder per escalation level
    assert fig["pulses per burst"][0] == {1: 2, 2: 3, 3: 10}[priority]
    assert in_range("pulses per burst", priority, fig["pulses per burst"])
    for name in ("pulse duration", "pulse spacing", "fundamental frequency"):
        assert in_range(name, priority, fig[name]), (name, fig[name])
    if priority == 1:
        assert len(bursts(pulses)) == 1  # low: not repeated by the driver
    else:
        # 45 s: 4 bursts of high (every 10 s), 3 of medium (every 20 s)
        assert len(bursts(pulses)) == {2: 3, 3: 5}[priority]
        assert in_range("burst repeat interval", priority, fig["burst repeat interval"])
    if priority == 3:
        assert in_range("spacing 5th to 6th pulse", 3, fig["spacing 5th to 6th pulse"])
        x, td = fig["pulse spacing"][0], fig["pulse duration"][0]
        assert fig["spacing 3rd to 4th pulse"] == [2 * x + td] * 5  # 2x + td, as the standard
    ann.silence()
    assert pwm.duty_u16() == 0 and pwm_pulses(ann, pwm, 30000) == []


@pytest.mark.req("HW-1", "ALM-8")
def test_buzzer_silence_and_new_signal_mid_burst():
    pwm = fm.PWM(fm.Pin(15), freq=2000, duty_u16=0)
    ann = Annunciator(pwm, fm.Pin(25, fm.Pin.OUT))
    ann.sound(3, 0)
    first = pwm_pulses(ann, pwm, 500)
    assert [p[2] for p in first] == [160, 160]  # two high pulses, the third sounding
    ann.sound(2, 0)  # a new signal starts from its first pulse at once
    assert pwm.duty_u16() == drivers.DUTIES[0] and pwm.freq() == signals.TONE_HZ[2]
    assert [p[2] for p in pwm_pulses(ann, pwm, 1200)] == [200, 200, 200]
    ann.silence()
    assert not ann.sounding() and pwm.duty_u16() == 0


def led_levels(ann, pin, ms, period=20):
    out = []
    for k in range(ms // period):
        level = fm.Pin.levels[pin]
        if not out or out[-1][1] != level:
            out.append((k * period, level))
        ann.advance()
    return out


@pytest.mark.req("HW-1", "ALM-8", "ALM-2")
def test_led_flash_rate_per_priority_and_rgb_colour():
    from host_tools.alarm_signals import flash

    pins = [fm.Pin(n, fm.Pin.OUT) for n in (25, 26, 27, 28)]
    ann = Annunciator(fm.PWM(fm.Pin(15)), pins[0], rgb=pins[1:])
    ann.led(3)
    assert [fm.Pin.levels[n] for n in (25, 26, 27, 28)] == [1, 1, 0, 0]  # red
    hz, duty = flash(led_levels(ann, 25, 10000))
    assert (hz, duty) == (2000, 48)
    assert in_range("flash frequency", 3, [hz]) and in_range("flash duty cycle", 3, [duty])
    ann.led(2)
    assert [fm.Pin.levels[n] for n in (26, 27, 28)] == [1, 1, 0]  # yellow: red + green
    hz, duty = flash(led_levels(ann, 25, 20000))
    assert (hz, duty) == (500, 50)
    assert in_range("flash frequency", 2, [hz]) and in_range("flash duty cycle", 2, [duty])
    ann.led(1)
    assert flash(led_levels(ann, 25, 5000)) is None and fm.Pin.levels[25] == 1  # steady
    ann.led(0)
    assert led_levels(ann, 25, 3000) == [(0, 0)]
    assert [fm.Pin.levels[n] for n in (26, 27, 28)] == [0, 0, 0]


@pytest.mark.req("HW-1", "ALM-2", "ALM-5")
def test_self_test_chirp_and_level_clamp():
    pwm = fm.PWM(fm.Pin(15))
    ann = Annunciator(pwm, fm.Pin(25, fm.Pin.OUT))
    assert ann.self_test()
    assert ann.sounding()
    assert pwm_pulses(ann, pwm, 1000) == [(0, signals.TONE_HZ[3], drivers.CHIRP_MS,
                                           drivers.DUTIES[0])]
    ann.sound(0, 0)  # priority 0: nothing
    assert pwm.duty_u16() == 0
    ann.sound(3, 7)  # level clamped to 2
    assert pwm.duty_u16() == drivers.DUTIES[2]


# --------------------------------------------------------------------------- serial


class FakePoller:
    def __init__(self, ready):
        self.ready = ready
        self.waits = []

    def ipoll(self, ms):
        self.waits.append(ms)
        return iter([(0, 1)] if self.ready() else [])


@pytest.mark.req("HW-1", "LNK-1")
def test_usb_stream_serial_reads_what_is_waiting_without_blocking():
    rx = io.BytesIO(b"\x00frame\x03\x00")
    tx = io.BytesIO()
    size = len(rx.getvalue())
    serial = drivers.StreamSerial(rx, tx, FakePoller(lambda: rx.tell() < size))
    buf = bytearray(4)
    assert serial.readinto(buf) == 4 and buf == b"\x00fra"
    big = bytearray(64)
    assert serial.readinto(big) == 4
    assert bytes(big[:4]) == b"me\x03\x00"
    assert serial.readinto(big) == 0
    assert not serial.wait(50)
    out = bytearray(b"abcdef")
    serial.write(out, 3)
    serial.write(out, 6)
    assert tx.getvalue() == b"abcabcdef"


@pytest.mark.req("HW-1", "LNK-1")
def test_uart_serial_reads_available_bytes_only():
    uart = fm.UART(2)
    serial = drivers.UartSerial(uart, FakePoller(lambda: bool(uart.rx)))
    buf = bytearray(8)
    assert serial.readinto(buf) == 0
    assert not serial.wait(10)
    uart.rx.extend(b"0123456789")
    assert serial.wait(10)
    assert serial.readinto(buf) == 8 and buf == b"01234567"
    assert serial.readinto(buf) == 2 and buf[:2] == b"89"
    serial.write(bytearray(b"xyz"), 2)
    assert uart.tx == b"xy"


# --------------------------------------------------------------------------- boards


def write_manifest(root, files):
    lines = []
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    (root / drivers.MANIFEST).write_text("".join(lines))


@pytest.fixture
def board_clock(monkeypatch):
    """CPython's time has no ticks_ms/sleep_ms/sleep_us: lend it a fakes.Clock."""
    clock = fakes.Clock()
    monkeypatch.setattr(time, "ticks_ms", clock.ticks_ms, raising=False)
    monkeypatch.setattr(time, "sleep_ms", clock.sleep_ms, raising=False)
    monkeypatch.setattr(time, "sleep_us", lambda us: None, raising=False)
    return clock


@pytest.mark.req("HW-1", "ALM-5", "SEC-1", "THR-7")
@pytest.mark.parametrize("name", BOARDS)
def test_make_hardware_builds_what_the_firmware_runs_on(name, tmp_path, board_clock):
    from firmware.main import run

    board = import_board(name)
    write_manifest(tmp_path, {"main.py": b"import boards\n", "firmware/a.mpy": b"M\x06"})
    key = bytes(range(32))
    (tmp_path / drivers.KEY_FILE).write_bytes(key)
    fm.set_reset_cause(fm.WDT_RESET)
    fm.Pin.levels[board.PIN_FAULT] = 1  # driver fault output idle (pulled up)
    serial = fakes.Serial()
    hw = board.make_hardware(str(tmp_path), serial=serial)

    assert hw.pulse_mu == board.PULSE_MU and hw.pulse_mu in (10, 25, 50)
    assert hw.occlusion_kpa == board.OCCLUSION_KPA
    assert hw.board == board.BOARD_ID and hw.board not in (spec.BOARD_TEST, spec.BOARD_UNIX)
    assert hw.key == key
    assert hw.serial is serial
    assert hw.emulator is None  # SEC-3: no fault injection or clock control on a board
    assert hw.reset_cause == spec.RESET_WATCHDOG
    assert hw.clock is time
    assert hw.motor.microsteps == board.MICROSTEPS_PER_PULSE
    assert fm.WDT.instances[-1].timeout == board.WDT_MS
    assert fm.Timer.instances[-1].period == board.TIMER_MS
    assert hw.firmware_ok()
    (tmp_path / "firmware" / "a.mpy").write_bytes(b"M\x06tampered")
    assert not hw.firmware_ok()
    (tmp_path / "firmware" / "a.mpy").write_bytes(b"M\x06")

    fm.ADC.u16[board.PIN_FORCE] = board.FORCE_ZERO
    if name == "pico":
        fm.ADC.u16[board.PIN_VSYS] = 65535 * 3900 // 9900 + 1
    else:
        fm.ADC.uv[board.PIN_BATTERY] = 1_950_000
    assert hw.battery.percent() == 65
    pump = run(hw, ticks=30)
    assert pump.selftest_bits == 0  # firmware hash, storage, motor, buzzer all pass
    assert fm.WDT.instances[-1].feeds >= 30
    assert (tmp_path / "data" / "motor.pos").stat().st_size == 14
    for region, size in enumerate(drivers.REGION_SIZES):
        assert (tmp_path / "data" / f"r{region}").stat().st_size == size
    seq = pump.history.next_seq - 1
    rec = bytearray(24)
    assert pump.history.read(seq, rec) or pump.history.read(1, rec)

    # buttons through the service timer: ACK pressed for 60 ms is one press
    timer = fm.Timer.instances[-1]
    fm.Pin.levels[board.PIN_BUTTON_ACK] = 0
    for _ in range(4):
        board_clock.advance(20)
        timer.fire()
    assert hw.buttons.pressed() == BUTTON_ACK


@pytest.mark.req("HW-1", "ALM-5")
@pytest.mark.parametrize("name", BOARDS)
def test_missing_manifest_or_key(name, tmp_path, board_clock):
    board = import_board(name)
    (tmp_path / drivers.KEY_FILE).write_bytes(b"short")
    hw = board.make_hardware(str(tmp_path), serial=fakes.Serial())
    assert hw.key is None  # not a 256-bit key: none (authenticated commands refused)
    assert not hw.firmware_ok()
    (tmp_path / drivers.MANIFEST).write_text("")
    assert not hw.firmware_ok()  # an empty manifest proves nothing


# A Monday 09:00 UTC (2026-11-16), in seconds since 2020-01-01
RTC_UTC = 2511 * 86400 + 9 * 3600


@pytest.mark.req("HW-1")
@pytest.mark.parametrize("name", BOARDS)
def test_board_pins_do_not_clash(name):
    board = import_board(name)
    pins = {k: v for k, v in vars(board).items() if k.startswith("PIN_") and v is not None}
    assert {"PIN_RTC_SDA", "PIN_RTC_SCL"} <= set(pins)
    assert len(set(pins.values())) == len(pins), pins


@pytest.mark.req("HW-1", "THR-13")
@pytest.mark.parametrize("name", BOARDS)
def test_board_with_a_ds3231_keeps_the_time_over_a_power_loss(name, tmp_path, board_clock):
    from firmware.pump import Pump

    board = import_board(name)
    chip = fm.Ds3231Chip()
    fm.I2C.devices[drivers.DS3231_ADDRESS] = chip
    hw = board.make_hardware(str(tmp_path), serial=fakes.Serial())
    assert isinstance(hw.rtc, drivers.DS3231)
    i2c = fm.I2C.instances[-1]
    assert (i2c.id, i2c.sda, i2c.scl) == (board.RTC_I2C_ID, board.PIN_RTC_SDA,
                                          board.PIN_RTC_SCL)
    pump = Pump(hw)
    pump.boot()
    assert pump.set_time(RTC_UTC, 60) == spec.OK
    assert drivers.ds3231_seconds(chip.regs) == RTC_UTC and not chip.regs[0x0F] & 0x80
    chip.power_lost(backup=True)
    again = Pump(board.make_hardware(str(tmp_path), serial=fakes.Serial()))
    again.boot()
    assert not again.alarms.active[spec.A_TIME_UNSET]
    assert again.utc_seconds() == RTC_UTC


@pytest.mark.req("HW-1", "THR-13")
@pytest.mark.parametrize("name", BOARDS)
def test_board_without_an_rtc_runs_says_so_and_asks_for_the_time(name, tmp_path, board_clock,
                                                                 capsys):
    from firmware.pump import Pump

    board = import_board(name)
    hw = board.make_hardware(str(tmp_path), serial=fakes.Serial())
    assert hw.rtc is None
    assert "no real-time clock (DS3231) at I2C 0x68" in capsys.readouterr().out
    pump = Pump(hw)
    pump.boot()
    assert pump.set_time(RTC_UTC, 60) == spec.OK
    again = Pump(board.make_hardware(str(tmp_path), serial=fakes.Serial()))
    again.boot()  # after a power loss: nothing kept the time
    assert again.alarms.active[spec.A_TIME_UNSET]
    assert again.state[S_TIME_SET] == 0  # status reports the time as unset


@pytest.mark.req("HW-1")
@pytest.mark.parametrize(("cause", "expected"), [
    (fm.PWRON_RESET, spec.RESET_POWER_ON), (fm.WDT_RESET, spec.RESET_WATCHDOG),
    (fm.HARD_RESET, spec.RESET_POWER_ON)])
def test_reset_cause_mapping(cause, expected):
    fm.set_reset_cause(cause)
    assert import_board("pico").reset_cause() == expected
    assert import_board("esp32").reset_cause() == expected
    fm.set_reset_cause(fm.SOFT_RESET)
    assert import_board("esp32").reset_cause() == spec.RESET_SOFT


@pytest.mark.req("HW-1", "HW-2")
@pytest.mark.parametrize("name", BOARDS)
def test_main_applies_provisioned_settings_once_then_resets(name, tmp_path, board_clock):
    from firmware.pump import Pump

    board = import_board(name)
    (tmp_path / drivers.PROVISION).write_text(
        f"{spec.SET_MAX_BOLUS} 8000\n{spec.SET_BOLUS_SPEED} 1000\n")
    assert board.main(str(tmp_path), serial=fakes.Serial()) is None
    assert fm.resets[0] == 1
    assert not (tmp_path / drivers.PROVISION).exists()
    pump = Pump(board.make_hardware(str(tmp_path), serial=fakes.Serial()))
    pump.boot()
    assert pump.setting(spec.SET_MAX_BOLUS) == 8000
    assert pump.setting(spec.SET_BOLUS_SPEED) == 1000


@pytest.mark.req("HW-1")
@pytest.mark.parametrize("name", BOARDS)
def test_ack_held_at_reset_keeps_the_firmware_stopped(name, tmp_path, capsys):
    board = import_board(name)
    fm.Pin.levels[board.PIN_BUTTON_ACK] = 0
    assert board.main(str(tmp_path)) is None
    assert fm.WDT.instances == []  # no watchdog started: the REPL stays usable
    assert not (tmp_path / "data").exists()
    assert "maintenance mode" in capsys.readouterr().out


# --------------------------------------------------------------------------- unix port

UNIX_SCRIPT = """
import sys, os, micropython
import tests.fake_machine as machine
sys.modules["machine"] = machine
from boards import fakes, drivers
import boards.{board} as board
from firmware.main import run

ROOT = {root!r}
machine.Pin(board.PIN_FAULT).value(1)  # driver fault output idle (external pull-up)
if {with_rtc}:
    chip = machine.Ds3231Chip()
    machine.I2C.devices[drivers.DS3231_ADDRESS] = chip
hw = board.make_hardware(ROOT, serial=fakes.Serial())
pump = run(hw, ticks=3)
print("selftest", pump.selftest_bits, "pulse", hw.pulse_mu, "key", hw.key is not None)
print("set_time", pump.set_time({utc}, 60), "rtc", -2 if hw.rtc is None else hw.rtc.now())

# the driver calls of the tick path do not allocate (fake pins; real files and structs)
motor, storage, battery, ann, buttons, pressure = (hw.motor, hw.storage, hw.battery,
    hw.annunciator, hw.buttons, hw.pressure)
rec = bytearray(24)
p = b = k = m = 0  # globals exist before the heap is locked
machine.Pin.levels[board.PIN_FAULT] = 1
micropython.heap_lock()
motor.step(2)
motor.relieve()
p = motor.position()
storage.write(4, 48, rec)
storage.read(4, 0, rec)
b = battery.percent()
k = pressure.read()
ann.sound(3, 2)
ann.advance()
ann.led(3)
ann.advance()
ann.silence()
m = buttons.pressed()
buttons.poll()
micropython.heap_unlock()
print("position", p, "battery", b, "kpa", k, "buttons", m)
again = drivers.Stepper(machine.Pin(90), machine.Pin(91), machine.Pin(92),
                        ROOT + "/data/motor.pos", 45, lambda us: None)
print("persisted", again.position())
"""


@pytest.mark.req("HW-1", "HIS-2", "THR-13")
@pytest.mark.parametrize("with_rtc", [True, False], ids=["ds3231", "no_rtc"])
@pytest.mark.parametrize("name", BOARDS)
def test_board_runs_on_the_micropython_unix_port(name, with_rtc, tmp_path):
    write_manifest(tmp_path, {"main.py": b"x"})
    (tmp_path / drivers.KEY_FILE).write_bytes(bytes(32))
    out = run_unix(UNIX_SCRIPT.format(board=name, root=str(tmp_path), with_rtc=with_rtc,
                                      utc=RTC_UTC))
    lines = out.split("\n")
    pulse = {"pico": 50, "esp32": 25}[name]
    assert f"selftest 0 pulse {pulse} key True" in lines
    if with_rtc:
        assert f"set_time 0 rtc {RTC_UTC}" in lines
    else:
        assert "set_time 0 rtc -2" in lines
        assert any("no real-time clock (DS3231) at I2C 0x68" in ln for ln in lines)
    assert "position 2 battery 0 kpa 0 buttons 0" in lines
    assert "persisted 2" in lines


@pytest.mark.req("SNS-4", "HW-1")
@pytest.mark.parametrize("name", BOARDS)
def test_a_board_built_without_a_sensor_uart_has_no_sensor_link(name, tmp_path, monkeypatch,
                                                                board_clock):
    """SENSOR_UART_ID None: no UART opened, hw.radio None (the pump runs without CGM
    readings); the sensor link is not built (issue 12: heap)."""
    board = import_board(name)
    monkeypatch.setattr(board, "SENSOR_UART_ID", None)
    write_manifest(tmp_path, {"main.py": b"import boards\n"})
    fm.Pin.levels[board.PIN_FAULT] = 1
    before = len(fm.UART.instances)
    hw = board.make_hardware(str(tmp_path), serial=fakes.Serial())
    assert hw.radio is None
    assert all(u.baudrate != drivers.SENSOR_BAUD for u in fm.UART.instances[before:])


@pytest.mark.req("SNS-4", "HW-1")
@pytest.mark.parametrize("name", BOARDS)
def test_sensor_uart_carries_cgm_records_to_the_pump(name, tmp_path, board_clock):
    """The board's sensor UART (pins of docs/boards.md) is the pump's sensor link: a frame
    written into its receive side is a reading once the pump is paired (sensor_id)."""
    from firmware.cgm_link import CgmLink
    from firmware.pump import Pump
    from protocol import cgm_record as H

    board = import_board(name)
    write_manifest(tmp_path, {"main.py": b"import boards\n"})
    fm.Pin.levels[board.PIN_FAULT] = 1
    hw = board.make_hardware(str(tmp_path), serial=fakes.Serial())
    uart = [u for u in fm.UART.instances if u.id == board.SENSOR_UART_ID][-1]
    assert uart.baudrate == drivers.SENSOR_BAUD
    assert isinstance(hw.radio, CgmLink)
    pump = Pump(hw)
    pump.boot()
    assert pump.settings.set(spec.SET_SENSOR_ID, 4242) == spec.OK
    uart.rx.extend(H.encode_frame(4242, H.encode_record(187, 60)))
    board_clock.advance(1000)
    pump.tick()
    assert pump.cgm.last == 187 and hw.radio.stats[1] == 1
    uart.rx.extend(H.encode_frame(99, H.encode_record(40, 65)))  # not the paired one
    board_clock.advance(1000)
    pump.tick()
    assert pump.cgm.last == 187 and hw.radio.stats[5] == 1
