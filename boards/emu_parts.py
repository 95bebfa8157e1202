"""Emulator board, part 3: the simulated physical parts the firmware drives (HW-3):
battery drain (BAT-1), plunger with its encoder and the board area of the flash file,
the flash file with injected write failures, buttons (pressed and stuck), and the sensor
link (SNS-1: trace readings, injected readings, the virtual patient's exchange).
boards/emulator.py describes each model; fault settings reach them from
boards/emu_faults.py."""

import struct

from boards.fakes import Buttons, Motor, SensorLink
from boards.unix import BOARD_FMT, BOARD_MAGIC, FileStorage
from firmware.hal import R_LINK_A, R_LINK_B
from protocol import spec as S

# battery model, millionths of a percent (BAT-1)
BATTERY_FULL = 100000000
BATTERY_PER_PULSE = 2000  # 0.002 %
BATTERY_PER_HOUR = 50000  # 0.05 %
HOUR_MS = 3600000

CGM_EVERY_MS = 300000  # a reading every 5 virtual minutes


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
        self.patient = patient  # a PatientPipe (boards/emu_transport.py), or None
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
            if self.patient is not None:
                mu = self.infused
                self.infused = 0
                v = self.patient.exchange(minute, mu)
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
        if self.patient is None or runner is None or runner.pump is None:
            return
        if not runner.pump.stop_reason():
            self.infused += n * self.pulse_mu
