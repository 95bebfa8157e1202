"""Firmware entry point: `run(board.make_hardware())`.

The main loop ticks the pump every TICK_MS, feeds the watchdog, serves the serial link
(firmware/link.py) and, when the board has one, the bench console: the bytes typed on
`hw.console` (same driver shape as `hw.serial`: readinto(buf), write(buf, n)) go through
`Console(pump).feed(data)` (firmware/console.py: echo, one answer per line, prompt), its
greeting is written once at boot.

An emulator board (hw.emulator with an `attach(runner)` method) gets the Runner: its clock
control runs `runner.step()` (one scheduler tick plus the watchdog feed, exactly what this
loop does each period) back to back, and keeps `runner.link` answering in between.
"""

from firmware.compat import ticks_add, ticks_diff
from firmware.link import Link
from firmware.pump import Pump

try:
    from firmware.console import Console
except ImportError:  # a build without the bench console
    Console = None

TICK_MS = 100


class Runner:
    """The pump, its link and console, and one loop period split in two: step (tick and
    watchdog) and service (serial link and console)."""

    def __init__(self, hw):
        self.hw = hw
        self.pump = Pump(hw)
        self.link = None
        self.console = None
        self.con = hw.console
        self.con_chunk = bytearray(64)
        self.line_n = 0

    def boot(self):
        hw = self.hw
        pump = self.pump
        bits = pump.boot()
        if hw.serial is not None:
            self.link = Link(pump, hw)
        if self.con is not None and Console is not None:
            self.console = Console(pump)
            hello = self.console.greeting()
            self.con.write(hello, len(hello))
        self.tick = pump.tick
        self.feed = hw.watchdog.feed
        attach = getattr(getattr(hw, "emulator", None), "attach", None)
        if attach is not None:
            attach(self)
        return bits

    def step(self):
        """One scheduler tick and a watchdog feed (allocation-free)."""
        self.tick()
        self.feed()

    def service(self):
        """Answer what the serial link and the console have waiting."""
        if self.link is not None:
            self.link.poll()
        if self.con is not None:
            self._console()

    def _console(self):
        con = self.con
        buf = self.con_chunk
        while True:
            n = con.readinto(buf)
            if not n:
                return
            try:
                if self.console is not None:
                    out = self.console.feed(bytes(buf[:n]))
                else:
                    out = self._no_console(buf, n)
            except Exception:  # the console never stops the pump
                out = b"error: console fault\r\n"
            if out:
                con.write(out, len(out))
            if n < len(buf):
                return

    def _no_console(self, buf, n):
        """A build without firmware/console.py: one error line per line typed."""
        out = b""
        for i in range(n):
            if buf[i] == 13 or buf[i] == 10:
                if self.line_n:
                    out += b"error: this firmware has no bench console\r\n"
                self.line_n = 0
            else:
                self.line_n = 1
        return out

    def run(self, ticks=-1):
        """Tick forever (or `ticks` times), serving link and console between ticks."""
        hw = self.hw
        serve = self.link is not None or self.con is not None
        wait = getattr(hw.serial, "wait", None) if serve else None
        step = self.step
        clock = hw.clock
        sleep = clock.sleep_ms
        deadline = clock.ticks_ms()
        while ticks != 0:
            step()
            if serve:
                self.service()
            if wait is None:
                sleep(TICK_MS)
            else:
                # answer input as it arrives, tick every TICK_MS of board time
                deadline = ticks_add(deadline, TICK_MS)
                left = ticks_diff(deadline, clock.ticks_ms())
                if left < 0 or left > TICK_MS:  # fell behind (or the clock jumped): resync
                    deadline = clock.ticks_ms()
                    left = 0
                while left > 0:
                    if wait(left):
                        self.service()
                    left = ticks_diff(deadline, clock.ticks_ms())
            if ticks > 0:
                ticks -= 1
        return self.pump


def run(hw, ticks=-1):
    """Boot, then tick forever (or `ticks` times), feeding the watchdog each tick and
    serving the serial link and console (if the board has them) between ticks."""
    runner = Runner(hw)
    runner.boot()
    return runner.run(ticks)
