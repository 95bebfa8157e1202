"""Emulator board, part 2: time. The virtual board clock (real time times a speed
factor, or lockstep), which also fires the power cut and the watchdog at their virtual
instants; the real-time clock with its backup cell (THR-13); the watchdog's feed."""

import time

from boards.emu_world import EXIT_POWER_CUT, EXIT_WATCHDOG
from firmware.compat import TICKS_PERIOD, ticks_diff

WDT_MS = 8000
WDT_READS = 1000  # clock reads without a feed: the loop runs but does not feed
WAIT_CAP_MS = 250  # longest real-time wait for input (telemetry keeps flowing)


class RealClock:
    """Real time on the 2**30 ring: how bytes arrive on the emulator's ports
    (firmware/demux.py times a frame's bytes with it; the board clock may stand still)."""

    def ticks_ms(self):
        return time.ticks_ms() & (TICKS_PERIOD - 1)


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
