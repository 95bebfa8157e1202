"""Shared test helpers: a pump on simulated parts, ready to deliver, and a tick driver."""

from boards.fakes import Rig
from firmware.pump import Pump
from protocol import spec as S

DAY_S = 86400
# 2026-11-16 00:00 UTC, a Monday, in seconds since 2020-01-01 UTC
MONDAY_2026 = 2511 * DAY_S


def make_pump(pulse_mu=50, starts=(0,), rates=(1000,), utc=MONDAY_2026, offset_min=0,
              fill_mu=300000, clock_start=None, resume=True):
    """A booted pump with profile 0 = (starts, rates), time set, reservoir filled and primed."""
    rig = Rig(pulse_mu) if clock_start is None else Rig(pulse_mu, clock_start)
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.set_profile(0, b"test", list(starts), list(rates)) == S.OK, pump.detail
    assert pump.set_time(utc, offset_min) == S.OK
    assert pump.rewind() == S.OK
    assert pump.fill(fill_mu) == S.OK
    assert pump.prime(S.PRIME_TUBING, 10 * pulse_mu) == S.OK
    assert pump.prime(S.PRIME_CANNULA, 2 * pulse_mu) == S.OK
    if resume:
        assert pump.resume() == S.OK
    return rig, pump


def run(rig, pump, seconds, step_ms=1000):
    """Tick the pump for `seconds` of board time in steps of `step_ms`."""
    total = seconds * 1000
    while total > 0:
        ms = step_ms if step_ms < total else total
        rig.clock.advance(ms)
        pump.tick()
        total -= ms


def reboot(rig):
    """Power back on: a fresh Pump on the same physical parts."""
    pump = Pump(rig.hardware())
    pump.boot()
    return pump


def history(pump):
    """All stored history records as tuples (seq, time, kind, arg, v1, v2, v3)."""
    out = []
    rec = bytearray(24)
    for seq in range(pump.history.first_seq, pump.history.next_seq):
        assert pump.history.read(seq, rec), f"record {seq} unreadable"
        out.append(pump.history.decode(rec))
    return out
