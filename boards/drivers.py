"""Drivers over MicroPython's `machine` objects, shared by boards/pico.py and boards/esp32.py.

Like micropython-lib's drivers, each class takes its pins, ADC, PWM and helper functions as
constructor arguments: the board modules create them from `machine` and wire them up. This
module imports no `machine` itself, so the tests drive it with tests/fake_machine.py on
CPython and on the MicroPython unix port.

Methods the firmware calls from its tick (Stepper.step/position/relieve, ForceSensor.read,
BatteryGauge.percent, Annunciator.sound/led, Buttons.pressed, FlashStorage.read/write and
the serial readinto/wait) do not allocate: bound methods are cached at construction,
records are packed into preallocated buffers, and values stay small ints (< 2**30).
Serial write() of a partial buffer makes one memoryview slice, the only exception.

What each driver can and cannot know is documented in docs/boards.md.
"""

import hashlib
import os
import struct
from array import array
from binascii import hexlify

from firmware.compat import ticks_diff
from firmware.crc import stamp, stamped
from firmware.dates import date_of, day_of, days_in_month, weekday
from firmware.hal import REGION_SIZES, Hardware
from firmware.signals import BURST_INTERVAL_MS, BURSTS, FLASH, RGB, TONE_HZ, burst_ms

# Files on the board's flash, next to main.py (all written by host_tools/flash.py)
MANIFEST = "manifest.sha256"  # "<sha256 hex>  <path>" per deployed file
KEY_FILE = "pairing.key"  # the 32-byte pairing key (SEC-1)
PROVISION = "provision.txt"  # settings to apply once: "<setting id> <value>" lines
DATA = "data"  # folder of the storage region files and the motor position file


def join(root, name):
    """root + "/" + name, or name alone when root is "" (the board's current folder, /)."""
    return root + "/" + name if root else name


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    """Create path and its parents (os.makedirs does not exist on MicroPython)."""
    part = "/" if path.startswith("/") else ""
    for name in path.split("/"):
        if not name:
            continue
        part = part + name if not part or part.endswith("/") else part + "/" + name
        if not exists(part):
            os.mkdir(part)


# --------------------------------------------------------------------------- motor

_POS_FORMAT = "<HBBii"  # magic, state, 0, position (pulses), position before the move
_POS_CRC = 12  # offset of the crc16 <H that follows
_POS_SIZE = 14
_POS_MAGIC = 0x5350
IDLE = 0
MOVING = 1
REWINDING = 2
_FEED_EVERY = 256  # microsteps between watchdog feeds during a long move (prime, rewind)


class Stepper:
    """A STEP/DIR/EN stepper driver (A4988, DRV8825, TMC2209 in step/dir mode) pushing the
    plunger. One insulin pulse is `microsteps` STEP pulses (a board constant).

    There is no encoder: the position is counted, and kept in a 14-byte file (`path`) on
    the internal flash so it survives power loss. Before a move the file is written with
    the target position and state MOVING, after it with state IDLE. A power cut during the
    move therefore leaves the position at the target: pulses that did not move are counted
    as moved, so the firmware (which attributes moved pulses after a cut, HIS-2) can only
    under-count delivery, never deliver them again. `interrupted` tells that the last move
    was cut. LittleFS commits a file write atomically at flush, so the record is either
    the old one or the new one. A rewind cut by power loss is finished at the next start-up
    (moving back never delivers insulin). Steps lost to a stall are invisible without a
    stall signal: wire the driver's fault/DIAG output to `fault` where it has one.
    """

    def __init__(self, step, direction, enable, path, microsteps, delay_us, step_us=500,
                 relieve_steps=0, fault=None, home=None, feed=None, forward=1,
                 home_margin=0):
        self.microsteps = microsteps
        self.step_us = step_us
        self.relieve_steps = relieve_steps
        self.forward = forward
        self.home_margin = home_margin  # extra microsteps a rewind may go to find home
        self.fault_pin = fault  # driver fault output, active low (or None)
        self._fault = fault.value if fault is not None else None
        self.home = home  # home switch at the rewound end, active low (or None)
        self._step = step.value
        self._dir = direction.value
        self._enable = enable.value
        self._delay = delay_us
        self._feed = feed
        self._home = home.value if home is not None else None
        self._enable(1)  # EN is active low: motor off between moves
        self.pos = 0
        self.slack = 0  # microsteps backed off by relieve(), taken up by the next step()
        self.interrupted = IDLE  # state of the record found at start-up
        self.ok = True
        self.home_found = home is None
        self.buf = bytearray(_POS_SIZE)
        self.path = path
        self.file = self._open(path)
        if self.interrupted == REWINDING:
            self.rewind()

    def _open(self, path):
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
            self.file = f
            self._save(IDLE, 0, 0)
            return f
        buf = self.buf
        n = f.readinto(buf)
        if not n:  # created, then power died before the first record: nothing moved yet
            self.file = f
            self._save(IDLE, 0, 0)
            return f
        magic, state, _, pos, _ = struct.unpack_from(_POS_FORMAT, buf, 0)
        if (n != _POS_SIZE or magic != _POS_MAGIC or state > REWINDING
                or not stamped(buf, _POS_CRC)):
            self.ok = False  # the position is unknown: self_test() fails (ALM-5)
            return f
        self.pos = pos
        self.interrupted = state
        return f

    def _save(self, state, pos, before):
        buf = self.buf
        struct.pack_into(_POS_FORMAT, buf, 0, _POS_MAGIC, state, 0, pos, before)
        stamp(buf, _POS_CRC)
        f = self.file
        f.seek(0)
        f.write(buf)
        f.flush()

    def _run(self, forward, count, to_home):
        """count microsteps; with to_home, stop early when the home switch closes. A driver
        fault stops it too (ALM-7): returns the microsteps made."""
        self._dir(self.forward if forward else 1 - self.forward)
        self._enable(0)
        step = self._step
        delay = self._delay
        us = self.step_us
        feed = self._feed
        home = self._home if to_home else None
        fault = self._fault
        delay(2)  # DIR setup time before the first STEP edge
        i = 0
        while i < count:
            if home is not None and home() == 0:
                break
            if fault is not None and fault() == 0:
                break
            step(1)
            delay(2)
            step(0)
            delay(us)
            i += 1
            if feed is not None and not i % _FEED_EVERY:
                feed()
        self._enable(1)
        return i

    def step(self, n):
        """Push the plunger n insulin pulses forward."""
        if n <= 0:
            return
        before = self.pos
        target = before + n
        self._save(MOVING, target, before)  # counted before it moves (see class doc)
        self.pos = target
        want = n * self.microsteps + self.slack
        done = self._run(1, want, False)
        if done < want:  # the driver faulted: count only whole pulses that moved
            moved = (done - self.slack) // self.microsteps if done > self.slack else 0
            self.slack = 0 if done >= self.slack else self.slack - done
            self.pos = before + moved
            self._save(IDLE, self.pos, self.pos)
            return
        self.slack = 0
        self._save(IDLE, target, target)

    def position(self):
        return self.pos

    def rewind(self):
        """Back to home (position 0): the counted distance, or until the home switch."""
        before = self.pos
        self._save(REWINDING, before, before)  # a cut keeps the old count: no delivery
        count = before * self.microsteps - self.slack
        if count < 0:
            count = 0
        if self._home is not None:
            self._run(0, count + self.home_margin, True)
            self.home_found = self._home() == 0
            if not self.home_found:
                self.ok = False  # switch never closed: motor or switch fault
        else:
            self._run(0, count, False)
        self.slack = 0
        self.pos = 0
        self.interrupted = IDLE
        self._save(IDLE, 0, 0)

    def relieve(self):
        """Back off line pressure by relieve_steps microsteps; the position is unchanged
        (the next step() first takes the slack up again)."""
        n = self.relieve_steps
        if n > 0:
            self._run(0, n, False)
            self.slack += n

    def fault(self):
        """The driver signals a fault now (its fault output is low)."""
        return self._fault is not None and self._fault() == 0

    def self_test(self):
        return self.ok and not self.fault()


# --------------------------------------------------------------------------- sensors


def mean_of(read, samples):
    """Integer mean of `samples` ADC reads (allocation-free: called from the tick)."""
    total = 0
    i = 0
    while i < samples:
        total += read()
        i += 1
    return total // samples


class ForceSensor:
    """Line pressure from a force sensor on the plunger (FSR divider or load-cell amplifier
    on an ADC): kPa = (raw - zero) * num // den, raw the mean of `samples` read_u16()
    readings. Calibrate zero with no load and num/den with a known force over the plunger
    area (docs/boards.md)."""

    def __init__(self, adc, zero, num, den, samples=4):
        self._read = adc.read_u16
        self.zero = zero
        self.num = num
        self.den = den
        self.samples = samples

    def read(self):
        raw = mean_of(self._read, self.samples)
        if raw <= self.zero:
            return 0
        return (raw - self.zero) * self.num // self.den


def curve_percent(mv, mvs, pcts):
    """Battery percent for mv through a discharge curve given as points (mvs[i], pcts[i])
    with mvs descending, linear between points, clamped at both ends; integers only."""
    if mv >= mvs[0]:
        return pcts[0]
    last = len(mvs) - 1
    if mv <= mvs[last]:
        return pcts[last]
    i = 1
    while mvs[i] > mv:
        i += 1
    # mvs[i - 1] > mv >= mvs[i]
    hi_mv = mvs[i - 1]
    lo_mv = mvs[i]
    lo_pct = pcts[i]
    return lo_pct + (mv - lo_mv) * (pcts[i - 1] - lo_pct) // (hi_mv - lo_mv)


class BatteryGauge:
    """Battery percent from an ADC through a divider and a discharge curve.

    mV = mean(raw) * num // den, where raw is read_u16() (0..65535) or, with
    microvolts=True, read_uv() (ESP32: factory-calibrated). `curve` is a sequence of
    (mV, percent) points, highest voltage first.
    """

    def __init__(self, adc, curve, num, den, microvolts=False, samples=8):
        self._read = adc.read_uv if microvolts else adc.read_u16
        self.num = num
        self.den = den
        self.samples = samples
        self.mvs = array("i", [p[0] for p in curve])
        self.pcts = array("i", [p[1] for p in curve])
        for i in range(1, len(self.mvs)):
            if self.mvs[i] >= self.mvs[i - 1] or self.pcts[i] > self.pcts[i - 1]:
                raise ValueError("discharge curve must fall")

    def millivolts(self):
        return mean_of(self._read, self.samples) * self.num // self.den

    def percent(self):
        return curve_percent(self.millivolts(), self.mvs, self.pcts)


# --------------------------------------------------------------------------- annunciator

# What each priority sounds and shows is firmware/signals.py (IEC 60601-1-8, ALM-8); this
# driver plays it on a PWM buzzer and flashes the LED, one advance() per service-timer period.
CHIRP_MS = 100  # self-test beep at power-on
DUTIES = (8192, 16384, 32768)  # duty_u16 per escalation level: louder as it escalates


class Annunciator:
    """Piezo buzzer on a PWM pin plus an alarm LED (one pin, or red/green/blue pins).

    sound(priority, level) starts the priority's auditory signal: its burst, repeated every
    BURST_INTERVAL_MS until silence() or the next sound(); louder per escalation level.
    led(priority) starts its visual signal: the LED flashes at the priority's rate (steady
    for low); an RGB LED also shows its colour. advance(), called every `period_ms` by the
    board's service timer, plays both. There is no acoustic feedback: self_test() sounds a
    chirp for the user to hear and reports False only if the PWM cannot be driven.
    """

    def __init__(self, pwm, led, period_ms=20, rgb=None):
        self.pwm = pwm
        self._duty = pwm.duty_u16
        self._freq = pwm.freq
        self._led = led.value if led is not None else None
        self._rgb = tuple(p.value for p in rgb) if rgb is not None else ()
        self.period = period_ms
        self.burst = BURSTS[0]
        self.index = 0
        self.left = 0  # ms left in the current tone, pause or gap
        self.gap = 0  # ms from the end of a burst to the start of the next; 0: no repeat
        self.volume = 0
        self.active = False
        self.flash_on = 0
        self.flash_off = 0
        self.flash_left = 0
        self.lit = 0
        self.colour = 0
        self._duty(0)
        self._show(0, 0)

    def _start(self, burst, freq, volume, gap):
        self.active = False  # the timer callback leaves it alone while it changes
        self.burst = burst
        self.index = 0
        self.left = burst[0]
        self.gap = gap
        self.volume = volume
        self._freq(freq)
        self._duty(volume)
        self.active = True

    def sound(self, priority, level):
        if priority <= 0 or priority >= len(BURSTS):
            return
        if level < 0:
            level = 0
        elif level > 2:
            level = 2
        interval = BURST_INTERVAL_MS[priority]
        gap = interval - burst_ms(priority) if interval else 0
        self._start(BURSTS[priority], TONE_HZ[priority], DUTIES[level], gap)

    def silence(self):
        self.active = False
        self._duty(0)

    def advance(self, _timer=None):
        """One service-timer period of the running signal and LED (timer callback)."""
        if self.flash_off:
            self.flash_left -= self.period
            if self.flash_left <= 0:
                self.lit ^= 1
                self.flash_left += self.flash_on if self.lit else self.flash_off
                self._show(self.lit, self.colour)
        if not self.active:
            return
        self.left -= self.period
        if self.left > 0:
            return
        burst = self.burst
        i = self.index + 1
        if i == len(burst):  # the burst ended: wait for the next one
            if not self.gap:
                self.silence()
                return
            self.index = i
            self.left += self.gap
            self._duty(0)
            return
        if i > len(burst):
            i = 0
        self.index = i
        self.left += burst[i]
        self._duty(0 if i & 1 else self.volume)

    def sounding(self):
        return self.active and self.index < len(self.burst) and not self.index & 1

    def _show(self, lit, priority):
        if self._led is not None:
            self._led(lit)
        if self._rgb:
            colour = RGB[priority] if lit else RGB[0]
            for i in range(3):
                self._rgb[i](colour[i])

    def led(self, priority):
        on, off = FLASH[priority]
        self.colour = priority
        self.flash_off = 0  # the timer callback leaves it alone while it changes
        self.lit = 1 if priority > 0 else 0
        self.flash_on = on
        self.flash_left = on
        self._show(self.lit, priority)
        self.flash_off = off

    def self_test(self):
        try:
            self._start((CHIRP_MS,), TONE_HZ[3], DUTIES[0], 0)
        except (OSError, ValueError):
            return False
        return True


# --------------------------------------------------------------------------- buttons


class Buttons:
    """Debounced push buttons (to ground, pull-ups on) by polling, no pin IRQs.

    A level change counts once it has been stable for debounce_ms. poll() samples the
    pins: from the board's service timer (timer=True) or, without one, from pressed()
    itself. The timer only increments per-button press counters and pressed() only
    remembers what it has seen, so neither can lose the other's update.
    """

    def __init__(self, pins, masks, now_ms, debounce_ms=40, active=0, timer=False):
        self.pins = tuple(pins)
        self.masks = tuple(masks)
        self.now_ms = now_ms
        self.debounce_ms = debounce_ms
        self.active = active
        self.timer = timer
        n = len(self.pins)
        self.n = n
        now = now_ms()
        self.raw = bytearray(n)
        self.stable = bytearray(n)
        self.since = array("i", [now] * n)
        self.count = bytearray(n)
        self.seen = bytearray(n)
        for i in range(n):
            v = 1 if self.pins[i].value() == active else 0
            self.raw[i] = v
            self.stable[i] = v  # held at start-up: not a press

    def held(self, i=0):
        """Button i pressed right now, undebounced (for start-up checks)."""
        return self.pins[i].value() == self.active

    def poll(self, _timer=None):
        now = self.now_ms()
        pins = self.pins
        raw = self.raw
        stable = self.stable
        i = 0
        while i < self.n:
            v = 1 if pins[i].value() == self.active else 0
            if v != raw[i]:
                raw[i] = v
                self.since[i] = now
            elif v != stable[i] and ticks_diff(now, self.since[i]) >= self.debounce_ms:
                stable[i] = v
                if v:
                    self.count[i] = (self.count[i] + 1) & 0xFF
            i += 1

    def pressed(self):
        if not self.timer:
            self.poll()
        mask = 0
        count = self.count
        seen = self.seen
        i = 0
        while i < self.n:
            if count[i] != seen[i]:
                seen[i] = count[i]
                mask |= self.masks[i]
            i += 1
        return mask


# --------------------------------------------------------------------------- storage


class FlashStorage:
    """Firmware storage regions as files on the internal flash filesystem (LittleFS on the
    Pico and ESP32 ports), one file per region in `folder`, preallocated to its size
    (erased flash reads 0xFF, so new files are filled with 0xFF). The files stay open:
    read() is seek + readinto, write() is seek + write + flush of the caller's bytearray,
    no allocation. LittleFS is copy-on-write: a write cut by power loss leaves the old
    bytes of the file (the firmware's records carry their own CRCs as well)."""

    def __init__(self, folder, sizes=REGION_SIZES):
        self.folder = folder
        self.sizes = tuple(sizes)
        makedirs(folder)
        self.files = []
        fill = b"\xff" * 256
        for region in range(len(self.sizes)):
            path = self.path(region)
            size = self.sizes[region]
            try:
                have = os.stat(path)[6]
            except OSError:
                have = -1
            if have < size:
                with open(path, "ab" if have >= 0 else "wb") as f:
                    left = size - max(have, 0)
                    while left > 0:
                        n = min(left, len(fill))
                        f.write(fill[:n])
                        left -= n
            self.files.append(open(path, "r+b"))

    def path(self, region):
        return join(self.folder, "r%d" % region)

    def size(self, region):
        return self.sizes[region]

    def _check(self, region, offset, n):
        if offset < 0 or offset + n > self.sizes[region]:
            raise ValueError("outside region")

    def read(self, region, offset, buf):
        self._check(region, offset, len(buf))
        f = self.files[region]
        f.seek(offset)
        if f.readinto(buf) != len(buf):
            raise OSError(5)  # EIO: the region file is shorter than it should be

    def write(self, region, offset, buf):
        self._check(region, offset, len(buf))
        f = self.files[region]
        f.seek(offset)
        f.write(buf)
        f.flush()

    def self_test(self):
        """Every region file has its size, and a scratch file reads back what was written."""
        try:
            for region in range(len(self.sizes)):
                if os.stat(self.path(region))[6] < self.sizes[region]:
                    return False
            probe = bytes(range(0, 256, 17))
            path = join(self.folder, "selftest")
            with open(path, "wb") as f:
                f.write(probe)
            with open(path, "rb") as f:
                back = f.read()
            os.remove(path)
            return back == probe
        except OSError:
            return False


# --------------------------------------------------------------------------- serial


class _Writer:
    """write(buf, n) for streams that only write whole buffers."""

    def __init__(self, write):
        self._write = write
        self._buf = b""
        self._view = memoryview(self._buf)

    def write(self, buf, n):
        if n >= len(buf):
            return self._write(buf)
        if buf is not self._buf:  # the link always passes the same buffer
            self._buf = buf
            self._view = memoryview(buf)
        return self._write(self._view[:n])


class StreamSerial(_Writer):
    """Protocol bytes over a pair of streams polled with select.poll: the Pico's USB CDC
    (sys.stdin.buffer, sys.stdout.buffer). Reads a byte at a time while input is waiting,
    so it never blocks. The board turns off Ctrl-C (micropython.kbd_intr(-1)): 0x03 is
    an ordinary byte in frames."""

    def __init__(self, rx, tx, poller):
        _Writer.__init__(self, tx.write)
        self._readinto = rx.readinto
        self._ipoll = poller.ipoll
        self.one = bytearray(1)

    def wait(self, ms):
        for _ in self._ipoll(ms):
            return True
        return False

    def readinto(self, buf):
        one = self.one
        size = len(buf)
        n = 0
        while n < size and self.wait(0):
            if not self._readinto(one):
                break
            buf[n] = one[0]
            n += 1
        return n


class UartPort:
    """A machine.UART's receive side as a byte port: readinto(buf) never blocks (0 when
    nothing is waiting). The sensor link reads its UART through it (SNS-4)."""

    def __init__(self, uart):
        self._any = uart.any
        self._readinto = uart.readinto

    def readinto(self, buf):
        n = self._any()
        if n <= 0:
            return 0
        if n > len(buf):
            n = len(buf)
        got = self._readinto(buf, n)
        return got if got else 0


class UartSerial(_Writer, UartPort):
    """Protocol bytes over a machine.UART (ESP32): never blocks on read."""

    def __init__(self, uart, poller):
        _Writer.__init__(self, uart.write)
        UartPort.__init__(self, uart)
        self._ipoll = poller.ipoll

    def wait(self, ms):
        if self._any():
            return True
        for _ in self._ipoll(ms):
            return True
        return False


# --------------------------------------------------------------------------- sensor link

SENSOR_BAUD = 115200
SENSOR_RXBUF = 512  # a minute of back-to-back frames at most; readings come every 5 min


def sensor_link(uart, clock):
    """hw.radio on the sensor UART (SNS-4): CGM Measurement records framed as in
    firmware/cgm_link.py, from a transmitter, a BLE-to-UART bridge or `pumpctl sensor`
    on a USB-serial adapter. The pump pairs it with the sensor_id setting. `uart` None (a
    board without a sensor UART): no sensor link, and its modules are not imported (heap)."""
    if uart is None:
        return None
    from firmware.cgm_link import CgmLink

    return CgmLink(UartPort(uart), clock)


# --------------------------------------------------------------------------- real-time clock

DS3231_ADDRESS = 0x68
_DS_REGISTERS = 16  # 0x00-0x06 time, 0x07-0x0D alarms, 0x0E control, 0x0F status
_DS_YEAR = 0x06
_DS_CONTROL = 0x0E
_DS_STATUS = 0x0F
_DS_EOSC = 0x80  # control: 1 stops the oscillator while on the backup cell
_DS_OSF = 0x80  # status: the oscillator stopped at some time: the time is not trustworthy
_DS_CENTURY = 0x80  # month register: the year register rolled over from 99 (2100 on)
_DS_12H = 0x40  # hours register: 12-hour mode (bit 5 then means PM)
_DS_PM = 0x20
_DS_TRIES = 3  # transfers tried before a bus error counts: a glitch must not lose the time
_DS_UNSET = b"\x00"  # year register 00: 2000, before the epoch: a time now() rejects
RTC_END_DAY = 29220  # 2100-01-01: the driver's range ends with the century bit


def bcd(b):
    """A BCD byte -> 0..99, or -1 when a nibble is not a decimal digit."""
    lo = b & 0x0F
    hi = b >> 4
    if lo > 9 or hi > 9:
        return -1
    return hi * 10 + lo


def to_bcd(n):
    """0..99 -> its BCD byte."""
    return (n // 10) << 4 | n % 10


def ds3231_seconds(regs):
    """UTC seconds since 2020-01-01 from DS3231 time registers regs[0:7] (seconds, minutes,
    hours, weekday, date, month with century bit, year), or -1 when they hold no valid
    date and time in 2020 .. 2099 (the weekday is not checked: nothing uses it)."""
    s = bcd(regs[0])
    mi = bcd(regs[1])
    h = regs[2]
    if h & _DS_12H:
        h12 = bcd(h & 0x1F)
        if h12 < 1 or h12 > 12:
            return -1
        h = h12 % 12 + (12 if h & _DS_PM else 0)
    else:
        h = bcd(h)
    if regs[5] & _DS_CENTURY:
        return -1  # the chip counted past 2099: outside the range
    d = bcd(regs[4])
    m = bcd(regs[5])
    y = bcd(regs[6]) + 2000
    if (s < 0 or s > 59 or mi < 0 or mi > 59 or h < 0 or h > 23 or m < 1 or m > 12
            or y < 2020 or d < 1 or d > days_in_month(y, m)):
        return -1
    return day_of(y, m, d) * 86400 + h * 3600 + mi * 60 + s


def ds3231_registers(utc_s, regs):
    """Fill regs[0:7] with the DS3231 time registers (24-hour mode) for UTC seconds since
    2020-01-01. ValueError outside 2020-01-01 .. 2099-12-31."""
    day = utc_s // 86400
    if utc_s < 0 or day >= RTC_END_DAY:
        raise ValueError("RTC time outside 2020-01-01 .. 2099-12-31")
    s = utc_s - day * 86400
    y, m, d = date_of(day)
    regs[0] = to_bcd(s % 60)
    regs[1] = to_bcd(s // 60 % 60)
    regs[2] = to_bcd(s // 3600)
    regs[3] = weekday(day) + 1  # 1 = Monday; the DS3231 only counts it round
    regs[4] = to_bcd(d)
    regs[5] = to_bcd(m)
    regs[6] = to_bcd(y - 2000)


class DS3231:
    """Maxim DS3231 real-time clock with a backup cell on I2C (THR-13): the `rtc` driver
    of firmware/hal.py. Like micropython-lib's drivers it takes the bus (machine.I2C or
    SoftI2C) and imports no `machine`.

    now() -> UTC seconds since 2020-01-01, or -1 when the time is not trustworthy: the
    oscillator-stop flag (OSF) is set (first power-up, backup cell flat or missing during
    an outage, or the oscillator stopped for another reason), the registers hold no valid
    date and time in 2020 .. 2099 (a chip that counted past 2099 sets the century bit),
    or the bus failed on three tries. It never raises OSError. One transfer reads registers
    0x00-0x0F into a preallocated buffer (the chip latches the time at the START, so the
    fields agree with each other): no allocation, except that on 32-bit ports a time from
    2054 on (2**30 s) is a big int.

    set(utc_s) first writes year 00 (2000: a time now() rejects), then the time registers
    in one transfer that ends with the year, then clears OSF and EOSC (so the oscillator
    keeps running on the cell), then reads the time back. A transfer cut anywhere on the
    way therefore leaves a time that reads as unknown, never a mix of old and new fields.
    Returns True when the chip holds the time just written (0..2 s later); False when a
    transfer failed (OSError) or the read-back differs, and then the chip is left marked
    unknown where the bus allows (the next boot asks for the time instead of trusting a
    wrong one). Only a bus that fails from the first byte leaves the old time. It never
    raises OSError; ValueError for utc_s outside 2020-01-01 .. 2099-12-31. It allocates a
    little (one date tuple).

    Both block for I2C transfers (about 0.5 ms each at 400 kHz): call them at boot and when
    the time is set, never from the tick.
    """

    def __init__(self, i2c, address=DS3231_ADDRESS):
        self.address = address
        self._read = i2c.readfrom_mem_into
        self._write = i2c.writeto_mem
        self.regs = bytearray(_DS_REGISTERS)
        self.time = bytearray(7)
        self.cs = bytearray(2)  # control, status

    def present(self):
        """A device answers at the address (the status register can be read)."""
        try:
            self._read(self.address, _DS_STATUS, self.cs)
        except OSError:
            return False
        return True

    def now(self):
        regs = self.regs
        for _ in range(_DS_TRIES):
            try:
                self._read(self.address, 0, regs)
            except OSError:
                continue
            if regs[_DS_STATUS] & _DS_OSF:
                return -1
            return ds3231_seconds(regs)
        return -1

    def set(self, utc_s):
        cs = self.cs
        ds3231_registers(utc_s, self.time)  # ValueError before any transfer
        address = self.address
        try:
            self._write(address, _DS_YEAR, _DS_UNSET)
            self._write(address, 0, self.time)
            self._read(address, _DS_CONTROL, cs)
            cs[0] &= ~_DS_EOSC
            cs[1] &= ~_DS_OSF
            self._write(address, _DS_CONTROL, cs)
            if 0 <= self.now() - utc_s <= 2:
                return True
            self._write(address, _DS_YEAR, _DS_UNSET)  # not what was sent: never trust it
        except OSError:
            pass
        return False


def find_rtc(i2c, address=DS3231_ADDRESS):
    """The DS3231 on `i2c`, or None when no device answers at `address`: the board then
    runs without a real-time clock (the time is unset after every power loss, and the
    pump asks for it with a medium alarm) and says so on its console."""
    rtc = DS3231(i2c, address)
    if rtc.present():
        return rtc
    print("micropump: no real-time clock (DS3231) at I2C 0x%02x: the time is lost at "
          "every power loss" % address)
    return None


# --------------------------------------------------------------------------- deploy files


def file_sha256(path):
    h = hashlib.sha256()
    buf = bytearray(512)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf if n == len(buf) else buf[:n])
    return h.digest()


def check_manifest(root=""):
    """True when every file listed in the deploy manifest is there with its sha256 (the
    firmware-hash self-test, ALM-5). False when the manifest is missing, empty or any file
    differs."""
    try:
        with open(join(root, MANIFEST)) as f:
            lines = f.read().split("\n")
    except OSError:
        return False
    count = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            return False
        try:
            if hexlify(file_sha256(join(root, parts[1]))).decode() != parts[0]:
                return False
        except OSError:
            return False
        count += 1
    return count > 0


def firmware_id(root=""):
    """sha256 of the manifest, hex: the firmware hash that host_tools/flash.py verifies."""
    try:
        return hexlify(file_sha256(join(root, MANIFEST))).decode()
    except OSError:
        return ""


def read_key(path):
    """The 32-byte pairing key provisioned at deploy time (SEC-1), or None."""
    try:
        with open(path, "rb") as f:
            key = f.read()
    except OSError:
        return None
    return key if len(key) == 32 else None


def read_provision(path):
    """Settings provisioned at deploy time: lines "setting_id value" -> list of pairs."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    pairs = []
    for line in text.split("\n"):
        parts = line.split()
        if len(parts) == 2:
            pairs.append((int(parts[0]), int(parts[1])))
    return pairs


def apply_provision(hw, path):
    """Apply provisioned settings once, through the firmware's own set_setting (which
    enforces the ranges), then remove the file. Returns [(sid, value, result code)], or
    None when there was nothing to apply. The board resets afterwards."""
    pairs = read_provision(path)
    if pairs is None:
        return None
    from firmware.pump import Pump

    pump = Pump(hw)
    pump.boot()
    results = []
    for sid, value in pairs:
        results.append((sid, value, pump.settings.set(sid, value)))
    os.remove(path)
    return results


def board_main(make_hardware, maintenance, reset, root=""):
    """What a board's main() does at power-on: stay in the REPL when `maintenance()` (the
    ACK button held at reset: a board running the firmware has Ctrl-C off and a watchdog,
    so this is the way back to mpremote), apply provisioned settings once and reset,
    else run the firmware. Ctrl-C is off from here on, on every board's REPL console
    (the Pico's USB CDC, the ESP32's UART0), so no byte there stops the pump (SEC-4)."""
    if maintenance():
        print("micropump: ACK held at reset: maintenance mode, firmware not started")
        return None
    from firmware.main import ctrl_c_off, run

    ctrl_c_off()
    hw = make_hardware(root)
    results = apply_provision(hw, join(root, PROVISION))
    if results is not None:
        for sid, value, code in results:
            if code:
                print("micropump: setting %d = %d refused (result %d)" % (sid, value, code))
        reset()
        return None
    return run(hw)


def assemble(root, clock, parts, serial, pulse_mu, occlusion_kpa, reset_cause, board,
             rtc=None, radio=None):
    """The Hardware a board hands to the firmware: its drivers, the firmware-hash check of
    the deploy manifest and the provisioned pairing key. `parts` is (motor, pressure,
    battery, annunciator, buttons, storage, watchdog); `rtc` a real-time clock or None;
    `radio` the sensor link (sensor_link()) or None."""
    motor, pressure, battery, annunciator, buttons, storage, wdt = parts

    def firmware_ok():
        return check_manifest(root)

    return Hardware(clock, motor, pressure, battery, annunciator, buttons, storage, wdt,
                    serial=serial, pulse_mu=pulse_mu, occlusion_kpa=occlusion_kpa,
                    firmware_ok=firmware_ok, reset_cause=reset_cause,
                    key=read_key(join(root, KEY_FILE)), board=board, rtc=rtc, radio=radio,
                    shared_console=True)  # the bench console on the protocol port


def ack_held(pin):
    """True while the ACK button (to GND, pulled up) is held: maintenance mode at reset."""
    return pin.value() == 0
