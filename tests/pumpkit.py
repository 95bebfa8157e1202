"""Shared test helpers: a pump on simulated parts, ready to deliver, and a tick driver."""

from boards.fakes import Rig
from firmware.hal import R_CGM, R_HISTORY
from firmware.pump import Pump
from firmware.store import SCAN_FEED
from protocol import spec as S


def boot_feeds(rig):
    """Watchdog feeds of one boot: the scans of the history and of the CGM log feed it
    every SCAN_FEED records, before the loop's first tick (ALM-5)."""
    return sum(-(-(rig.storage.size(r) // 24) // SCAN_FEED) for r in (R_HISTORY, R_CGM))

DAY_S = 86400
# 2026-11-16 00:00 UTC, a Monday, in seconds since 2020-01-01 UTC
MONDAY_2026 = 2511 * DAY_S


def make_pump(pulse_mu=50, starts=(0,), rates=(1000,), utc=MONDAY_2026, offset_min=0,
              fill_mu=300000, clock_start=None, resume=True):
    """A booted pump with profile 0 = (starts, rates), time set, reservoir filled and primed."""
    rig = Rig(pulse_mu) if clock_start is None else Rig(pulse_mu, clock_start)
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.settings.set_profile(0, b"test", list(starts), list(rates)) == S.OK, pump.detail
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


# History and events of a Pump in this process (CPython). The same readers elsewhere:
# tests/mp_scenarios.py history() inside MicroPython (it cannot import tests/), and
# hil_tests/kit.py history() / records() over the protocol (host_tools.client).
def history(pump, since=0):
    """The stored history records from sequence `since` on (default: all), as tuples
    (seq, time, kind, arg, v1, v2, v3); every one must read back (CRC)."""
    out = []
    rec = bytearray(24)
    h = pump.history
    for seq in range(max(since, h.first_seq), h.next_seq):
        assert h.read(seq, rec), f"record {seq} unreadable"
        out.append(h.decode(rec))
    return out


# ---------------------------------------------------------------- therapy-test helpers
HOUR_MS = 3600000
SLOT_MS_ = 1800000  # one 30-min basal segment, as in the requirements (THR-1)
DAY_MS_ = 86400000


def slot_rates(starts, rates):
    """The 48 half-hour rates (mU/h) a profile (starts, rates) programs, computed here."""
    out = []
    seg = 0
    for s in range(48):
        if seg + 1 < len(starts) and starts[seg + 1] == s:
            seg += 1
        out.append(rates[seg])
    return out


def weekday_of(day):
    """Monday = 0 for a day number counted from 2020-01-01 (a Wednesday)."""
    return (day + 2) % 7


def basal_integral(rate_at, day, local_ms, duration_ms):
    """Programmed basal integral in mU*ms/h (exact integer) over `duration_ms` of local time
    starting at (day, local_ms). `rate_at(day, slot)` gives the programmed rate in mU/h."""
    total = 0
    left = duration_ms
    while left > 0:
        slot = local_ms // SLOT_MS_
        step = min(left, (slot + 1) * SLOT_MS_ - local_ms)
        total += rate_at(day, slot) * step
        left -= step
        local_ms += step
        if local_ms >= DAY_MS_:
            local_ms -= DAY_MS_
            day += 1
    return total


def local_time(pump):
    """(local day, ms of the local day) as the pump holds it."""
    st = pump.status()
    return st["day"], st["local_ms"]


def utc_for(day, hour=0, minute=0, offset_min=0):
    """UTC seconds since 2020-01-01 for local `day` hh:mm at UTC offset `offset_min`."""
    return day * DAY_S + hour * 3600 + minute * 60 - offset_min * 60


def basal_acc(pump):
    """The basal fraction carried between ticks (mU*ms/h, below one pulse)."""
    from firmware.layout import S_BASAL_ACC

    return pump.state[S_BASAL_ACC]


def events(pump):
    """Drain the host event queue: list of (kind, a, b, c)."""
    out = []
    buf = [0, 0, 0, 0]
    while pump.events.take(buf):
        out.append(tuple(buf))
    return out


def records(pump, kind, since=0):
    """History records of one kind with seq >= since."""
    return [r for r in history(pump) if r[2] == kind and r[0] >= since]


def run_jittered(rig, pump, ms, base_ms, jitter_ms, rnd):
    """Tick for exactly `ms` of board time, steps of base_ms +- jitter_ms (at least 1 ms)."""
    while ms > 0:
        step = base_ms + rnd.randint(-jitter_ms, jitter_ms)
        step = max(1, min(step, ms))
        rig.clock.advance(step)
        pump.tick()
        ms -= step


def run_until(rig, pump, cond, limit_s, step_ms=1000):
    """Tick in steps of step_ms until cond() holds; return the board ms elapsed (or None)."""
    elapsed = 0
    while elapsed < limit_s * 1000:
        rig.clock.advance(step_ms)
        pump.tick()
        elapsed += step_ms
        if cond():
            return elapsed
    return None
