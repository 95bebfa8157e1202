"""Firmware entry point: `run(board.make_hardware())`."""

from firmware.compat import ticks_add, ticks_diff
from firmware.link import Link
from firmware.pump import Pump

TICK_MS = 100


def run(hw, ticks=-1):
    """Boot, then tick forever (or `ticks` times), feeding the watchdog each tick and
    serving the serial link (if the board has one) between ticks."""
    pump = Pump(hw)
    pump.boot()
    link = Link(pump, hw) if hw.serial is not None else None
    wait = getattr(hw.serial, "wait", None) if link is not None else None
    tick = pump.tick
    feed = hw.watchdog.feed
    clock = hw.clock
    sleep = clock.sleep_ms
    deadline = clock.ticks_ms()
    while ticks != 0:
        tick()
        feed()
        if link is not None:
            link.poll()
        if wait is None:
            sleep(TICK_MS)
        else:
            # answer frames as they arrive, tick every TICK_MS of real time
            deadline = ticks_add(deadline, TICK_MS)
            left = ticks_diff(deadline, clock.ticks_ms())
            if left < 0 or left > TICK_MS:  # fell behind (or the clock jumped): resync
                deadline = clock.ticks_ms()
                left = 0
            while left > 0:
                if wait(left):
                    link.poll()
                left = ticks_diff(deadline, clock.ticks_ms())
        if ticks > 0:
            ticks -= 1
    return pump
