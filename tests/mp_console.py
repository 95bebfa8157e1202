"""A bench-console session that runs inside MicroPython (unix port) and under CPython.

tests/test_console.py sends this file's source followed by ``main()`` to the unix port and
compares the transcript with what CPython produces running ``transcript()`` itself. Keep it
importable by both: no imports from tests/, no CPython-only syntax.

A transcript is a list of (step, hex of the bytes the console wrote back): hex, so control
bytes (backspace echo, bell) survive the trip through stdout unchanged.
"""

from boards.fakes import Rig
from firmware.console import Console
from firmware.pump import Pump
from protocol import spec as S

MONDAY_2026 = 2511 * 86400  # 2026-11-16 00:00 UTC, a Monday

# ("line", text) -> handle_line; ("feed", bytes) -> feed; ("run", seconds) -> ticks;
# ("occlude", 0/1) -> the simulated line blocks or clears
STEPS = (
    ("feed", b"status\r\n"),
    ("line", "bolus 1.5"),
    ("line", "yes"),
    ("run", 40),
    ("line", "status"),
    ("feed", b"temp pct 55\x7f0 60\r\n"),
    ("line", "bolus 0.0001"),
    ("line", "set max_bolus 30"),
    ("line", "frobnicate"),
    ("run", 60),
    ("occlude", 1),
    ("line", "bolus 3"),
    ("line", "yes"),
    ("run", 150),
    ("line", "alarms"),
    ("feed", b"ack\r"),
    ("feed", b"\nhistory 4\n"),
    ("line", "totals 2"),
    ("line", "time"),
)


def make():
    rig = Rig(50)
    pump = Pump(rig.hardware())
    pump.boot()
    pump.settings.set_profile(0, b"test", [0], [1000])
    pump.set_time(MONDAY_2026, 60)
    pump.rewind()
    pump.fill(300000)
    pump.prime(S.PRIME_TUBING, 500)
    pump.prime(S.PRIME_CANNULA, 100)
    pump.resume()
    return rig, pump


def _hex(data):
    return "".join(["%02x" % b for b in data])  # noqa: UP031 (portable to MicroPython)


def transcript():
    rig, pump = make()
    con = Console(pump)
    out = [["greeting", _hex(con.greeting())]]
    for kind, arg in STEPS:
        if kind == "line":
            out.append([arg, _hex(con.handle_line(arg).encode())])
        elif kind == "feed":
            out.append([_hex(arg), _hex(con.feed(arg))])
        elif kind == "run":
            for _ in range(arg):
                rig.clock.advance(1000)
                pump.tick()
        else:
            rig.line.occluded = bool(arg)
    out.append(["faults", str(con.faults)])
    return out


def main():
    for step, data in transcript():
        print("STEP", step, data)
