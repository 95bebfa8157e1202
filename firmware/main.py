"""Firmware entry point: `run(board.make_hardware())`.

The main loop ticks the pump every TICK_MS, feeds the watchdog, serves the serial link
(firmware/link.py) and, when the board has one, the bench console: the bytes typed on
`hw.console` (same driver shape as `hw.serial`: readinto(buf), write(buf, n)) go through
`Console(pump).feed(data)` (firmware/console.py: echo, one answer per line, prompt), its
greeting is written once at boot.

An emulator board (hw.emulator with an `attach(runner)` method) gets the Runner: its clock
control runs `runner.step()` (one scheduler tick plus the watchdog feed, exactly what this
loop does each period) back to back, and keeps `runner.link` answering in between.

A running pump never drops to a REPL (SEC-4), on any board: the loop turns Ctrl-C off
(micropython.kbd_intr(-1): 0x03 on a REPL console is an ordinary byte), and an exception
or a KeyboardInterrupt that escapes it puts the pump in its safe state (self-test bit
ST_CRASH, an H_CRASH record, delivery stopped, the self-test alarm) and the loop goes on,
so the alarm sounds and the link still answers. A fault that repeats in the tick stops the
watchdog feeds: the board resets and boots suspended (delivery stays stopped).
"""

from firmware.compat import collect, ticks_add, ticks_diff
from firmware.pump import Pump
from protocol import spec as S  # the crash path only: one globals entry (heap, issue 12)

# Loaded from .mpy files, each import leaves the loader's short-lived buffers between the
# long-lived code objects; a collection after each of the two largest modules lets the
# next one fill those holes and keeps one large free block (issue 12, QEMU ARM board:
# largest free block after boot 12 kB without, 59 kB with).
collect()
from firmware.link import Link  # noqa: E402 (after the collection: see above)

collect()

TICK_MS = 100


def ctrl_c_off():
    """Ctrl-C (0x03) on the REPL console no longer raises KeyboardInterrupt (SEC-4)."""
    try:
        import micropython

        micropython.kbd_intr(-1)
    except (ImportError, AttributeError):  # CPython (tests)
        pass


class Runner:
    """The pump, its link and console, and one loop period split in two: step (tick and
    watchdog) and service (serial link and console)."""

    def __init__(self, hw):
        self.hw = hw
        self.pump = Pump(hw)
        self.link = None
        self.console = None
        self.con = hw.console
        # read chunk of the console port: only on a board that has one (heap, issue 12)
        self.con_chunk = bytearray(64) if self.con is not None else None
        self.line_n = 0
        self.crashes = 0  # exceptions that escaped the loop (SEC-4)
        self.left = -1  # ticks still to run (-1: forever)

    def boot(self):
        hw = self.hw
        pump = self.pump
        # the boot scans make short-lived objects: from a collected heap they cost fewer
        # collections (QEMU ARM board: ~230M instructions of Pump.boot instead of ~330M)
        collect()
        bits = pump.boot()
        if hw.serial is not None:
            self.link = Link(pump, hw)
        if self.con is not None:
            # imported only on a board with a console port: its module costs heap
            try:
                from firmware.console import Console
            except ImportError:  # a build without the bench console
                Console = None
            if Console is not None:
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
        """Tick forever (or `ticks` times), serving link and console between ticks. Never
        ends by an exception: see crashed()."""
        ctrl_c_off()
        self.left = ticks
        while True:
            try:
                self._loop()
                return self.pump
            except KeyboardInterrupt:
                self.crashed(S.CRASH_INTERRUPT)
            except Exception:
                self.crashed(S.CRASH_EXCEPTION)

    def crashed(self, cause):
        """An exception escaped the loop: the safe state, once (SEC-4)."""
        self.crashes += 1
        ctrl_c_off()
        pump = self.pump
        if pump.selftest_bits & S.ST_CRASH:
            return
        try:
            pump.fail_safe(S.ST_CRASH, S.H_CRASH, cause)
        except Exception:  # a broken state: the watchdog resets the board
            pass

    def _loop(self):
        hw = self.hw
        serve = self.link is not None or self.con is not None
        wait = getattr(hw.serial, "wait", None) if serve else None
        step = self.step
        clock = hw.clock
        sleep = clock.sleep_ms
        deadline = clock.ticks_ms()
        while self.left != 0:
            if self.left > 0:
                self.left -= 1
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
                    wait(left)  # input, or a quiet spell: a held console key is typed
                    self.service()
                    left = ticks_diff(deadline, clock.ticks_ms())


def run(hw, ticks=-1):
    """Boot, then tick forever (or `ticks` times), feeding the watchdog each tick and
    serving the serial link and console (if the board has them) between ticks."""
    runner = Runner(hw)
    runner.boot()
    return runner.run(ticks)
