"""A running pump never drops to a REPL (SEC-4, ALM-5): Ctrl-C is turned off on every
board's REPL console, and an exception or KeyboardInterrupt that escapes the main loop
(firmware/main.py) puts the pump in its safe state with an alarm and a history record,
while the loop goes on (the watchdog fed, the link answering). On CPython, on the
MicroPython unix port, and through each board's main() (boards/pico.py, boards/esp32.py
with tests/fake_machine.py).
"""

import sys
import types

import pytest

import firmware.main
from boards import fakes
from firmware.pump import S_STOP
from protocol import spec as S
from tests.pumpkit import make_pump, records
from tests.runtimes import run_unix
from tests.test_boards import BOARDS, fake_machine, import_board, write_manifest

__all__ = ["fake_machine"]  # the fixture: tests/fake_machine.py as `machine`


class FaultySerial(fakes.Serial):
    """A serial driver whose readinto raises `exc` at the given calls (1-based)."""

    def __init__(self, faults):
        super().__init__()
        self.faults = dict(faults)
        self.calls = 0

    def readinto(self, buf):
        self.calls += 1
        exc = self.faults.get(self.calls)
        if exc is not None:
            raise exc
        return super().readinto(buf)


def crash_records(pump):
    return [(r[3], r[4]) for r in records(pump, S.H_CRASH)]


def faulty_tick(tick, at, exc):
    calls = [0]

    def wrapped():
        calls[0] += 1
        if calls[0] in at:
            raise exc
        tick()

    return wrapped


@pytest.mark.req("SEC-4", "ALM-5", "ALM-1")
@pytest.mark.parametrize("where, exc, cause", [
    ("serial", KeyboardInterrupt, "CRASH_INTERRUPT"),  # Ctrl-C, whenever it comes
    ("tick", RuntimeError("driver bug"), "CRASH_EXCEPTION"),
])
def test_an_exception_escaping_the_loop_gives_the_safe_state_and_the_loop_goes_on(
        where, exc, cause):
    rig, pump = make_pump()
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    rig.serial = FaultySerial({3: exc, 9: exc} if where == "serial" else {})
    feeds = rig.watchdog.feeds
    runner = firmware.main.Runner(rig.hardware())
    runner.pump = pump
    runner.link = firmware.main.Link(pump, rig.hardware())
    runner.tick = pump.tick if where == "serial" else faulty_tick(pump.tick, (3, 9), exc)
    runner.feed = rig.watchdog.feed
    assert runner.run(20) is pump  # returns after its 20 ticks: no exception escapes
    assert runner.crashes == 2 and rig.serial.calls >= 18  # twice: one record
    # a tick that raised fed no watchdog (a fault that repeats resets the board)
    assert rig.watchdog.feeds - feeds == (20 if where == "serial" else 18)
    assert pump.state[S_STOP] == S.STOP_SELFTEST and pump.selftest_bits == S.ST_CRASH
    assert pump.alarms.active[S.A_SELFTEST]
    assert crash_records(pump) == [(getattr(S, cause), S.ST_CRASH)]
    assert pump.bolus_progress()[0] == 0  # the bolus ended (interrupted)
    assert pump.resume() == S.E_SAFE_STATE  # stays stopped


class StopAfter(fakes.Serial):
    """Ends a board's main() from inside the loop (SystemExit is not caught)."""

    def __init__(self, calls):
        super().__init__()
        self.left = calls

    def readinto(self, buf):
        self.left -= 1
        if self.left < 0:
            raise SystemExit(0)
        return super().readinto(buf)


@pytest.mark.req("SEC-4", "HW-1")
@pytest.mark.parametrize("name", BOARDS)
def test_every_boards_main_turns_ctrl_c_off(name, tmp_path, monkeypatch, fake_machine):
    fm = fake_machine
    calls = []
    monkeypatch.setitem(sys.modules, "micropython",
                        types.SimpleNamespace(kbd_intr=calls.append))
    clock = fakes.Clock()
    import time

    monkeypatch.setattr(time, "ticks_ms", clock.ticks_ms, raising=False)
    monkeypatch.setattr(time, "sleep_ms", clock.sleep_ms, raising=False)
    monkeypatch.setattr(time, "sleep_us", lambda us: None, raising=False)
    board = import_board(name)
    write_manifest(tmp_path, {"main.py": b"import boards\n"})
    fm.Pin.levels[board.PIN_FAULT] = 1
    fm.Pin.levels[board.PIN_BUTTON_ACK] = 1  # not held: the firmware starts
    with pytest.raises(SystemExit):
        board.main(str(tmp_path), serial=StopAfter(5))
    assert calls and set(calls) == {-1}


UNIX_SCRIPT = """
import micropython
from boards import fakes
from tests.pumpkit import make_pump
from firmware.main import Runner, Link
from protocol import spec as S

class Faulty(fakes.Serial):
    n = 0
    def readinto(self, buf):
        self.n += 1
        if self.n == 4:
            raise KeyboardInterrupt
        return fakes.Serial.readinto(self, buf)

rig, pump = make_pump()
rig.serial = Faulty()
r = Runner(rig.hardware())
r.pump = pump
r.link = Link(pump, rig.hardware())
r.tick = pump.tick
r.feed = rig.watchdog.feed
r.run(10)
print("crashes", r.crashes, "stop", pump.state[20], "bits", pump.selftest_bits,
      "alarm", pump.alarms.active[S.A_SELFTEST], "kbd_intr", hasattr(micropython, "kbd_intr"))
"""


@pytest.mark.req("SEC-4", "HW-3")
def test_a_keyboard_interrupt_on_the_unix_port_gives_the_safe_state():
    out = run_unix(UNIX_SCRIPT)
    assert (f"crashes 1 stop {S.STOP_SELFTEST} bits {S.ST_CRASH} alarm 1 kbd_intr True"
            in out.splitlines())
