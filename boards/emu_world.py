"""Emulator board, part 1: the world around the pump.

- World: the environment (clock mode and speed, jitter, seed and random state, fault
  settings, the world's time and the RTC's base), kept in DIR/world.json so that it
  survives the power cuts the board simulates (host_tools/launch.py writes a fresh one at
  each launch; boards/qemu_arm.py keeps the JSON in persistent memory instead);
- Rng: the seeded random numbers every simulated fault, jitter and clock start draws from;
- Board: what outlives the firmware's objects and what a power cut or the watchdog does
  to them (Board.die), with the process exit statuses the launcher acts on.

Imports nothing else of the emulator (boards/emulator.py lists the parts).
"""

import json
import os
import sys

from micropython import heap_unlock

EXIT_POWER_CUT = 75  # the launcher restarts the board (reset cause power-on)
EXIT_WATCHDOG = 76  # the launcher restarts the board (reset cause watchdog)
EXIT_ALLOC = 3  # heap_check: a tick allocated (the launcher does not restart the board)

WORLD_FILE = "world.json"
JITTER_MS = 20
JITTER_MAX = 500

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
