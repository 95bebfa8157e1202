"""Emulator board: the firmware, unchanged, on the MicroPython unix port with simulated parts.

    micropython boards/emulator.py --state DIR [--pulse 50] [--reset-cause N]
        [--console-in FD --console-out FD] [--telemetry FD] [--cgm-trace FILE]
        [--patient-in FD --patient-out FD]

Normally started by host_tools/launch.py (`pumpctl emulate`, `make emulate`), which puts
the protocol link (this process's stdin/stdout) and the bench console (two pipe fds) on
pseudo-terminals, restarts this process after a power cut and reads the telemetry lines.

Simulated parts (HW-3). The physical ones survive a power cut in DIR/flash.bin, laid out as
in boards/unix.py (storage regions, then plunger position, odometer, battery level):
- plunger and reservoir: boards/fakes.Motor, position and odometer saved on every move;
- line pressure: boards/fakes.Line, pressure rises by 25 kPa per pulse pushed against an
  occlusion (FAULT_OCCLUSION) up to 400 kPa, back to 20 kPa when a pulse flows or the
  firmware relieves it; the firmware alarms at 150 kPa after 2.5 U (ALM-3);
- battery: starts at 100 %; drains 0.002 % per motor pulse plus 0.05 % per hour of
  virtual time (a 200 U reservoir at 50 mU per pulse is 8 % of the battery, three days of
  standby 3.6 %), both times FAULT_BATTERY_DRAIN / 1000; kept in millionths of a percent,
  reported rounded up to whole percent (0 only when empty) (BAT-1);
- sensor link (hw.radio, SNS-1): readings from a trace file (--cgm-trace FILE: CSV lines
  `minute,mg_dl`, minutes of virtual time from launch, ascending; a header line and `#`
  comments are skipped; mg_dl may be -1 warm-up or -2 expired). Every 5 virtual minutes
  (minute 0, 5, 10, ...) the link sends the trace's row at or before that minute if it is
  less than 5 min old (a gap in the trace is a gap in the readings; after the last row the
  sensor is silent). FAULT_SENSOR_LOSS 1 silences it (readings due meanwhile are lost);
  FAULT_GLUCOSE sends one reading (mg/dL, or -1 / -2) at the firmware's next poll. Its
  position in the trace survives power cuts (world.json "sensor_ms");
- virtual patient (--patient-out FD --patient-in FD, instead of a trace; the launcher hosts
  the patient model, host_tools/patient.py): at every emission (every 5 virtual minutes,
  in lockstep and in real time alike) the link writes 8 bytes, struct "<ii" (virtual
  minute of the emission, insulin in mU the plunger pushed into the patient since the
  last exchange) and blocks until the launcher answers 4 bytes, struct "<i" (the
  patient's CGM value in mg/dL, 0 for none). The exchange happens while the sensor link
  is silenced too (the patient lives on; the reading is lost). Insulin into the patient:
  motor pulses while delivery runs; pulses while the pump is suspended are priming (the
  set is off the body) and go nowhere. Insulin not yet reported survives a power cut
  (world.json "patient_mu");
- buzzer and LED: boards/fakes.Annunciator (annunciations per priority, LED priority) on
  the virtual clock: telemetry carries the signals it played, the tone pulses of the last
  minute (ALM-8, firmware/signals.py) and the LED's colour and flash rate;
- buttons: FAULT_BUTTON_PRESS presses once; FAULT_BUTTON_STUCK holds buttons down, which
  this board's driver reports as a press at every scan (each tick), like a held key: a
  stuck ACK acknowledges every alarm as soon as it is raised (the firmware has no
  stuck-button detection yet);
- flash: the storage regions in DIR/flash.bin; FAULT_STORAGE_FAIL 1 makes writes to the
  pump's data (settings, state, history, totals) fail with OSError and the storage
  self-test fail (it lasts across power cuts until healed with 0). The link's region (auth
  counter, recent command ids) stays writable: the link persists the counter before any
  command acts, so a failing counter would refuse the emulator's own messages too and
  leave no way to heal the fault;
- watchdog: fires when it was not fed for 8 s of virtual time while the firmware read the
  clock 1000 times (a loop that runs but does not feed; a host that stalls does not fire
  it): the process exits with EXIT_WATCHDOG and the launcher restarts it with reset
  cause RESET_WATCHDOG;
- clock: virtual, starting 2 to 8 s (from the seed) before the 2**30 tick wrap. Real time,
  a speed factor, or lockstep (CLK_* in protocol/spec.py). Lockstep runs ticks of 1 s of
  virtual time back to back, each 1 s +- the jitter (default 20 ms; the total is exact).
- power: FAULT_POWER_CUT ends the process (EXIT_POWER_CUT) at a chosen virtual instant;
  the launcher starts it again from DIR/flash.bin on the same ptys, so the host sees a
  reboot (HELLO boots + 1). FAULT_OUTAGE s makes the next power cut an outage of s
  seconds: the world's time (world.json "world_ms", which the RTC and the sensor's
  transmitter follow) moves on by s while the board is off (no real waiting);
- real-time clock (hw.rtc, THR-13): counts the world's virtual time, also while the
  board is off; unset (-1) until the firmware sets the time; FAULT_RTC_BACKUP 0 removes
  its backup cell, so the next power cut makes it forget the time (1 puts it back);
- motor driver: FAULT_MOTOR MOTOR_FAULT_PIN makes the driver signal a fault and move
  nothing, MOTOR_STALL makes it move nothing without a signal (ALM-7); MOTOR_OK heals
  it (kept across power cuts).
- bench console: firmware/console.py on the second pty (Runner in firmware/main.py), and on
  the protocol pty beside the frames (hw.shared_console, firmware/demux.py, issue 17);
- telemetry: one JSON line a second of real time on the telemetry fd: the pump's status()
  plus the simulated parts (battery in millionths of a percent, plunger, line pressure,
  LED and buzzer, faults, clock), for `pumpctl emulate`'s live table;
- heap check (launch(heap_check=True)): every tick of CLK_ADVANCE (and the simulated
  parts' share of the time step) runs under micropython.heap_lock(), with these drivers
  plugged in; a tick that allocates ends the process (EXIT_ALLOC, traceback on stderr),
  and the launcher leaves it down.

The environment (clock mode, speed, jitter, seed and random state, fault settings except
a pending power cut) is kept in DIR/world.json, so it survives the power
cuts it simulates. host_tools/launch.py writes a fresh one at each launch.

Emulator-only messages (SEC-3; other boards refuse them, their Hardware has no emulator):
emu_clock(op, ms) and emu_fault(fault, value), answered by Emulator.command(). Answers:
OK with detail = the previous value of what changed (speed in per mille, 0 for lockstep;
a fault's previous setting), for CLK_ADVANCE and CLK_UNTIL_EVENT the virtual ms run, for
FAULT_POWER_CUT the ms until the cut. E_BAD_ARG detail 1: unknown op or fault id;
E_OUT_OF_RANGE detail 2: value out of range.

While CLK_ADVANCE runs (72 h of virtual time take a few seconds), the link keeps working:
queued events go out as they happen and queries are answered between ticks; commands that
arrive meanwhile (a host's retry of the ADVANCE itself) wait until it is done. A power cut
during an ADVANCE ends it: after the reboot a retry of it (same cmd_id) is answered as a
duplicate, OK with detail = the virtual ms run up to the pump's last state save (0 if none
since the run started). Once a power cut is due, nothing more is read from the host.
"""

import sys

# the repository root, so `firmware`, `boards` and `protocol` import as packages
sys.path.insert(0, (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/..")

import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

from micropython import heap_lock, heap_unlock  # noqa: E402

from boards.fakes import Annunciator, Buttons, Line, Motor, SensorLink  # noqa: E402
from boards.unix import BOARD_FMT, BOARD_MAGIC, FileStorage, read_key  # noqa: E402
from firmware import main  # noqa: E402
from firmware.compat import TICKS_PERIOD, ticks_diff  # noqa: E402
from firmware.crc import crc16  # noqa: E402
from firmware.hal import R_LINK_A, R_LINK_B, Hardware  # noqa: E402
from firmware.pump import S_BOOTS, S_TIME_SET  # noqa: E402
from firmware.signals import COLOUR, FLASH  # noqa: E402
from firmware.wire import COBS_MAX, Decoder  # noqa: E402
from protocol import spec as S  # noqa: E402

EXIT_POWER_CUT = 75  # the launcher restarts the board (reset cause power-on)
EXIT_WATCHDOG = 76  # the launcher restarts the board (reset cause watchdog)
EXIT_ALLOC = 3  # heap_check: a tick allocated (the launcher does not restart the board)

WORLD_FILE = "world.json"
STEP_MS = 1000  # lockstep tick
JITTER_MS = 20
JITTER_MAX = 500
SERVICE_STEPS = 64  # lockstep ticks between two looks at the link during an ADVANCE
WDT_MS = 8000
WDT_READS = 1000  # clock reads without a feed: the loop runs but does not feed
WAIT_CAP_MS = 250  # longest real-time wait for input (telemetry keeps flowing)
TELEMETRY_MS = 1000
SPEED_MAX = 10000000  # per mille: 10,000 times real time

# battery model, millionths of a percent (BAT-1)
BATTERY_FULL = 100000000
BATTERY_PER_PULSE = 2000  # 0.002 %
BATTERY_PER_HOUR = 50000  # 0.05 %
HOUR_MS = 3600000

RX_SIZE = 16384
HOLD_SIZE = COBS_MAX + 16

# fault id -> (world key, min, max)
FAULT_RANGES = {
    S.FAULT_OCCLUSION: ("occluded", 0, 1),
    S.FAULT_BATTERY_LEVEL: (None, 0, 100),
    S.FAULT_BATTERY_DRAIN: ("drain", 0, 1000000),
    S.FAULT_SENSOR_LOSS: ("sensor_loss", 0, 1),
    S.FAULT_BUTTON_STUCK: ("stuck", 0, 255),
    S.FAULT_BUTTON_PRESS: (None, 0, 255),
    S.FAULT_STORAGE_FAIL: ("storage_fail", 0, 1),
    S.FAULT_DROP_RX: ("drop_rx", 0, 1000),
    S.FAULT_DROP_TX: ("drop_tx", 0, 1000),
    S.FAULT_CORRUPT_RX: ("corrupt_rx", 0, 1000),
    S.FAULT_CORRUPT_TX: ("corrupt_tx", 0, 1000),
    S.FAULT_POWER_CUT: (None, -1, 0x7FFFFFFF),
    S.FAULT_SEED: ("seed", -0x80000000, 0x7FFFFFFF),
    S.FAULT_GLUCOSE: (None, S.CGM_EXPIRED, S.CGM_HIGH),
    S.FAULT_OUTAGE: ("outage_s", 0, 400 * 86400),
    S.FAULT_RTC_BACKUP: ("rtc_backup", 0, 1),
    S.FAULT_MOTOR: ("motor", S.MOTOR_OK, S.MOTOR_STALL),
}
CGM_EVERY_MS = 300000  # a reading every 5 virtual minutes

DEFAULT_WORLD = {
    "speed": 1000,  # per mille of real time; 0 = lockstep
    "jitter": JITTER_MS,
    "seed": 1,
    "rng": 0,  # random state (0: derive from the seed)
    "occluded": 0,
    "drain": 1000,
    "sensor_loss": 0,
    "stuck": 0,
    "storage_fail": 0,
    "drop_rx": 0,
    "drop_tx": 0,
    "corrupt_rx": 0,
    "corrupt_tx": 0,
    "heap_check": 0,  # 1: every CLK_ADVANCE tick runs under micropython.heap_lock()
    "sensor_ms": 0,  # virtual ms of the sensor link's trace (kept across power cuts)
    "patient_mu": 0,  # insulin delivered, not yet reported to the virtual patient
    "world_ms": 0,  # virtual ms the world has run before this boot, outages included
    "outage_s": 0,  # the next power cut keeps the board off this long (one shot)
    "rtc_base": -1,  # the RTC's UTC seconds at world time 0 (-1: it does not know the time)
    "rtc_backup": 1,  # 0: the RTC's backup cell is out
    "motor": 0,  # S.MOTOR_*: the driver's fault
}


class Rng:
    """xorshift32: the emulator's own seeded random numbers (faults, jitter, clock start)."""

    def __init__(self, seed):
        self.seed(seed)

    def seed(self, seed):
        s = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
        self.s = s or 0x6D2B79F5

    def below(self, n):
        """0 <= r < n."""
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s % n


class World:
    """The environment of the pump: clock mode and fault settings, kept in world.json."""

    def __init__(self, state_dir):
        self.path = state_dir + "/" + WORLD_FILE
        w = {}
        for k in DEFAULT_WORLD:
            w[k] = DEFAULT_WORLD[k]
        try:
            saved = json.loads(self.load())
            for k in saved:
                if k in w:
                    w[k] = int(saved[k])
        except (OSError, ValueError):
            pass
        if not 0 <= w["jitter"] <= JITTER_MAX:
            w["jitter"] = JITTER_MS
        self.w = w
        self.rng = Rng(w["seed"])
        if w["rng"]:
            self.rng.s = w["rng"]

    def get(self, key):
        return self.w[key]

    def set(self, key, value):
        old = self.w[key]
        self.w[key] = value
        self.save()
        return old

    def save(self):
        self.w["rng"] = self.rng.s
        try:
            self.store(json.dumps(self.w))
        except OSError as exc:
            sys.stderr.write("emulator: cannot save {}: {}\n".format(self.path, exc))

    # where the JSON text lives (a board without files keeps it elsewhere: qemu_arm.py)
    def load(self):
        f = open(self.path)
        text = f.read()
        f.close()
        return text

    def store(self, text):
        tmp = self.path + ".tmp"
        f = open(tmp, "w")
        f.write(text)
        f.close()
        os.rename(tmp, self.path)


class Board:
    """The simulated parts that outlive the firmware's objects: what dies and what stays
    at a power cut is decided here."""

    def __init__(self, state_dir, world):
        self.state_dir = state_dir
        self.world = world
        self.emulator = None  # set by Emulator
        self.clock = None  # the VirtualClock, set by make_hardware
        self.locked = False  # a heap-checked tick is running (Emulator.advance)

    def die(self, code):
        """The supply is gone (or the watchdog bit): persist the environment and the
        physical parts, then end the process; the launcher starts the next boot."""
        if self.locked:  # a power cut can come in the middle of a heap-checked tick
            heap_unlock()  # (only then: unlocking an unlocked heap would lock it)
            self.locked = False
        self.clock.cut_at = -1  # it is happening: reading the clock below must not cut again
        try:
            w = self.world.w
            off_ms = 0
            if code == EXIT_POWER_CUT:
                off_ms = w["outage_s"] * 1000
                w["outage_s"] = 0
                if not w["rtc_backup"]:
                    w["rtc_base"] = -1  # the oscillator stopped: the RTC lost the time
            w["world_ms"] += self.clock.elapsed + off_ms
            radio = getattr(self, "radio", None)
            if radio is not None:
                w["sensor_ms"] = radio.elapsed_ms() + off_ms  # the transmitter ran on
                w["patient_mu"] = radio.infused
            self.motor.save()
            self.world.save()
            sys.stdout.buffer.flush()
        except Exception as exc:  # the process ends either way; say why it was untidy
            sys.stderr.write("emulator: power-down bookkeeping failed: %r\n" % (exc,))
        sys.exit(code)


class VirtualClock:
    """Board clock in ms on the 2**30 ring: real time times a speed factor, or lockstep."""

    def __init__(self, board, start, speed):
        self.board = board
        self.t = start % TICKS_PERIOD
        self.elapsed = 0  # virtual ms since this boot (64-bit small int on the unix port)
        self.speed = speed  # per mille of real time, 0 = lockstep
        self.real = time.ticks_us()
        self.frac = 0
        self.cut_at = -1  # virtual instant (elapsed) of a pending power cut
        self.fed = 0  # elapsed at the last watchdog feed
        self.reads = 0  # clock reads since the last feed
        self.battery = None  # drained per hour of virtual time

    def ticks_ms(self):
        if self.speed:
            self._sync()
        if self.cut_at >= 0 and self.elapsed >= self.cut_at:
            self.board.die(EXIT_POWER_CUT)
        self.reads += 1
        if self.reads > WDT_READS and self.elapsed - self.fed > WDT_MS:
            self.board.die(EXIT_WATCHDOG)
        return self.t

    def _sync(self):
        now = time.ticks_us()
        d = ticks_diff(now, self.real)
        if d <= 0:
            return
        self.real = now
        acc = self.frac + d * self.speed  # us * per mille: 10**6 per virtual ms
        ms = acc // 1000000
        self.frac = acc - ms * 1000000
        if ms:
            self.add(ms)

    def rebase(self):
        """Real time from now on counts (after lockstep or an ADVANCE)."""
        self.real = time.ticks_us()
        self.frac = 0

    def add(self, ms):
        """Virtual time passes: drain, then the power cut and the watchdog."""
        t = self.t + ms
        self.t = t if t < TICKS_PERIOD else t % TICKS_PERIOD
        self.elapsed += ms
        self.battery.elapse(ms)
        if self.cut_at >= 0 and self.elapsed >= self.cut_at:
            self.board.die(EXIT_POWER_CUT)

    def sleep_ms(self, ms):
        if self.speed:
            real = ms * 1000 // self.speed
            time.sleep_ms(real if real < WAIT_CAP_MS else WAIT_CAP_MS)
        else:
            time.sleep_ms(WAIT_CAP_MS)

    def real_ms(self, ms):
        """Real ms to wait for `ms` of virtual time (capped)."""
        if not self.speed:
            return WAIT_CAP_MS
        real = ms * 1000 // self.speed
        return real if real < WAIT_CAP_MS else WAIT_CAP_MS


class EmuRtc:
    """Real-time clock with a backup cell (THR-13) on the world's virtual time."""

    def __init__(self, world, clock):
        self.world = world
        self.clock = clock

    def _world_s(self):
        return (self.world.get("world_ms") + self.clock.elapsed) // 1000

    def now(self):
        base = self.world.get("rtc_base")
        return base + self._world_s() if base >= 0 else -1

    def set(self, utc_s):
        self.world.set("rtc_base", utc_s - self._world_s())
        return True


class EmuWatchdog:
    def __init__(self, clock):
        self.clock = clock
        self.feeds = 0

    def feed(self):
        clock = self.clock
        clock.fed = clock.elapsed
        clock.reads = 0
        self.feeds += 1


class EmuBattery:
    """Drain model (BAT-1): per pulse and per hour, times the drain factor (per mille)."""

    def __init__(self, world):
        self.world = world
        self.level_u = BATTERY_FULL
        self.hour_acc = 0
        self.pulse_acc = 0
        self.mult = world.get("drain")
        self.reported = 100
        self.motor = None  # saves the level with the plunger position

    def percent(self):
        return (self.level_u + 999999) // 1000000

    def set_percent(self, pct):
        self.level_u = pct * 1000000
        self.reported = pct
        self.motor.save()

    def elapse(self, ms):
        acc = self.hour_acc + ms * BATTERY_PER_HOUR * self.mult
        unit = HOUR_MS * 1000
        if acc >= unit:
            drop = acc // unit
            acc -= drop * unit
            self._drop(drop)
        self.hour_acc = acc

    def pulses(self, n):
        acc = self.pulse_acc + n * BATTERY_PER_PULSE * self.mult
        drop = acc // 1000
        self.pulse_acc = acc - drop * 1000
        self._drop(drop)

    def _drop(self, u):
        level = self.level_u - u
        self.level_u = level if level > 0 else 0
        pct = (self.level_u + 999999) // 1000000
        if pct != self.reported:
            self.reported = pct
            if self.motor is not None:
                self.motor.save()


class EmuMotor(Motor):
    """Plunger with its position (an encoder) and the battery level kept in the board area
    of the flash file; each pulse drains the battery."""

    def __init__(self, line, storage, battery):
        Motor.__init__(self, line)
        self.storage = storage
        self.battery = battery
        self.buf = bytearray(16)
        self.radio = None  # the sensor link's virtual patient takes the insulin
        saved = storage.load_board()
        if saved is not None:
            self.pos, self.odometer, battery.level_u = saved
            battery.reported = battery.percent()
        battery.motor = self

    def save(self):
        buf = self.buf
        struct.pack_into(BOARD_FMT, buf, 0, self.pos, self.odometer, self.battery.level_u,
                         BOARD_MAGIC)
        self.storage.put_board(buf)

    def _move(self, n):
        Motor._move(self, n)
        self.battery.pulses(n)
        if self.radio is not None:
            self.radio.pulses(n)

    def step(self, n):
        Motor.step(self, n)
        self.save()

    def set_fault(self, kind):
        self.faulted = kind == S.MOTOR_FAULT_PIN
        self.stall = kind == S.MOTOR_STALL

    def rewind(self):
        Motor.rewind(self)
        self.save()


class EmuStorage(FileStorage):
    """The flash file, with injected write failures (FAULT_STORAGE_FAIL)."""

    def __init__(self, path, world):
        FileStorage.__init__(self, path)
        self.world = world
        self.fail = world.get("storage_fail")

    def write(self, region, offset, buf):
        if self.fail and region != R_LINK_A and region != R_LINK_B:
            raise OSError(5)  # EIO
        at = self.offsets[region] + offset
        self.put(at, buf)

    def put(self, at, buf):
        n = len(buf)
        data = self.data
        for i in range(n):
            data[at + i] = buf[i]
        f = self.file
        f.seek(at)
        f.write(buf)
        f.flush()

    def put_board(self, buf):
        self.put(self.board_at, buf)

    def self_test(self):
        return self.fail == 0


class EmuButtons(Buttons):
    """Presses since the last scan, plus buttons held down (stuck) at every scan."""

    def __init__(self, world):
        Buttons.__init__(self)
        self.stuck = world.get("stuck")

    def pressed(self):
        p = self.pending | self.stuck
        self.pending = 0
        return p


def read_trace(path):
    """(minutes, values) arrays of a CGM trace CSV `minute,mg_dl`. Raises ValueError."""
    from array import array

    minutes = array("i")
    values = array("i")
    f = open(path)
    try:
        n = 0
        for line in f:
            n += 1
            line = line.strip()
            if not line or line[0] == "#" or not (line[0].isdigit() or line[0] == "-"):
                continue
            parts = line.split(",")
            if len(parts) != 2:
                raise ValueError("%s line %d: expected minute,mg_dl" % (path, n))
            m = int(parts[0].strip())
            v = int(parts[1].strip())
            if m < 0 or (len(minutes) and m <= minutes[len(minutes) - 1]):
                raise ValueError("%s line %d: minutes must ascend from 0" % (path, n))
            if v != S.CGM_WARMUP and v != S.CGM_EXPIRED and not 1 <= v <= 1000:
                raise ValueError("%s line %d: mg_dl must be 1..1000, -1 or -2" % (path, n))
            minutes.append(m)
            values.append(v)
    finally:
        f.close()
    return minutes, values


class EmuRadio(SensorLink):
    """Sensor link (hw.radio): trace readings every 5 virtual minutes, injected readings
    (FAULT_GLUCOSE), silenced by FAULT_SENSOR_LOSS. read() is allocation-free."""

    def __init__(self, world, clock=None, trace=None, patient=None, pulse_mu=50):
        from array import array

        SensorLink.__init__(self, world.get("sensor_loss"))
        self.runner = None  # set by make_hardware's caller through Emulator.attach
        self.pulse_mu = pulse_mu
        self.infused = world.get("patient_mu")  # mU not yet reported to the patient
        self.pat_out = self.pat_in = None
        if patient is not None:
            self.pat_out = open("/dev/fd/%d" % patient[0], "wb")
            self.pat_in = open("/dev/fd/%d" % patient[1], "rb")
        self.req = bytearray(8)
        self.ans = bytearray(4)
        self.ans_mv = memoryview(self.ans)
        self.clock = clock
        self.base = world.get("sensor_ms")  # trace time before this boot
        self.minutes, self.values = trace if trace is not None else (array("i"), array("i"))
        self.pos = 0  # next trace row
        self.next_ms = 0  # trace time of the next emission
        self._skip(self.base)

    def elapsed_ms(self):
        return self.base + (self.clock.elapsed if self.clock is not None else 0)

    def _skip(self, t):
        """Emissions before trace time t are past (a reboot)."""
        if t > 0:
            self.next_ms = (t // CGM_EVERY_MS + 1) * CGM_EVERY_MS

    def read(self):
        v = 0
        t = self.elapsed_ms()
        if t >= self.next_ms:
            due = t - (t - self.next_ms) % CGM_EVERY_MS  # the latest emission due
            self.next_ms = due + CGM_EVERY_MS
            minute = due // 60000
            if self.pat_out is not None:
                v = self._exchange(minute)
            else:
                minutes = self.minutes
                n = len(minutes)
                while self.pos < n and minutes[self.pos] <= minute:
                    self.pos += 1
                if self.pos and minute - minutes[self.pos - 1] < 5:
                    v = self.values[self.pos - 1]
        return self.deliver(v)

    def available(self):
        return not self.lost

    # ------------------------------------------------------------------ virtual patient
    def pulses(self, n):
        """The plunger moved n pulses: into the patient while delivery runs (a suspended
        pump only primes, with the set off the body)."""
        runner = self.runner
        if self.pat_out is None or runner is None or runner.pump is None:
            return
        if not runner.pump.stopped():
            self.infused += n * self.pulse_mu

    def _exchange(self, minute):
        """(minute, insulin mU) out, CGM mg/dL back: blocks until the launcher answers.
        Allocation-free (preallocated buffers), so heap-checked ticks may run it."""
        req = self.req
        mu = self.infused
        self.infused = 0
        for i in range(4):
            req[i] = (minute >> (8 * i)) & 0xFF
            req[4 + i] = (mu >> (8 * i)) & 0xFF
        ans = self.ans
        try:
            self.pat_out.write(req)
            got = self.pat_in.readinto(ans)
            while got and got < 4:  # a short read (never seen with 4 bytes on a pipe)
                n = self.pat_in.readinto(self.ans_mv[got:])
                got = got + n if n else 0
        except OSError:
            return 0
        if got != 4:
            return 0  # the launcher went away: no reading
        v = ans[0] | ans[1] << 8 | ans[2] << 16 | ans[3] << 24
        return v - (1 << 32) if v & 0x80000000 else v


class EmuSerial:
    """The protocol link on stdin/stdout, with dropped and corrupted frames (per mille, from
    the seeded random numbers) in both directions. readinto never blocks."""

    def __init__(self, board, world, clock, console_in=None):
        self.board = board
        self.world = world
        self.clock = clock
        self.rng = world.rng
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer
        self.in_poll = select.poll()
        self.in_poll.register(self.inp, select.POLLIN)
        self.all_poll = select.poll()
        self.all_poll.register(self.inp, select.POLLIN)
        if console_in is not None:
            self.all_poll.register(console_in, select.POLLIN)
        self.one = bytearray(1)
        self.rx = bytearray(RX_SIZE)  # bytes ready for the firmware
        self.rx_at = 0
        self.rx_n = 0
        self.hold = bytearray(HOLD_SIZE)  # a frame held back while RX faults are on
        self.hold_n = 0
        self.tx = bytearray(HOLD_SIZE)
        self.lost = 0  # bytes lost to a full buffer
        self.dropped_rx = 0
        self.dropped_tx = 0
        self.corrupted_rx = 0
        self.corrupted_tx = 0
        self.load_faults()
        self.dec = Decoder()
        self.work = bytearray(RX_SIZE)

    def load_faults(self):
        w = self.world
        self.drop_rx = w.get("drop_rx")
        self.drop_tx = w.get("drop_tx")
        self.corrupt_rx = w.get("corrupt_rx")
        self.corrupt_tx = w.get("corrupt_tx")

    # ------------------------------------------------------------------ receive
    def _pull(self):
        """Move what stdin has into rx, through the RX faults."""
        poll = self.in_poll.poll
        one = self.one
        inp = self.inp
        while poll(0):
            if inp.readinto(one) != 1:
                sys.exit(0)  # the host end closed: power off
            b = one[0]
            if self.hold_n or self.drop_rx or self.corrupt_rx:
                self._hold(b)
            else:
                self._rx_add1(b)

    def _rx_add1(self, b):
        if self.rx_n == RX_SIZE:
            self._compact()
            if self.rx_n == RX_SIZE:
                self.lost += 1
                return
        self.rx[self.rx_n] = b
        self.rx_n += 1

    def _rx_add(self, buf, start, end):
        for i in range(start, end):
            self._rx_add1(buf[i])

    def _compact(self):
        at = self.rx_at
        if not at:
            return
        rx = self.rx
        n = self.rx_n - at
        for i in range(n):
            rx[i] = rx[at + i]
        self.rx_at = 0
        self.rx_n = n

    def _hold(self, b):
        hold = self.hold
        if self.hold_n == HOLD_SIZE:  # too long for a frame: let it through as it is
            self._rx_add(hold, 0, self.hold_n)
            self.hold_n = 0
        hold[self.hold_n] = b
        self.hold_n += 1
        if b:
            return
        n = self.hold_n
        self.hold_n = 0
        if n > 1:
            rng = self.rng
            if rng.below(1000) < self.drop_rx:
                self.dropped_rx += 1
                return
            if rng.below(1000) < self.corrupt_rx:
                self.corrupted_rx += 1
                self._flip(hold, n)
        self._rx_add(hold, 0, n)

    def _flip(self, buf, n):
        """Change one byte before the delimiter (never into 0x00: framing stays intact)."""
        rng = self.rng
        i = rng.below(n - 1)
        mask = 1 + rng.below(255)
        v = buf[i] ^ mask
        if v == 0:
            v = buf[i] ^ (mask ^ 0x80)
        buf[i] = v

    def readinto(self, buf):
        clock = self.clock
        if clock.cut_at >= 0 and clock.elapsed >= clock.cut_at:
            return 0  # the power is going: nothing more is read (the answer went out)
        self._pull()
        n = self.rx_n - self.rx_at
        if n <= 0:
            return 0
        size = len(buf)
        if n > size:
            n = size
        rx = self.rx
        at = self.rx_at
        for i in range(n):
            buf[i] = rx[at + i]
        at += n
        if at == self.rx_n:
            self.rx_at = 0
            self.rx_n = 0
        else:
            self.rx_at = at
        return n

    def wait(self, ms):
        """Block up to `ms` of virtual time for input (at most WAIT_CAP_MS of real time)."""
        if self.rx_n > self.rx_at:
            return True
        self.board.emulator.idle()
        return bool(self.all_poll.poll(self.clock.real_ms(ms)))

    # ------------------------------------------------------------------ send
    def write(self, buf, n):
        if n > 1 and (self.drop_tx or self.corrupt_tx):
            rng = self.rng
            if rng.below(1000) < self.drop_tx:
                self.dropped_tx += 1
                return n
            if rng.below(1000) < self.corrupt_tx:
                self.corrupted_tx += 1
                tx = self.tx
                for i in range(n):
                    tx[i] = buf[i]
                self._flip(tx, n)
                buf = tx
        self.out.write(buf, n)
        return n

    # ------------------------------------------------------------------ during an ADVANCE
    def split_queries(self, view):
        """Move the complete query frames waiting in rx into `view`; everything else
        (commands, partial or bad frames) stays in rx, in order, for after the ADVANCE."""
        self._pull()
        n = self.rx_n - self.rx_at
        view.at = 0
        view.n = 0
        if n <= 0:
            return
        work = self.work
        rx = self.rx
        at = self.rx_at
        for i in range(n):
            work[i] = rx[at + i]
        self.rx_at = 0
        self.rx_n = 0
        dec = self.dec
        dec.reset()
        start = 0
        i = 0
        while i < n:
            i = dec.feed(work, i, n)
            if not dec.done:
                break
            dec.done = False
            size = dec.size
            buf = dec.buf
            if (size >= S.HEADER_SIZE + S.CRC_SIZE and buf[4] < S.CMD_FIRST
                    and crc16(buf, 0, size - 2) == buf[size - 2] | (buf[size - 1] << 8)):
                view.add(work, start, i)
            else:
                self._rx_add(work, start, i)
            start = i
        self._rx_add(work, start, n)  # a partial frame: it completes later


class QueryView:
    """What the link reads during an ADVANCE: complete query frames only. Answers go out
    through the real serial driver."""

    def __init__(self, serial):
        self.serial = serial
        self.data = bytearray(RX_SIZE)
        self.at = 0
        self.n = 0

    def add(self, src, start, end):
        data = self.data
        for i in range(start, end):
            if self.n < RX_SIZE:
                data[self.n] = src[i]
                self.n += 1

    def readinto(self, buf):
        n = self.n - self.at
        if n > len(buf):
            n = len(buf)
        data = self.data
        at = self.at
        for i in range(n):
            buf[i] = data[at + i]
        self.at = at + n
        return n

    def write(self, buf, n):
        return self.serial.write(buf, n)


class ConsolePort:
    """The bench console: text in on one pipe, out on another (the launcher's pty)."""

    def __init__(self, fd_in, fd_out):
        self.inp = open("/dev/fd/%d" % fd_in, "rb")
        self.out = open("/dev/fd/%d" % fd_out, "wb")
        self.poll = select.poll()
        self.poll.register(self.inp, select.POLLIN)
        self.one = bytearray(1)
        self.closed = False

    def readinto(self, buf):
        n = 0
        size = len(buf)
        while n < size and not self.closed and self.poll.poll(0):
            if self.inp.readinto(self.one) != 1:
                self.closed = True  # the launcher went away
                self.poll.unregister(self.inp)
                break
            buf[n] = self.one[0]
            n += 1
        return n

    def write(self, buf, n):
        try:
            self.out.write(buf, n)
        except OSError:
            pass


PULSES_MS = 60000  # telemetry carries the tone pulses of the last minute of virtual time


def led_pattern(priority, since):
    """The alarm LED as a person sees it (ALM-8): colour, flash timing and rate."""
    on, off = FLASH[priority]
    return {"priority": priority, "colour": COLOUR[priority], "on_ms": on, "off_ms": off,
            "flash_mhz": 1000000 // (on + off) if off else 0,
            "steady": 1 if priority and not off else 0, "since_ms": since}


class Emulator:
    """hw.emulator: clock control and fault injection (SEC-3: only this board has it)."""

    def __init__(self, board, world, clock, serial, battery, line, buttons, storage, radio,
                 annunciator, telemetry_fd=None):
        self.board = board
        self.world = world
        self.rng = world.rng
        self.clock = clock
        self.serial = serial
        self.battery = battery
        self.line = line
        self.buttons = buttons
        self.storage = storage
        self.radio = radio
        self.annunciator = annunciator
        self.runner = None
        self.view = QueryView(serial)
        self.chunk = bytearray(128)
        self.telemetry = None
        if telemetry_fd is not None:
            self.telemetry = open("/dev/fd/%d" % telemetry_fd, "w")
        self.tel_last = time.ticks_ms()
        self.advanced = 0  # virtual ms run by ADVANCE / UNTIL_EVENT since boot

    def attach(self, runner):
        self.runner = runner
        self.radio.runner = runner

    # ------------------------------------------------------------------ messages
    def command(self, msg_id, values):
        if msg_id == 0x30:
            return self._clock(values[1], values[2])
        if msg_id == 0x31:
            return self._fault(values[1], values[2])
        return S.E_UNKNOWN_MESSAGE, msg_id

    def _clock(self, op, ms):
        clock = self.clock
        old = clock.speed
        if op == S.CLK_REALTIME:
            self._set_speed(1000)
            return S.OK, old
        if op == S.CLK_SPEED:
            if not 1 <= ms <= SPEED_MAX:
                return S.E_OUT_OF_RANGE, 2
            self._set_speed(ms)
            return S.OK, old
        if op == S.CLK_LOCKSTEP:
            self._set_speed(0)
            return S.OK, old
        if op == S.CLK_ADVANCE or op == S.CLK_UNTIL_EVENT:
            if ms < 0:
                return S.E_OUT_OF_RANGE, 2
            return S.OK, self.advance(ms, op == S.CLK_UNTIL_EVENT)
        return S.E_BAD_ARG, 1

    def _set_speed(self, speed):
        clock = self.clock
        if clock.speed:
            clock._sync()
        clock.speed = speed
        clock.rebase()
        self.world.set("speed", speed)

    def _fault(self, fault, value):
        rule = FAULT_RANGES.get(fault)
        if rule is None:
            return S.E_BAD_ARG, 1
        key, lo, hi = rule
        if not lo <= value <= hi:
            return S.E_OUT_OF_RANGE, 2
        if fault == S.FAULT_BATTERY_LEVEL:
            old = self.battery.percent()
            self.battery.set_percent(value)
            return S.OK, old
        if fault == S.FAULT_BUTTON_PRESS:
            self.buttons.press(value)
            return S.OK, 0
        if fault == S.FAULT_POWER_CUT:
            if value < 0:
                value = self.rng.below(60001)
            self.clock.cut_at = self.clock.elapsed + value
            return S.OK, value
        if fault == S.FAULT_SEED:
            self.rng.seed(value)
            return S.OK, self.world.set("seed", value)
        if fault == S.FAULT_GLUCOSE:
            if value == 0:
                return S.E_OUT_OF_RANGE, 2
            self.radio.push(value)
            return S.OK, 0
        old = self.world.set(key, value)
        if fault == S.FAULT_OCCLUSION:
            self.line.occluded = bool(value)
        elif fault == S.FAULT_BATTERY_DRAIN:
            self.battery.mult = value
        elif fault == S.FAULT_SENSOR_LOSS:
            self.radio.lost = value
        elif fault == S.FAULT_BUTTON_STUCK:
            self.buttons.stuck = value
        elif fault == S.FAULT_STORAGE_FAIL:
            self.storage.fail = value
        elif fault == S.FAULT_MOTOR:
            self.board.motor.set_fault(value)
        elif fault == S.FAULT_OUTAGE or fault == S.FAULT_RTC_BACKUP:
            pass  # read at the next power cut (Board.die)
        else:
            self.serial.load_faults()
        return S.OK, old

    # ------------------------------------------------------------------ lockstep
    def advance(self, ms, until_event):
        """Run ticks of 1 s (+- jitter) of virtual time back to back, for `ms` or, with
        `until_event`, until the firmware queues an event. Returns the virtual ms run."""
        runner = self.runner
        pump = runner.pump
        clock = self.clock
        step_fn = runner.step
        service = self.service
        rng = self.rng
        jitter = self.world.get("jitter")
        span = 2 * jitter + 1
        heap_check = self.world.get("heap_check")
        board = self.board
        cmd = pump.cmd
        if cmd:
            # Record the run as started (a state save carrying its command id), so that a
            # retry after a power cut during the run is a duplicate, never a second run.
            pump.detail = 0
            pump.end_command(S.OK)
            pump.begin_command(cmd)
        if until_event:
            service()  # what was queued before goes out first
        done = 0
        n = 0
        while done < ms:
            step = STEP_MS
            if jitter:
                step += rng.below(span) - jitter
            left = ms - done
            if step > left:
                step = left
            cut = clock.cut_at
            if cut >= 0:
                to_cut = cut - clock.elapsed
                if to_cut < step:
                    step = to_cut if to_cut > 0 else 0
            done += step
            pump.detail = done  # a state save carries it: the answer to a retry after a cut
            if heap_check:
                board.locked = True
                heap_lock()
                try:
                    clock.add(step)
                    step_fn()
                except MemoryError as exc:
                    heap_unlock()
                    board.locked = False
                    self.allocated(exc)
                heap_unlock()
                board.locked = False
            else:
                clock.add(step)
                step_fn()
            if pump.ev_count:
                if until_event:
                    break
                service()
            n += 1
            if n == SERVICE_STEPS:
                n = 0
                service()
                self.idle()
        if clock.speed:
            clock.rebase()
        self.advanced += done
        return done

    def allocated(self, exc):
        """A tick allocated while the heap was locked (heap_check): a firmware bug."""
        sys.stderr.write("emulator: a tick allocated with the heap locked (Pump.tick must "
                         "be allocation-free):\n")
        sys.print_exception(exc, sys.stderr)
        self.board.die(EXIT_ALLOC)

    def service(self):
        """Between lockstep ticks: send queued events, answer queries that arrived."""
        link = self.runner.link
        if link is None:
            return
        view = self.view
        self.serial.split_queries(view)
        serial = link.serial
        chunk = link.chunk
        view.serial = serial  # answers go out as the link writes them (text and frames apart)
        link.serial = view
        link.chunk = self.chunk
        try:
            link.poll()
            while view.at < view.n:
                link.poll()
        finally:
            link.serial = serial
            link.chunk = chunk

    # ------------------------------------------------------------------ telemetry
    def idle(self):
        """Called while the firmware waits for input: telemetry once a second."""
        if self.telemetry is None:
            return
        now = time.ticks_ms()
        if time.ticks_diff(now, self.tel_last) < TELEMETRY_MS:
            return
        self.tel_last = now
        self.emit()

    def emit(self):
        runner = self.runner
        if runner is None or self.telemetry is None:
            return
        pump = runner.pump
        st = pump.status()
        link = runner.link
        serial = self.serial
        ann = self.annunciator
        motor = self.board.motor
        st["boots"] = pump.state[S_BOOTS]
        st["time_set"] = pump.state[S_TIME_SET]
        st["utc"] = pump.utc_seconds()
        st["offset"] = pump.setting(S.SET_UTC_OFFSET)
        st["emu"] = {
            "elapsed_ms": self.clock.elapsed,
            "advanced_ms": self.advanced,
            "speed": self.clock.speed,
            "battery_u": self.battery.level_u,
            "motor_pos": motor.pos,
            "odometer": motor.odometer,
            "line_kpa": self.line.kpa,
            "occluded": 1 if self.line.occluded else 0,
            "led": ann.led_priority,
            "led_pattern": led_pattern(ann.led_priority, ann.led_since),
            "sounds": [ann.sounds[1], ann.sounds[2], ann.sounds[3]],
            "last_sound": [ann.last_priority, ann.last_level],
            # ALM-8: what the buzzer plays: signals as (start ms, priority, level, stop ms
            # or -1 while playing), and the tone pulses of the last PULSES_MS as
            # (start ms, Hz, duration ms, level); times are virtual ms since boot
            "signals": [list(g) for g in ann.segments()],
            "pulses": [list(p) for p in ann.pulses(self.clock.elapsed,
                                                   self.clock.elapsed - PULSES_MS)],
            "stuck": self.buttons.stuck,
            "sensor_loss": self.radio.lost,
            "cgm_sent": self.radio.sent,
            "storage_fail": self.storage.fail,
            "link_faults": [serial.drop_rx, serial.drop_tx, serial.corrupt_rx,
                            serial.corrupt_tx],
            "frames": [link.stats[0], link.stats[7]] if link is not None else [0, 0],
            "dropped": [serial.dropped_rx, serial.dropped_tx, serial.corrupted_rx,
                        serial.corrupted_tx],
            "world_ms": self.world.get("world_ms") + self.clock.elapsed,
            "rtc": pump.rtc.now() if pump.rtc is not None else -1,
            "motor_fault": self.world.get("motor"),
            "cut_in_ms": (self.clock.cut_at - self.clock.elapsed
                          if self.clock.cut_at >= 0 else -1),
            "pulse_mu": pump.pulse,
        }
        try:
            self.telemetry.write(json.dumps(st) + "\n")
        except OSError:
            self.telemetry = None


def make_hardware(state_dir, pulse_mu=50, reset_cause=S.RESET_POWER_ON, console=None,
                  telemetry_fd=None, cgm_trace=None, patient=None, world=None, board=None,
                  storage=None, key=None, board_id=S.BOARD_UNIX):
    """patient: (fd out, fd in) of the virtual patient's pipes, or None. A board without
    files (boards/qemu_arm.py) passes its own world, board, storage and key."""
    if world is None:
        world = World(state_dir)
    if board is None:
        board = Board(state_dir, world)
    rng = world.rng
    clock = VirtualClock(board, TICKS_PERIOD - 2000 - rng.below(6001), world.get("speed"))
    board.clock = clock
    battery = EmuBattery(world)
    clock.battery = battery
    if storage is None:
        storage = EmuStorage(state_dir + "/flash.bin", world)
    line = Line()
    line.occluded = bool(world.get("occluded"))
    motor = EmuMotor(line, storage, battery)
    motor.set_fault(world.get("motor"))
    board.motor = motor
    buttons = EmuButtons(world)
    radio = EmuRadio(world, clock, read_trace(cgm_trace) if cgm_trace else None, patient,
                     pulse_mu)
    board.radio = radio
    motor.radio = radio
    # the buzzer's timeline in virtual ms since boot ("q": past 2**31 ms, 24 days)
    annunciator = Annunciator(lambda: clock.elapsed, "q")
    serial = EmuSerial(board, world, clock, console.inp if console is not None else None)
    emu = Emulator(board, world, clock, serial, battery, line, buttons, storage, radio,
                   annunciator, telemetry_fd)
    board.emulator = emu
    hw = Hardware(clock, motor, line, battery, annunciator, buttons, storage,
                  EmuWatchdog(clock), serial=serial, radio=radio, pulse_mu=pulse_mu,
                  reset_cause=reset_cause,
                  key=key if key is not None else read_key(state_dir + "/key"),
                  board=board_id, emulator=emu, rtc=EmuRtc(world, clock))
    hw.console = console
    hw.shared_console = True  # text on the protocol pty too (firmware/demux.py, issue 17)
    return hw


def parse_args(argv):
    opts = {"--state": None, "--pulse": "50", "--reset-cause": "0", "--console-in": None,
            "--console-out": None, "--telemetry": None, "--cgm-trace": None,
            "--patient-in": None, "--patient-out": None}
    i = 0
    while i < len(argv):
        if argv[i] in opts and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            raise ValueError("unknown argument " + argv[i])
    if opts["--state"] is None:
        raise ValueError("--state DIR is required")
    pulse = int(opts["--pulse"])
    if pulse not in (10, 25, 50):
        raise ValueError("--pulse must be 10, 25 or 50")
    return opts, pulse


def start(argv):
    try:
        opts, pulse = parse_args(argv)
        console = None
        if opts["--console-in"] is not None and opts["--console-out"] is not None:
            console = ConsolePort(int(opts["--console-in"]), int(opts["--console-out"]))
        tel = opts["--telemetry"]
        patient = None
        if opts["--patient-out"] is not None and opts["--patient-in"] is not None:
            patient = (int(opts["--patient-out"]), int(opts["--patient-in"]))
        hw = make_hardware(opts["--state"], pulse, int(opts["--reset-cause"]), console,
                           int(tel) if tel is not None else None, opts["--cgm-trace"],
                           patient)
    except (ValueError, OSError) as exc:
        sys.stderr.write("boards/emulator.py: {}\n".format(exc))
        sys.exit(2)
    main.run(hw)


if __name__ == "__main__":
    start(sys.argv[1:])
