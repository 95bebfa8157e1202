"""Firmware entry point: `run(board.make_hardware())`."""

from firmware.pump import Pump

TICK_MS = 100


def run(hw, ticks=-1):
    """Boot, then tick forever (or `ticks` times), feeding the watchdog each tick."""
    pump = Pump(hw)
    pump.boot()
    tick = pump.tick
    feed = hw.watchdog.feed
    sleep = hw.clock.sleep_ms
    while ticks != 0:
        tick()
        feed()
        sleep(TICK_MS)
        if ticks > 0:
            ticks -= 1
    return pump
