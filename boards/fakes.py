"""Simulated drivers: used by the tests and the emulator board, real code like real drivers.

Every method the firmware calls from its tick is allocation-free here too, so the
allocation-free tick can be checked with these parts plugged in.
"""

from array import array

from firmware.compat import TICKS_PERIOD, ticks_diff
from firmware.crc import NATIVE
from firmware.hal import REGION_SIZES, REGIONS, Hardware
from firmware.signals import signal_pulses

# The drivers' copies: the viper byte copy where there is one (firmware/native.py), as a
# board's drivers copy in C, so the ARM figures measure the firmware, not these loops.
copy = None
if NATIVE:
    from firmware.native import copy

_TICKS_MAX = TICKS_PERIOD - 1  # a small int on 32-bit ports, unlike TICKS_PERIOD


class PowerCut(Exception):
    """The supply died: raised by a fake at the chosen instant; the pump process is gone."""


class Clock:
    """Virtual board clock in ms. Starts a few seconds before the 2**30 wrap.

    It also keeps the time that passed in the world (seconds and ms, small ints), which a
    real-time clock (Rtc) reads; an outage advances the world without ticks."""

    def __init__(self, start=TICKS_PERIOD - 5000):
        self.t = start % TICKS_PERIOD
        self.world_s = 0
        self.world_ms = 0

    def ticks_ms(self):
        return self.t

    def advance(self, ms):
        # On 32-bit ports TICKS_PERIOD (2**30) and t + ms near the wrap are big ints, which
        # allocate: stay within small ints for the usual 0 <= ms < 2**30.
        t = self.t
        if 0 <= ms <= _TICKS_MAX:
            room = _TICKS_MAX - t
            self.t = t + ms if ms <= room else ms - room - 1
        else:
            self.t = (t + ms) % TICKS_PERIOD
        self.pass_world(ms)

    def pass_world(self, ms):
        """Time passes in the world (with or without the board running)."""
        w = self.world_ms + ms
        if w >= 1000:
            s = w // 1000
            self.world_s += s
            w -= s * 1000
        self.world_ms = w

    def sleep_ms(self, ms):
        self.advance(ms)


class Line:
    """Infusion line: pressure rises with each pulse pushed against an occlusion."""

    BASE_KPA = 20
    KPA_PER_PULSE = 25
    MAX_KPA = 400

    def __init__(self):
        self.kpa = self.BASE_KPA
        self.occluded = False
        self.pushed_blocked = 0  # pulses pushed while occluded

    def read(self):
        return self.kpa

    def pulses(self, n):
        if self.occluded:
            self.pushed_blocked += n
            kpa = self.kpa + n * self.KPA_PER_PULSE
            self.kpa = kpa if kpa < self.MAX_KPA else self.MAX_KPA
        else:
            self.kpa = self.BASE_KPA

    def relieve(self):
        self.kpa = self.BASE_KPA


class Motor:
    """Plunger: position in pulses from home survives power cuts (like an encoder).

    Driver faults (ALM-7): `faulted` makes the driver signal a fault (fault() True) and
    move nothing; `stall` makes moves silently do nothing (no signal: only the position
    tells)."""

    def __init__(self, line=None):
        self.line = line
        self.pos = 0
        self.odometer = 0  # every pulse ever moved, prime included
        self.relieved = 0
        self.ok = True
        self.faulted = False
        self.stall = False
        self.cut_after = -1  # >= 0: power dies after this many more pulses

    def fault(self):
        return self.faulted

    def step(self, n):
        if self.faulted or self.stall:
            return
        if self.cut_after >= 0 and n > self.cut_after:
            n = self.cut_after
            self.cut_after = -1
            self._move(n)
            raise PowerCut()
        if self.cut_after >= 0:
            self.cut_after -= n
        self._move(n)

    def _move(self, n):
        self.pos += n
        self.odometer += n
        if self.line is not None:
            self.line.pulses(n)

    def position(self):
        return self.pos

    def rewind(self):
        self.pos = 0

    def relieve(self):
        self.relieved += 1
        if self.line is not None:
            self.line.relieve()

    def self_test(self):
        return self.ok and not self.faulted


class Rtc:
    """Real-time clock with a backup cell (THR-13), counting the world time of `clock`.

    now() is -1 until set() and after the backup was removed during an outage (the
    oscillator-stop flag of a DS3231 or PCF8563)."""

    def __init__(self, clock):
        self.clock = clock
        self.base = -1  # UTC seconds at world second 0; -1: time not known
        self.backup = True
        self.drift_s = 0  # extra seconds (a fast or slow crystal, or a wrong setting)
        self.broken = False  # set() fails (a bus error)

    def now(self):
        if self.base < 0:
            return -1
        return self.base + self.clock.world_s + self.drift_s

    def set(self, utc_s):
        """True when written; False (the time not written) while `broken`."""
        if self.broken:
            return False
        self.base = utc_s - self.clock.world_s
        self.drift_s = 0
        return True

    def power_lost(self):
        """The board's supply is off: without backup the RTC forgets the time."""
        if not self.backup:
            self.base = -1


class Battery:
    def __init__(self, level=100):
        self.level = level

    def percent(self):
        return self.level


class Annunciator:
    """Counts annunciations per priority; remembers the last one and the LED.

    With a clock (`now() -> ms`), it also records what a buzzer would play (ALM-8): a ring of
    SEGMENTS signals as (start ms, priority, level, stop ms or -1 while it plays), kept in a
    preallocated array so the tick stays allocation-free; `pulses()` expands them into the
    tone pulses of firmware/signals.py. typecode "q" lets times pass 2**31 ms (unix port).
    """

    SEGMENTS = 64

    def __init__(self, now=None, typecode="i"):
        self.sounds = array("i", [0] * 4)
        self.last_priority = 0
        self.last_level = 0
        self.led_priority = 0
        self.ok = True
        self.now = now
        self.seg = array(typecode, [0] * (4 * self.SEGMENTS))
        self.seg_next = 0  # index of the next segment written
        self.seg_count = 0
        self.playing = -1  # ring index of the segment still playing, -1 none
        self.led_since = 0

    def sound(self, priority, level):
        self.sounds[priority] += 1
        self.last_priority = priority
        self.last_level = level
        if self.now is None:
            return
        t = self.now()
        self._stop(t)
        i = self.seg_next
        seg = self.seg
        seg[4 * i] = t
        seg[4 * i + 1] = priority
        seg[4 * i + 2] = level
        seg[4 * i + 3] = -1
        self.playing = i
        self.seg_next = (i + 1) % self.SEGMENTS
        if self.seg_count < self.SEGMENTS:
            self.seg_count += 1

    def _stop(self, t):
        if self.playing >= 0:
            self.seg[4 * self.playing + 3] = t
            self.playing = -1

    def silence(self):
        if self.now is not None:
            self._stop(self.now())

    def led(self, priority):
        if priority != self.led_priority and self.now is not None:
            self.led_since = self.now()
        self.led_priority = priority

    def self_test(self):
        return self.ok

    def segments(self):
        """Recorded signals, oldest first: [(start, priority, level, stop or -1)]."""
        out = []
        n = self.seg_count
        first = (self.seg_next - n) % self.SEGMENTS
        for k in range(n):
            i = 4 * ((first + k) % self.SEGMENTS)
            out.append((self.seg[i], self.seg[i + 1], self.seg[i + 2], self.seg[i + 3]))
        return out

    def pulses(self, until, since=None):
        """Tone pulses played up to `until` ms: [(start ms, Hz, duration ms, level)]."""
        return signal_pulses(self.segments(), until, since)


class Buttons:
    def __init__(self):
        self.pending = 0

    def press(self, mask):
        self.pending |= mask

    def pressed(self):
        p = self.pending
        self.pending = 0
        return p


class Watchdog:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class SensorLink:
    """What every simulated sensor link shares: an injected reading (`push`) beats the
    schedule, a lost link (`lost = True`) returns nothing, and readings sent are counted."""

    def __init__(self, lost=False):
        # set here, not on first use: a new attribute inside the tick would allocate
        self.pending = 0
        self.lost = lost
        self.sent = 0

    def push(self, value):
        self.pending = value

    def deliver(self, v):
        """The read() result for the scheduled value `v` (0: none). Allocation-free."""
        if self.pending:
            v = self.pending
            self.pending = 0
        if self.lost:
            return 0
        if v:
            self.sent += 1
        return v


class Radio(SensorLink):
    """Sensor link (hw.radio, SNS-1): scripted CGM readings on the board clock.

    `script`: a list of (minute, value) in minute order, minutes counted on the board clock
    from the radio's creation; each entry is returned once by the first read() at or after
    its minute (entries passed over between two reads: only the latest is returned). Or a
    callable(minute) -> value, called once per new minute. Values as the driver contract:
    mg/dL > 0, CGM_WARMUP (-1), CGM_EXPIRED (-2); 0 is nothing. `push(value)` makes the next
    read() return `value` (one injected reading); `lost = True` silences the link (what
    falls due meanwhile is lost). read() is allocation-free with a list script.
    """

    def __init__(self, clock, script=None):
        SensorLink.__init__(self)
        self.clock = clock
        self.last = clock.ticks_ms()
        self.ms = 0  # ms towards the next minute
        self.minute = 0  # board-clock minutes since creation
        self.fn = None
        self.fn_minute = -1
        self.reads = 0
        self.minutes = array("i")
        self.values = array("i")
        self.pos = 0
        if callable(script):
            self.fn = script
        elif script is not None:
            self.load(script)

    def load(self, script):
        self.minutes = array("i", [m for m, _ in script])
        self.values = array("i", [v for _, v in script])
        self.pos = 0

    def read(self):
        now = self.clock.ticks_ms()
        ms = self.ms + ticks_diff(now, self.last)
        self.last = now
        if ms >= 60000:
            self.minute += ms // 60000
            ms = ms % 60000
        self.ms = ms
        self.reads += 1
        minute = self.minute
        v = 0
        n = len(self.minutes)
        while self.pos < n and self.minutes[self.pos] <= minute:
            v = self.values[self.pos]
            self.pos += 1
        if self.fn is not None and minute != self.fn_minute:
            self.fn_minute = minute
            v = self.fn(minute)
        return self.deliver(v)


class Storage:
    """Flash regions in RAM. Can cut power before, during (torn) or after the Nth write,
    or fail writes with OSError."""

    def __init__(self, sizes=REGION_SIZES):
        # regions missing from a shorter `sizes` get their default size
        self.regions = [bytearray(b"\xff" * (sizes[i] if i < len(sizes) else REGION_SIZES[i]))
                        for i in range(REGIONS)]
        self.writes = 0
        self.cut_at = -1  # write number at which power dies
        self.cut_mode = 0  # 0 before the write, 1 torn (half written), 2 after
        self.fail = False
        self.ok = True

    def size(self, region):
        return len(self.regions[region])

    def read(self, region, offset, buf):
        data = self.regions[region]
        if copy is not None:
            copy(buf, 0, data, offset, len(buf))
            return
        for i in range(len(buf)):
            buf[i] = data[offset + i]

    def write(self, region, offset, buf):
        if self.fail:
            raise OSError(5)
        self.writes += 1
        n = len(buf)
        if self.writes == self.cut_at:
            if self.cut_mode == 0:
                raise PowerCut()
            if self.cut_mode == 1:
                n = n // 2
        data = self.regions[region]
        if copy is not None:
            copy(data, offset, buf, 0, n)
        else:
            for i in range(n):
                data[offset + i] = buf[i]
        if self.writes == self.cut_at:
            raise PowerCut()

    def self_test(self):
        return self.ok


class Serial:
    """The host end of a serial cable, in preallocated ring buffers (allocation-free).

    Test code calls send(data) (host -> pump) and take() (pump -> host, allocates);
    the firmware calls readinto(buf) and write(buf, n) like any serial driver.
    """

    def __init__(self, size=4096):
        self.inq = bytearray(size)
        self.in_head = 0
        self.in_count = 0
        self.out = bytearray(size)
        self.out_count = 0
        self.overflow = 0  # bytes lost because a buffer was full

    def send(self, data):
        inq = self.inq
        size = len(inq)
        n = len(data)
        i = 0
        while i < n:
            if self.in_count == size:
                self.overflow += n - i
                return
            inq[(self.in_head + self.in_count) % size] = data[i]
            self.in_count += 1
            i += 1

    def readinto(self, buf):
        inq = self.inq
        size = len(inq)
        n = len(buf)
        if n > self.in_count:
            n = self.in_count
        i = 0
        head = self.in_head
        if copy is not None:
            first = size - head if n > size - head else n  # up to the end of the ring
            copy(buf, 0, inq, head, first)
            copy(buf, first, inq, 0, n - first)
            head = (head + n) % size
            i = n
        while i < n:
            buf[i] = inq[head]
            head += 1
            if head == size:
                head = 0
            i += 1
        self.in_head = head
        self.in_count -= n
        return n

    def write(self, buf, n):
        out = self.out
        i = 0
        c = self.out_count
        size = len(out)
        if copy is not None:
            m = n if n <= size - c else size - c
            copy(out, c, buf, 0, m)
            self.out_count = c + m
            self.overflow += n - m
            return m
        while i < n:
            if c == size:
                self.overflow += n - i
                break
            out[c] = buf[i]
            c += 1
            i += 1
        self.out_count = c
        return i

    def take(self):
        """Everything the pump wrote since the last take()."""
        data = bytes(self.out[:self.out_count])
        self.out_count = 0
        return data


class Rig:
    """A bench of simulated parts. The physical parts (motor, storage, battery, line)
    survive a power cut; `hardware()` builds a fresh Hardware for a reboot."""

    def __init__(self, pulse_mu=50, clock_start=TICKS_PERIOD - 5000, storage_sizes=REGION_SIZES):
        self.clock = Clock(clock_start)
        self.line = Line()
        self.motor = Motor(self.line)
        self.battery = Battery()
        self.annunciator = Annunciator()
        self.buttons = Buttons()
        self.storage = Storage(storage_sizes)
        self.watchdog = Watchdog()
        self.pulse_mu = pulse_mu
        self.firmware_ok = True
        self.reset_cause = 0
        self.serial = None  # attach a Serial() for the link (kept small on the wasm heap)
        self.key = None  # pairing key handed to the firmware (SEC-1)
        self.emulator = None
        self.radio = None  # a Radio(self.clock, script) for the sensor link (SNS-1)
        self.rtc = Rtc(self.clock)  # set None for a board without a real-time clock

    def outage(self, seconds):
        """The supply is off for `seconds`: the world goes on, the board does not tick."""
        if self.rtc is not None:
            self.rtc.power_lost()
        self.clock.pass_world(seconds * 1000)

    def _firmware_check(self):
        return self.firmware_ok

    def hardware(self):
        return Hardware(self.clock, self.motor, self.line, self.battery, self.annunciator,
                        self.buttons, self.storage, self.watchdog, pulse_mu=self.pulse_mu,
                        serial=self.serial, firmware_ok=self._firmware_check,
                        reset_cause=self.reset_cause, key=self.key, emulator=self.emulator,
                        radio=self.radio, rtc=self.rtc)


class BytePort:
    """A byte stream for firmware/cgm_link.CgmLink (the sensor UART's contract): `feed(data)`
    queues bytes; readinto(buf) hands over what is queued (None when empty), never blocks.
    `most` caps the bytes per readinto (a slow UART)."""

    def __init__(self, size=4096, most=0):
        self.buf = bytearray(size)
        self.head = 0
        self.tail = 0
        self.most = most

    def feed(self, data):
        for b in data:
            if self.tail == len(self.buf):  # compact (tests only; allocation-free anyway)
                n = self.tail - self.head
                self.buf[0:n] = self.buf[self.head:self.tail]
                self.head = 0
                self.tail = n
                if n == len(self.buf):
                    raise OverflowError("BytePort full")
            self.buf[self.tail] = b
            self.tail += 1

    def readinto(self, buf):
        n = self.tail - self.head
        if n <= 0:
            return None
        if n > len(buf):
            n = len(buf)
        if self.most and n > self.most:
            n = self.most
        src = self.buf
        h = self.head
        for i in range(n):
            buf[i] = src[h + i]
        self.head = h + n
        if self.head == self.tail:
            self.head = self.tail = 0
        return n
