"""Tick scenarios that run inside MicroPython (unix port, 32-bit wasm) and under CPython.

Used by tests/test_alloc_free.py (the allocation-free tick: ARCHITECTURE.md, "The tick"),
tests/test_micropython_scenarios.py (firmware behaviour on the unix port, cross-checked
against CPython) and benchmarks/ (cost of one tick).

The wasm runner mounts only firmware/, boards/ and protocol/, so runners send this file's
source followed by one call, e.g. ``main_alloc(300)``. Keep it importable by MicroPython and
CPython alike: no imports from tests/, no CPython-only syntax.

Allocation states: ``setup(n)`` builds a Rig + Pump, drives it into the state and warms it up
(allocations allowed); ``locked_run`` then runs n ticks under ``micropython.heap_lock()``,
where any allocation raises MemoryError (caught and counted per tick); ``check(ctx)`` asserts,
inside the runtime, that the state was really exercised during the locked run and returns
the progress values. ``main_alloc(n)`` prints one ``RESULT <json>`` line per state.
Under CPython there is nothing to lock; the values must come out the same.

Storage: a 256-record history region instead of the default 6144: boot scans the whole
region (the main cost of building a pump on wasm), and the wasm build has a 1 MB heap that
must never fill up (see run_state_guarded).
"""

import gc
import json
import sys
from array import array

from boards.fakes import Annunciator, PowerCut, Radio, Rig
from firmware.compat import TICKS_PERIOD
from firmware.layout import PRIME_SKIPPED, S_BASAL_ACC, S_LOCAL_MS, S_PRIME, S_TIME_SET
from firmware.pump import (
    DAY_MS,
    HOUR_MS,
    MIN_MS,
    S_BASAL_TODAY,
    S_BOLUS_ACC,
    S_BOLUS_ID,
    S_BOLUS_KIND,
    S_BOLUS_TODAY,
    S_BOOTS,
    S_DAY,
    S_EXT_ACC,
    S_EXT_DONE,
    S_EXT_ELAPSED,
    S_LOCAL_DAY,
    S_NOW_DONE,
    S_NOW_REQ,
    S_STOP,
    S_TEMP_KIND,
    S_TEMP_LEFT,
    Pump,
)
from protocol import spec as S

try:
    import micropython
except ImportError:  # CPython: nothing to lock
    micropython = None

WASI = getattr(sys.implementation, "_build", "") == "wasi"
HEAP_RESERVE = 100000  # bytes a state may allocate on the wasm build (uses ~35 KB)

PULSE = 50
DAY0 = 2511  # 2026-11-16, a Monday (days since 2020-01-01)
MONDAY = DAY0 * 86400
# Profile 0: 00:00 0.8 U/h, 06:00 1.5, 09:00 2.4, 12:00 1.2, 18:00 1.8, 22:00 0.9
STARTS = (0, 12, 18, 24, 36, 44)
RATES = (800, 1500, 2400, 1200, 1800, 900)
DAY_BASAL_MU = 32700  # integral of profile 0 over 24 h
SIZES = (2048, 2048, 512, 512, 24 * 256, 18 * 96, 256, 256, 1552, 1552, 24 * 16)
WARM = (1000, 100, 7000, 1000, 1000)  # warm-up ticks (unlocked), ms
WARM_MS = 10100
UNIT_BASAL = PULSE * HOUR_MS  # basal accumulator units (mU*ms/h) per pulse
MIN_TICKS = 300  # fewer ticks leave some events outside the locked run


class LevelAnnunciator(Annunciator):
    """Annunciator that also remembers the highest escalation level sounded."""

    def __init__(self):
        Annunciator.__init__(self)
        self.max_level = 0

    def sound(self, priority, level):  # allocation-free, like the base class
        self.sounds[priority] += 1
        self.last_priority = priority
        self.last_level = level
        if level > self.max_level:
            self.max_level = level


# --------------------------------------------------------------------------- building blocks


def step_ms(i):
    """Length of tick i of a run: mostly 1 s, every 10th 100 ms, every 50th 7 s."""
    if i % 10 == 3:
        return 100
    if i % 50 == 17:
        return 7000
    return 1000


def run_ms(n):
    total = 0
    for i in range(n):
        total += step_ms(i)
    return total


def new_rig(pulse_mu, clock_start):
    """A Rig with SIZES storage: the default regions (~300 KB with the 147 KB history) are
    more than the 1 MB heap of the wasm build can afford per state."""
    if clock_start < 0:
        return Rig(pulse_mu, storage_sizes=SIZES)
    return Rig(pulse_mu, clock_start, storage_sizes=SIZES)


def make(local_s=13 * 3600, pulse_mu=PULSE, fill_mu=300000, tubing_mu=0, clock_start=-1,
         settings=(), annunciator=None, resume=True, cgm=None):
    """A booted pump, profile 0 = STARTS/RATES, Monday `local_s`, filled, primed, resumed.
    `cgm`: a sensor-link script [(minute, mg/dL), ...] (boards.fakes.Radio, minutes from
    now on the board clock)."""
    rig = new_rig(pulse_mu, clock_start)
    if annunciator is not None:
        rig.annunciator = annunciator
    if cgm is not None:
        rig.radio = Radio(rig.clock, cgm)
    pump = Pump(rig.hardware())
    assert pump.boot() == 0, "boot"
    for sid, value in settings:
        assert pump.settings.set(sid, value) == S.OK, "set_setting " + str(sid)
    assert pump.settings.set_profile(0, b"test", list(STARTS), list(RATES)) == S.OK, "set_profile"
    assert pump.set_time(MONDAY + local_s, 0) == S.OK, "set_time"
    assert pump.rewind() == S.OK, "rewind"
    assert pump.fill(fill_mu) == S.OK, "fill"
    assert pump.prime(S.PRIME_TUBING, tubing_mu or 10 * pulse_mu) == S.OK, "prime tubing"
    assert pump.prime(S.PRIME_CANNULA, 2 * pulse_mu) == S.OK, "prime cannula"
    if resume:
        assert pump.resume() == S.OK, "resume"
    return rig, pump


def warm(rig, pump):
    for ms in WARM:
        rig.clock.advance(ms)
        pump.tick()


def drive(rig, pump, ms, step=1000):
    """Tick for `ms` of board time in steps of `step` (no lock)."""
    while ms > 0:
        s = step if step < ms else ms
        rig.clock.advance(s)
        pump.tick()
        ms -= s


def locked_run(rig, pump, n, press_every=0):
    """n ticks (step_ms pattern) under heap_lock. Returns (ticks that raised MemoryError,
    index of the first). Allocation-free itself: no range(), no new objects in the loop."""
    clock = rig.clock
    buttons = rig.buttons
    fails = 0
    first = -1
    i = 0
    lock = micropython is not None
    if lock:
        micropython.heap_lock()
    try:
        while i < n:
            s = 1000
            if i % 10 == 3:
                s = 100
            elif i % 50 == 17:
                s = 7000
            try:
                clock.advance(s)
                if press_every and i % press_every == press_every - 1:
                    buttons.press(1)  # BUTTON_ACK, read by the next tick
                pump.tick()
            except MemoryError:
                fails += 1
                if first < 0:
                    first = i
            i += 1
    finally:
        if lock:
            micropython.heap_unlock()
    return fails, first


def ready(rig, pump, n, press=0):
    """The context handed to locked_run and check: parts plus a snapshot before the run."""
    return {
        "rig": rig,
        "pump": pump,
        "n": n,
        "T": run_ms(n),
        "press": press,
        "st": array("i", pump.state),
        "pos": rig.motor.pos,
        "hist": pump.history.next_seq,
        "sounds": list(rig.annunciator.sounds),
        "t": rig.clock.t,
        "relieved": rig.motor.relieved,
        "rate": pump.basal_rate(),
        "reservoir": pump.reservoir_mu(),
        "active": list(pump.alarms.active),
    }


def history(pump, since=0):
    """The history records (seq, time, kind, arg, v1, v2, v3) from sequence `since` on,
    unreadable ones left out (storage faults are scenarios here). Like tests/pumpkit.py
    history(), which asserts every record reads back; this copy exists because this file
    runs inside MicroPython on its own (no imports from tests/, frozen into the ARM test
    image)."""
    h = pump.history
    rec = bytearray(24)
    out = []
    seq = since if since > h.first_seq else h.first_seq
    while seq < h.next_seq:
        if h.read(seq, rec):
            out.append(h.decode(rec))
        seq += 1
    return out


def count(recs, kind, arg=-1, v1=-1):
    n = 0
    for r in recs:
        if r[2] == kind and (arg < 0 or r[3] == arg) and (v1 < 0 or r[4] == v1):
            n += 1
    return n


def basal_pulses(acc0, segments):
    """Pulses an accumulator starting at acc0 gives over [(ms, rate mU/h), ...]."""
    acc = acc0
    for ms, rate in segments:
        acc += ms * rate
    return acc // UNIT_BASAL


def elapsed_ms(c):
    st = c["pump"].state
    b = c["st"]
    return (st[S_LOCAL_DAY] - b[S_LOCAL_DAY]) * DAY_MS + st[S_LOCAL_MS] - b[S_LOCAL_MS]


def moved(c):
    return c["rig"].motor.pos - c["pos"]


def delta(c, index):
    return c["pump"].state[index] - c["st"][index]


def active_mask(pump):
    mask = 0
    for i in range(S.ALARM_COUNT):
        if pump.alarms.active[i]:
            mask |= 1 << i
    return mask


# --------------------------------------------------------------------------- the states
# Each setup(n) returns ready(...); each check(c) asserts and returns the progress values.


def setup_basal(n):
    # crosses the 09:00 segment boundary (1.5 -> 2.4 U/h) in the middle of the run
    local_ms = 9 * HOUR_MS - run_ms(n) // 2 - WARM_MS
    rig, pump = make(local_s=local_ms // 1000)
    warm(rig, pump)
    return ready(rig, pump, n)


def check_basal(c):
    pump = c["pump"]
    t1 = 9 * HOUR_MS - c["st"][S_LOCAL_MS]
    assert 0 < t1 < c["T"], "run crosses 09:00"
    want = basal_pulses(c["st"][S_BASAL_ACC], ((t1, 1500), (c["T"] - t1, 2400)))
    assert pump.state[S_STOP] == S.STOP_NONE, "delivering"
    assert c["rate"] == 1500 and pump.basal_rate() == 2400, "profile rate changed"
    assert want > 0 and moved(c) == want, f"basal pulses {moved(c)} != {want}"
    assert delta(c, S_BASAL_TODAY) == want * PULSE, "basal counted"
    return {"pulses": moved(c), "basal_mu": delta(c, S_BASAL_TODAY), "rate": pump.basal_rate()}


def setup_temp_abs(n):
    rig, pump = make(local_s=13 * 3600)
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 3000, 120) == S.OK, "temp basal"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_temp(c, rate):
    pump = c["pump"]
    st = pump.state
    want = basal_pulses(c["st"][S_BASAL_ACC], ((c["T"], rate),))
    assert c["rate"] == rate and pump.basal_rate() == rate, "temp rate"
    assert st[S_TEMP_KIND] == c["st"][S_TEMP_KIND] != S.TEMP_NONE, "temp basal running"
    assert delta(c, S_TEMP_LEFT) == -c["T"], "temp time counted down"
    assert want > 0 and moved(c) == want, f"temp pulses {moved(c)} != {want}"
    assert delta(c, S_BASAL_TODAY) == want * PULSE, "basal counted"
    return {"pulses": moved(c), "basal_mu": delta(c, S_BASAL_TODAY),
            "temp_left_ms": st[S_TEMP_LEFT]}


def check_temp_abs(c):
    return check_temp(c, 3000)


def setup_temp_pct(n):
    rig, pump = make(local_s=13 * 3600)  # 1.2 U/h all run long
    assert pump.set_temp_basal(S.TEMP_PERCENT, 150, 120) == S.OK, "temp basal"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_temp_pct(c):
    return check_temp(c, 1800)


def setup_bolus_normal(n):
    # 25 U at 0.5 U/min takes 50 min: still running when the longest run ends
    rig, pump = make(settings=((S.SET_MAX_BOLUS, 25000), (S.SET_MAX_BOLUS_1H, 50000),
                               (S.SET_BOLUS_SPEED, 500)))
    assert pump.bolus(S.BOLUS_NORMAL, 25000, 0, 0) == S.OK, "bolus"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_bolus_normal(c):
    pump = c["pump"]
    st = pump.state
    want = (c["st"][S_BOLUS_ACC] + c["T"] * 500) // (PULSE * MIN_MS)
    assert st[S_BOLUS_ID] == c["st"][S_BOLUS_ID] != 0, "same bolus still running"
    assert want > 0 and delta(c, S_NOW_DONE) == want, (
        f"bolus pulses {delta(c, S_NOW_DONE)} != {want}")
    assert delta(c, S_BOLUS_TODAY) == want * PULSE, "bolus counted"
    assert moved(c) * PULSE == delta(c, S_BOLUS_TODAY) + delta(c, S_BASAL_TODAY), "moved"
    return {"bolus_pulses": want, "pulses": moved(c), "delivered_mu": st[S_NOW_DONE] * PULSE}


def setup_bolus_extended(n):
    rig, pump = make()
    assert pump.bolus(S.BOLUS_EXTENDED, 3000, 0, 0) != S.OK, "extended needs ext part"
    assert pump.bolus(S.BOLUS_EXTENDED, 0, 3000, 120) == S.OK, "bolus"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_bolus_extended(c):
    pump = c["pump"]
    st = pump.state
    want = (c["st"][S_EXT_ACC] + c["T"] * 60) // (120 * MIN_MS)  # 60 pulses over 120 min
    assert st[S_BOLUS_KIND] == S.BOLUS_EXTENDED and st[S_BOLUS_ID] == c["st"][S_BOLUS_ID], "run"
    assert delta(c, S_EXT_ELAPSED) == c["T"], "extended time counted"
    assert want > 0 and delta(c, S_EXT_DONE) == want, (
        f"ext pulses {delta(c, S_EXT_DONE)} != {want}")
    assert delta(c, S_BOLUS_TODAY) == want * PULSE, "bolus counted"
    return {"ext_pulses": want, "pulses": moved(c), "ext_elapsed_ms": st[S_EXT_ELAPSED]}


def setup_bolus_dual(n):
    # immediate 2.5 U (100 s at 1.5 U/min) ends early in the run, then 2 U over 60 min
    rig, pump = make()
    assert pump.bolus(S.BOLUS_DUAL, 2500, 2000, 60) == S.OK, "bolus"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_bolus_dual(c):
    pump = c["pump"]
    st = pump.state
    b = c["st"]
    assert st[S_BOLUS_KIND] == S.BOLUS_DUAL and st[S_BOLUS_ID] == b[S_BOLUS_ID], "running"
    assert 0 < b[S_NOW_DONE] < b[S_NOW_REQ] and b[S_EXT_DONE] == 0, "phase 1 at lock"
    assert st[S_NOW_DONE] == st[S_NOW_REQ] == 50, "phase 1 finished in the run"
    assert delta(c, S_EXT_DONE) > 0, "phase 2 delivered in the run"
    assert delta(c, S_BOLUS_TODAY) == (delta(c, S_NOW_DONE) + delta(c, S_EXT_DONE)) * PULSE
    return {"now_pulses": delta(c, S_NOW_DONE), "ext_pulses": delta(c, S_EXT_DONE),
            "pulses": moved(c), "ext_elapsed_ms": st[S_EXT_ELAPSED]}


def setup_suspended(n):
    rig, pump = make(settings=((S.SET_SUSPEND_REMINDER, 5),))
    assert pump.suspend() == S.OK, "suspend"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_suspended(c):
    pump = c["pump"]
    ann = c["rig"].annunciator
    recs = history(pump, c["hist"])
    raised = count(recs, S.H_ALARM, S.ALARM_RAISED, S.A_SUSPEND_REMINDER)
    assert pump.state[S_STOP] == S.STOP_USER and c["st"][S_STOP] == S.STOP_USER, "suspended"
    assert moved(c) == 0 and delta(c, S_BASAL_TODAY) == 0, "no delivery"
    assert raised >= 1 and ann.sounds[S.PRIO_LOW] > c["sounds"][S.PRIO_LOW], "reminder"
    return {"reminders": raised, "low_sounds": ann.sounds[S.PRIO_LOW] - c["sounds"][S.PRIO_LOW],
            "alarms": active_mask(pump)}


ALARMS_PRESS = 151  # button ACK every 151 ticks of the run


def setup_alarms(n):
    # suspended, battery 4 % (low + very low), reservoir 14.4 U (low), reminder every 5 min,
    # alarms repeating every minute and escalating; "no delivery for 60 min" (high) is raised
    # in the middle of the run; the button acknowledges the top alarm now and then.
    ann = LevelAnnunciator()
    rig, pump = make(fill_mu=15000, annunciator=ann, settings=(
        (S.SET_ALARM_REPEAT, 1), (S.SET_SNOOZE, 5), (S.SET_SUSPEND_REMINDER, 5),
        (S.SET_NO_DELIVERY, 60)))
    rig.battery.level = 4
    assert pump.suspend() == S.OK, "suspend"
    warm(rig, pump)
    pre = 60 * MIN_MS - WARM_MS - run_ms(n) // 2
    assert pre > 0, "too many ticks for the no-delivery alarm"
    drive(rig, pump, pre, 10000)
    ann.max_level = 0
    return ready(rig, pump, n, ALARMS_PRESS)


def check_alarms(c):
    pump = c["pump"]
    ann = c["rig"].annunciator
    al = pump.alarms
    recs = history(pump, c["hist"])
    acked = count(recs, S.H_ALARM, S.ALARM_ACKED)
    for a in (S.A_BATTERY_LOW, S.A_BATTERY_VERY_LOW, S.A_RESERVOIR_LOW):
        assert c["active"][a] and al.active[a], f"alarm {a} active throughout"
    assert not c["active"][S.A_NO_DELIVERY] and al.active[S.A_NO_DELIVERY], "no-delivery raised"
    assert count(recs, S.H_ALARM, S.ALARM_RAISED, S.A_NO_DELIVERY) == 1, "raised in the run"
    medium = ann.sounds[S.PRIO_MEDIUM] - c["sounds"][S.PRIO_MEDIUM]
    assert medium >= 3 * (c["T"] // (2 * MIN_MS)), "medium alarms repeat"
    assert ann.max_level == 2, "escalated to the top level during the run"
    assert acked == c["n"] // ALARMS_PRESS, "button acks handled in the tick"
    assert moved(c) == 0, "suspended"
    return {"acked": acked, "medium_sounds": medium, "max_level": ann.max_level,
            "high_sounds": ann.sounds[S.PRIO_HIGH] - c["sounds"][S.PRIO_HIGH],
            "low_sounds": ann.sounds[S.PRIO_LOW] - c["sounds"][S.PRIO_LOW],
            "levels": list(al.level), "alarms": active_mask(pump)}


def setup_bolus_complete(n):
    rig, pump = make()
    assert pump.bolus(S.BOLUS_NORMAL, 1000, 0, 0) == S.OK, "bolus"  # 40 s
    warm(rig, pump)
    return ready(rig, pump, n)


def check_bolus_complete(c):
    pump = c["pump"]
    bid = c["st"][S_BOLUS_ID]
    recs = history(pump, c["hist"])
    assert bid and 0 < c["st"][S_NOW_DONE] < c["st"][S_NOW_REQ], "bolus running at lock"
    assert pump.state[S_BOLUS_ID] == 0, "bolus ended"
    assert count(recs, S.H_BOLUS_END, S.BOLUS_COMPLETED, bid) == 1, "completion logged in run"
    for r in recs:
        if r[2] == S.H_BOLUS_END:
            assert r[5] == r[6] == 1000, "delivered == requested"
    assert pump.state[S_BOLUS_TODAY] == 1000, "bolus counted"
    return {"bolus_today": pump.state[S_BOLUS_TODAY], "pulses": moved(c),
            "history": pump.history.next_seq - c["hist"], "iob": pump.iob()}


def setup_occlusion(n):
    rig, pump = make()
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK, "bolus"
    warm(rig, pump)
    rig.line.occluded = True  # from the first locked tick on
    return ready(rig, pump, n)


def check_occlusion(c):
    rig = c["rig"]
    pump = c["pump"]
    bid = c["st"][S_BOLUS_ID]
    recs = history(pump, c["hist"])
    assert c["st"][S_STOP] == S.STOP_NONE and bid, "bolus running at lock"
    assert pump.state[S_STOP] == S.STOP_OCCLUSION, "stopped for occlusion"
    assert pump.alarms.active[S.A_OCCLUSION], "occlusion alarm"
    assert rig.motor.relieved - c["relieved"] == 1, "pressure relieved"
    assert count(recs, S.H_BOLUS_END, S.BOLUS_INTERRUPTED, bid) == 1, "bolus interrupted"
    assert rig.line.pushed_blocked == moved(c), "every pulse of the run was blocked"
    return {"blocked_pulses": rig.line.pushed_blocked, "bolus_today": pump.state[S_BOLUS_TODAY],
            "alarms": active_mask(pump)}


def setup_reservoir_empty(n):
    # 10 U filled, 8.1 U primed: 1.9 U = 38 pulses left for a 1.75 U bolus and 5 U/h
    rig, pump = make(fill_mu=10000, tubing_mu=8000)
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 5000, 120) == S.OK, "temp basal"
    assert pump.bolus(S.BOLUS_NORMAL, 1750, 0, 0) == S.OK, "bolus"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_reservoir_empty(c):
    pump = c["pump"]
    recs = history(pump, c["hist"])
    assert c["st"][S_STOP] == S.STOP_NONE and c["reservoir"] > 0, "delivering at lock"
    assert c["active"][S.A_RESERVOIR_VERY_LOW] and not c["active"][S.A_RESERVOIR_EMPTY], "low"
    assert pump.state[S_STOP] == S.STOP_RESERVOIR, "stopped: reservoir empty"
    assert pump.reservoir_mu() == 0, "empty"
    assert pump.alarms.active[S.A_RESERVOIR_EMPTY], "empty alarm"
    assert not pump.alarms.active[S.A_RESERVOIR_VERY_LOW], "very-low alarm cleared"
    assert count(recs, S.H_SUSPEND, S.STOP_RESERVOIR) == 1, "stop logged in the run"
    assert pump.state[S_TEMP_KIND] == S.TEMP_NONE, "temp basal ended by the stop"
    return {"pulses": moved(c), "bolus_today": pump.state[S_BOLUS_TODAY],
            "basal_mu": delta(c, S_BASAL_TODAY), "alarms": active_mask(pump)}


def setup_battery_dead(n):
    rig, pump = make()
    rig.battery.level = 6
    assert pump.bolus(S.BOLUS_NORMAL, 3000, 0, 0) == S.OK, "bolus"
    warm(rig, pump)
    rig.battery.level = 0  # dies before the first locked tick reads it
    return ready(rig, pump, n)


def check_battery_dead(c):
    pump = c["pump"]
    bid = c["st"][S_BOLUS_ID]
    recs = history(pump, c["hist"])
    assert c["st"][S_STOP] == S.STOP_NONE and bid, "bolus running at lock"
    assert not c["active"][S.A_BATTERY_DEPLETED], "battery not yet depleted at lock"
    assert pump.state[S_STOP] == S.STOP_BATTERY, "stopped: battery depleted"
    assert pump.alarms.active[S.A_BATTERY_DEPLETED], "depleted alarm"
    assert count(recs, S.H_BOLUS_END, S.BOLUS_INTERRUPTED, bid) == 1, "bolus interrupted"
    assert moved(c) == 0, "no pulse after the battery died"
    return {"bolus_today": pump.state[S_BOLUS_TODAY], "alarms": active_mask(pump),
            "history": pump.history.next_seq - c["hist"]}


def setup_storage_fail(n):
    # flash writes fail (OSError) from the lock on: every save and log inside the tick
    # takes its error path; nothing unrecorded moves, and after repeated failed saves
    # the pump stops in the safe state (basal at 1.2 U/h)
    rig, pump = make()
    warm(rig, pump)
    rig.storage.fail = True
    c = ready(rig, pump, n)
    c["errors"] = pump.state_slots.write_errors + pump.history.write_errors
    return c


def check_storage_fail(c):
    pump = c["pump"]
    errors = pump.state_slots.write_errors + pump.history.write_errors - c["errors"]
    assert moved(c) == 0, "nothing moved that could not be recorded"
    assert pump.state[S_STOP] == S.STOP_SELFTEST, "safe state"
    assert pump.selftest_bits & S.ST_STORAGE, "storage fault"
    assert pump.alarms.active[S.A_SELFTEST], "alarm"
    assert errors >= 3, "failed writes counted"
    assert pump.history.next_seq == c["hist"], "nothing logged"
    return {"pulses": 0, "write_errors": errors}


def setup_day_rollover(n):
    # Monday 0.9 U/h until midnight in the middle of the run, then Tuesday's profile 1
    local_ms = DAY_MS - run_ms(n) // 2 - WARM_MS
    rig, pump = make(local_s=local_ms // 1000)
    assert pump.settings.set_profile(1, b"tuesday", [0], [700]) == S.OK, "profile 1"
    assert pump.settings.set_schedule([0, 1, 0, 0, 0, 0, 0]) == S.OK, "schedule"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_day_rollover(c):
    pump = c["pump"]
    st = pump.state
    b = c["st"]
    t1 = DAY_MS - b[S_LOCAL_MS]
    assert 0 < t1 < c["T"] and b[S_LOCAL_DAY] == DAY0, "run crosses midnight"
    p1 = basal_pulses(b[S_BASAL_ACC], ((t1, 900),))
    p = basal_pulses(b[S_BASAL_ACC], ((t1, 900), (c["T"] - t1, 700)))
    monday = pump.day_totals(DAY0)
    assert st[S_LOCAL_DAY] == st[S_DAY] == DAY0 + 1, "Tuesday"
    assert monday is not None, "Monday's totals stored"
    assert monday[0] == b[S_BASAL_TODAY] + p1 * PULSE and monday[2] == 12 * PULSE, "Monday"
    assert st[S_BASAL_TODAY] == (p - p1) * PULSE and moved(c) == p, "Tuesday so far"
    recs = history(pump, c["hist"])
    assert count(recs, S.H_DAY_TOTAL, -1, DAY0) == 1, "day total logged in the run"
    assert pump.basal_rate() == 700, "Tuesday's profile"
    return {"monday": list(monday), "tuesday_basal": st[S_BASAL_TODAY], "pulses": p}


def setup_temp_expiry(n):
    half = run_ms(n) // 2
    minutes = ((half + WARM_MS) // MIN_MS // 15 + 1) * 15
    rig, pump = make(local_s=13 * 3600)
    assert pump.set_temp_basal(S.TEMP_ABSOLUTE, 3000, minutes) == S.OK, "temp basal"
    warm(rig, pump)
    drive(rig, pump, minutes * MIN_MS - WARM_MS - half, 5000)  # expiry mid-run
    return ready(rig, pump, n)


def check_temp_expiry(c):
    pump = c["pump"]
    b = c["st"]
    t1 = b[S_TEMP_LEFT]
    assert b[S_TEMP_KIND] == S.TEMP_ABSOLUTE and 0 < t1 < c["T"], "expires in the run"
    want = basal_pulses(b[S_BASAL_ACC], ((t1, 3000), (c["T"] - t1, 1200)))
    assert pump.state[S_TEMP_KIND] == S.TEMP_NONE and pump.basal_rate() == 1200, "expired"
    recs = history(pump, c["hist"])
    assert count(recs, S.H_TEMP_END, S.TEMP_END_EXPIRED) == 1, "expiry logged in the run"
    assert moved(c) == want, f"pulses {moved(c)} != {want}"
    return {"pulses": want, "basal_mu": delta(c, S_BASAL_TODAY)}


def setup_auto_off(n):
    # auto-off after 5 h without interaction: alarm a third into the run, stop 30 s later
    rig, pump = make(local_s=5 * 3600, settings=((S.SET_AUTO_OFF, 5),))
    warm(rig, pump)
    drive(rig, pump, 5 * HOUR_MS - WARM_MS - run_ms(n) // 3, 60000)
    return ready(rig, pump, n)


def check_auto_off(c):
    pump = c["pump"]
    recs = history(pump, c["hist"])
    assert c["st"][S_STOP] == S.STOP_NONE and not c["active"][S.A_AUTO_OFF], "on at lock"
    assert pump.state[S_STOP] == S.STOP_AUTO_OFF, "auto-off stop"
    assert pump.alarms.active[S.A_AUTO_OFF], "auto-off alarm"
    assert count(recs, S.H_ALARM, S.ALARM_RAISED, S.A_AUTO_OFF) == 1, "raised in the run"
    assert count(recs, S.H_SUSPEND, S.STOP_AUTO_OFF) == 1, "stop logged in the run"
    return {"pulses": moved(c), "basal_mu": delta(c, S_BASAL_TODAY), "alarms": active_mask(pump)}


def setup_clock_wrap(n):
    # the board clock passes 2**30 -> 0 in the middle of the locked run
    rig, pump = make(local_s=13 * 3600, clock_start=TICKS_PERIOD - WARM_MS - run_ms(n) // 2)
    warm(rig, pump)
    return ready(rig, pump, n)


def check_clock_wrap(c):
    rig = c["rig"]
    want = basal_pulses(c["st"][S_BASAL_ACC], ((c["T"], 1200),))
    assert c["t"] > (TICKS_PERIOD >> 1) and rig.clock.t < c["t"], "clock wrapped in the run"
    assert rig.clock.t == c["t"] + c["T"] - TICKS_PERIOD, "board clock"
    assert moved(c) == want, f"pulses {moved(c)} != {want}"
    return {"pulses": want, "clock_end": rig.clock.t}


# Sensor link (SNS-1..3): readings once a minute from the fake radio (faster than the real
# 5 min, so that the short wasm run sees several); the locked run starts 10.1 s after the
# radio's minute 0.


def cgm_count(pump, since, alarm, action):
    return count(history(pump, since), S.H_ALARM, action, alarm)


CGM_STEADY = [(m, 110 + (m % 3)) for m in range(1, 40)]


def setup_cgm_readings(n):
    rig, pump = make(cgm=CGM_STEADY)
    warm(rig, pump)
    c = ready(rig, pump, n)
    c["readings"] = pump.cgm.readings
    c["held"] = pump.cgm.count
    return c


def check_cgm_readings(c):
    pump = c["pump"]
    cgm = pump.cgm
    got = cgm.readings - c["readings"]
    want = c["T"] // MIN_MS  # one a minute: minutes 1 .. T/60 s
    assert c["readings"] == 0 and got == want and got >= 5, f"readings {got} != {want}"
    assert cgm.count == got, "the ring holds them"
    assert cgm.last == CGM_STEADY[got - 1][1], "newest value"
    assert cgm.trend != S.NO_TREND, "trend known"
    assert active_mask(pump) == 0, "no glucose alert in range"
    assert moved(c) == basal_pulses(c["st"][S_BASAL_ACC], ((c["T"], 1200),)), "basal goes on"
    return {"readings": got, "last": cgm.last, "trend": cgm.trend, "pred30": cgm.pred30,
            "pulses": moved(c)}


# 120 .. 50 mg/dL in 5 min, then LOW, then nothing after minute 8 (signal loss 20 min later)
CGM_FALL = [(1, 120), (2, 100), (3, 80), (4, 60), (5, 50), (6, 45), (7, 39), (8, 39)]


def setup_urgent_low(n):
    rig, pump = make(cgm=CGM_FALL)
    warm(rig, pump)
    return ready(rig, pump, n)


def check_urgent_low(c):
    pump = c["pump"]
    al = pump.alarms
    h = c["hist"]
    assert cgm_count(pump, h, S.A_URGENT_LOW, S.ALARM_RAISED) == 1, "urgent low raised in run"
    assert cgm_count(pump, h, S.A_URGENT_LOW_SOON, S.ALARM_RAISED) == 1, "predicted first"
    assert cgm_count(pump, h, S.A_URGENT_LOW_SOON, S.ALARM_CLEARED) == 1, "then cleared"
    assert cgm_count(pump, h, S.A_GLUCOSE_FALL, S.ALARM_RAISED) == 1, "fast fall"
    assert al.active[S.A_URGENT_LOW] and al.active[S.A_GLUCOSE_LOW], "low alarms on"
    ms = c["T"] + WARM_MS
    lost = ms >= (8 + 20) * MIN_MS + 1000  # a second of housekeeping at most
    assert bool(al.active[S.A_SIGNAL_LOSS]) == lost, "signal loss after 20 min"
    assert c["rig"].annunciator.sounds[S.PRIO_HIGH] > c["sounds"][S.PRIO_HIGH], "sounded"
    return {"alarms": active_mask(pump), "readings": pump.cgm.readings, "last": pump.cgm.last,
            "high_sounds": c["rig"].annunciator.sounds[S.PRIO_HIGH] - c["sounds"][S.PRIO_HIGH]}


# down towards the low limit (70, line 90), suspended at minute 3, recovering at minute 5
CGM_SBL = [(1, 130), (2, 115), (3, 100), (4, 105), (5, 125)] + [(m, 130) for m in range(6, 40)]


def setup_sbl(n):
    rig, pump = make(cgm=CGM_SBL, settings=((S.SET_SBL, 1),))
    warm(rig, pump)
    return ready(rig, pump, n)


def check_sbl(c):
    pump = c["pump"]
    recs = history(pump, c["hist"])
    assert count(recs, S.H_SBL, 1, S.SBL_PREDICTED) == 1, "suspended in the run"
    assert count(recs, S.H_SBL, 0, S.SBL_RECOVERED) == 1, "resumed by itself"
    assert pump.cgm.sbl == 0 and not pump.alarms.active[S.A_SBL], "resumed"
    assert pump.state[S_STOP] == S.STOP_NONE and pump.basal_rate() == 1200, "basal again"
    full = basal_pulses(c["st"][S_BASAL_ACC], ((c["T"], 1200),))
    assert moved(c) <= full, "no basal while suspended"
    return {"pulses": moved(c), "full": full, "readings": pump.cgm.readings,
            "alarms": active_mask(pump)}


# Issue 9 and ALM-7 states: the time lost at a reboot (flat mean basal, the time-unset
# alarm sounding), the rolling 24-h limit reached inside the run, a motor that stalls.
def profile_mean():
    """The 24-h mean rate of STARTS/RATES, mU/h (the time-unknown basal, THR-13)."""
    total = 0
    for i in range(len(STARTS)):
        end = STARTS[i + 1] if i + 1 < len(STARTS) else 48
        total += RATES[i] * (end - STARTS[i])
    return total // 48


def setup_time_lost(n):
    rig, pump = make()
    rig.rtc = None  # a board without a real-time clock
    pump = Pump(rig.hardware())
    assert pump.boot() == 0, "reboot"
    warm(rig, pump)
    return ready(rig, pump, n)


def check_time_lost(c):
    pump = c["pump"]
    assert pump.state[S_TIME_SET] == 0 and pump.alarms.active[S.A_TIME_UNSET], "time lost"
    mean = profile_mean()
    assert pump.basal_rate() == mean and c["rate"] == mean, "flat mean basal"
    want = basal_pulses(c["st"][S_BASAL_ACC], ((c["T"], mean),))
    assert moved(c) == want, f"basal pulses {moved(c)} != {want}"
    return {"pulses": moved(c), "rate": mean, "alarms": active_mask(pump)}


def setup_dose_limit(n):
    rig, pump = make(settings=((S.SET_MAX_TDD, 100),))  # two pulses
    warm(rig, pump)
    return ready(rig, pump, n)


def check_dose_limit(c):
    pump = c["pump"]
    assert pump.alarms.active[S.A_DOSE_LIMIT], "24-h limit reached in the run"
    assert pump.state[S_STOP] == S.STOP_NONE and moved(c) > 0, "basal goes on"
    return {"pulses": moved(c), "alarms": active_mask(pump)}


def setup_motor_stall(n):
    rig, pump = make()
    warm(rig, pump)
    rig.motor.stall = True  # the next move, inside the run, does not happen
    return ready(rig, pump, n)


def check_motor_stall(c):
    pump = c["pump"]
    assert pump.alarms.active[S.A_MOTOR_FAULT], "motor fault raised in the run"
    assert pump.state[S_STOP] == S.STOP_SELFTEST and moved(c) == 0, "stopped, nothing moved"
    assert delta(c, S_BASAL_TODAY) == 0, "nothing counted"
    return {"alarms": active_mask(pump)}


# Issue 15: a reservoir filled without a tubing prime and delivery resumed; a reboot raises
# the prime-incomplete alarm (medium) again from the saved state. It repeats every minute,
# escalating, through the locked run while basal goes on.
def setup_prime_incomplete(n):
    ann = LevelAnnunciator()
    rig, pump = make(resume=False, annunciator=ann, settings=((S.SET_ALARM_REPEAT, 1),))
    assert pump.rewind() == S.OK, "rewind"
    assert pump.fill(100000) == S.OK, "fill"
    assert pump.resume() == S.OK, "resume"
    assert pump.alarms.active[S.A_PRIME_INCOMPLETE], "raised at resume"
    pump = Pump(rig.hardware())
    assert pump.boot() == 0, "reboot"
    warm(rig, pump)
    ann.max_level = 0
    return ready(rig, pump, n)


def check_prime_incomplete(c):
    pump = c["pump"]
    ann = c["rig"].annunciator
    a = S.A_PRIME_INCOMPLETE
    assert c["active"][a] and pump.alarms.active[a], "active throughout"
    assert pump.state[S_PRIME] == PRIME_SKIPPED, "persisted"
    medium = ann.sounds[S.PRIO_MEDIUM] - c["sounds"][S.PRIO_MEDIUM]
    assert medium >= c["T"] // MIN_MS - 1, "repeats every minute"
    assert ann.max_level == 2, "escalated to the top level during the run"
    assert pump.state[S_STOP] == S.STOP_NONE and moved(c) > 0, "basal goes on"
    return {"pulses": moved(c), "medium": medium, "alarms": active_mask(pump)}


# Checker self-tests: a method of the pump replaced (inside MicroPython) by one that
# allocates; the harness must report MemoryError for every locked tick (the big int one:
# on 32-bit builds only, where small ints end at 2**30).


def setup_selftest_list(n):
    c = setup_basal(n)

    def check_battery():  # builds a list
        return [1, 2, 3]

    c["pump"]._check_battery = check_battery
    c["patched"] = check_battery
    return c


def setup_selftest_float(n):
    c = setup_basal(n)

    def timers(dt):  # a float
        return dt / 2

    c["pump"]._timers = timers
    c["patched"] = timers
    return c


def setup_selftest_bound(n):
    c = setup_basal(n)
    pump = c["pump"]

    def check_battery():  # a bound method fetched into a local
        f = pump.reservoir_pulses
        return f()

    pump._check_battery = check_battery
    c["patched"] = check_battery
    return c


def setup_selftest_bigint(n):
    c = setup_basal(n)
    pump = c["pump"]

    def timers(dt):  # local time in ms since 2020: above 2**30, a big int on 32-bit only
        return pump.state[S_LOCAL_DAY] * DAY_MS + pump.state[S_LOCAL_MS]

    pump._timers = timers
    c["patched"] = timers
    return c


def check_selftest(c):
    pump = c["pump"]
    assert pump._check_battery is c["patched"] or pump._timers is c["patched"], "patched"
    return {}


STATES = (
    ("basal", setup_basal, check_basal),
    ("temp_abs", setup_temp_abs, check_temp_abs),
    ("temp_pct", setup_temp_pct, check_temp_pct),
    ("bolus_normal", setup_bolus_normal, check_bolus_normal),
    ("bolus_extended", setup_bolus_extended, check_bolus_extended),
    ("bolus_dual", setup_bolus_dual, check_bolus_dual),
    ("suspended", setup_suspended, check_suspended),
    ("alarms", setup_alarms, check_alarms),
    ("bolus_complete", setup_bolus_complete, check_bolus_complete),
    ("occlusion", setup_occlusion, check_occlusion),
    ("reservoir_empty", setup_reservoir_empty, check_reservoir_empty),
    ("battery_dead", setup_battery_dead, check_battery_dead),
    ("storage_fail", setup_storage_fail, check_storage_fail),
    ("day_rollover", setup_day_rollover, check_day_rollover),
    ("temp_expiry", setup_temp_expiry, check_temp_expiry),
    ("auto_off", setup_auto_off, check_auto_off),
    ("clock_wrap", setup_clock_wrap, check_clock_wrap),
    ("cgm_readings", setup_cgm_readings, check_cgm_readings),
    ("urgent_low", setup_urgent_low, check_urgent_low),
    ("sbl", setup_sbl, check_sbl),
    ("time_lost", setup_time_lost, check_time_lost),
    ("dose_limit", setup_dose_limit, check_dose_limit),
    ("motor_stall", setup_motor_stall, check_motor_stall),
    ("prime_incomplete", setup_prime_incomplete, check_prime_incomplete),
    ("selftest_list", setup_selftest_list, check_selftest),
    ("selftest_float", setup_selftest_float, check_selftest),
    ("selftest_bound", setup_selftest_bound, check_selftest),
    ("selftest_bigint", setup_selftest_bigint, check_selftest),
)
SELFTESTS = ("selftest_list", "selftest_float", "selftest_bound", "selftest_bigint")
# States that hold for thousands of ticks (cost measurements)
STEADY = ("basal", "temp_abs", "temp_pct", "bolus_normal", "bolus_extended", "bolus_dual",
          "suspended", "alarms")


def find_state(name):
    for entry in STATES:
        if entry[0] == name:
            return entry
    raise KeyError(name)


def setup_state(name, n):
    return find_state(name)[1](n)


def run_state(name, n):
    """Set up, run n locked ticks, check. Returns the result record (a dict)."""
    entry = find_state(name)
    out = {"state": name, "ticks": n, "run_ms": run_ms(n), "locked": micropython is not None,
           "fails": -1, "first": -1, "values": {}}
    try:
        c = entry[1](n)
        fails, first = locked_run(c["rig"], c["pump"], n, c["press"])
        out["fails"] = fails
        out["first"] = first
        if fails == 0:
            got = elapsed_ms(c)
            assert got == c["T"], f"pump time advanced {got} ms, not {c['T']}"
        out["values"] = entry[2](c)
        out["status"] = "ok"
    except AssertionError as e:
        out["status"] = "assert: " + str(e)
    except Exception as e:  # noqa: BLE001 - reported, not raised: other states still run
        out["status"] = "error: " + repr(e)
    return out


def main_alloc(n, names=None):
    assert n >= MIN_TICKS, f"at least {MIN_TICKS} ticks"
    for entry in STATES:
        if names is None or entry[0] in names:
            print("RESULT " + json.dumps(run_state_guarded(entry[0], n)))


def run_state_guarded(name, n):
    """run_state, minding the wasm build's heap.

    The WASI build (sys.implementation._build == "wasi") crashes with an out-of-bounds
    memory access when a garbage collection runs while Python code is executing (roots
    held in wasm locals are not scanned), explicit gc.collect() included. Its heap is
    1 MB, so a run there must fit without any collection: each state allocates ~35 KB.
    Elsewhere, collect between states."""
    if WASI:
        if gc.mem_free() < HEAP_RESERVE:
            return {"state": name, "ticks": n, "run_ms": run_ms(n), "fails": -1, "first": -1,
                    "locked": True, "values": {}, "status": "heap: run fewer states per run"}
    else:
        gc.collect()
    return run_state(name, n)


# --------------------------------------------------------------------------- scenarios
# Key behaviour checks, run on the unix port and compared with CPython's numbers.


def sc_day_basal(pulse_mu=PULSE, step=1000):
    """A whole Monday of profile basal from midnight: delivered == the programmed integral."""
    rig, pump = make(local_s=0, pulse_mu=pulse_mu)
    pos0 = rig.motor.pos
    drive(rig, pump, DAY_MS, step)
    st = pump.state
    day = [r for r in history(pump) if r[2] == S.H_DAY_TOTAL and r[4] == DAY0]
    return {
        "pulse_mu": pulse_mu,
        "monday": list(pump.day_totals(DAY0)),
        "tuesday": list(pump.day_totals(DAY0 + 1)),
        "day_record": [list(r[4:7]) for r in day],
        "pulses": rig.motor.pos - pos0,
        "day": st[S_LOCAL_DAY],
        "local_ms": st[S_LOCAL_MS],
        "alarms": active_mask(pump),
    }


def sc_bolus_complete():
    """A 2 U normal bolus at 1.5 U/min: progress at 40 s, done at 80 s, logged completed."""
    rig, pump = make()
    st = pump.state
    pos0 = rig.motor.pos
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    bid = pump.detail
    drive(rig, pump, 40000)
    progress = list(pump.bolus_progress())
    t = 40
    while st[S_BOLUS_ID] and t < 600:
        drive(rig, pump, 1000)
        t += 1
    ends = [list(r[3:7]) for r in history(pump) if r[2] == S.H_BOLUS_END]
    return {"bolus_id": bid, "progress_40s": progress, "done_s": t, "ends": ends,
            "bolus_today": st[S_BOLUS_TODAY], "basal_today": st[S_BASAL_TODAY],
            "pulses": rig.motor.pos - pos0, "iob": pump.iob(),
            "last_hour": pump.bolus_last_hour()}


def sc_suspend_bolus():
    """Suspend 30 s into a 3 U bolus: logged interrupted with 0.75 U, never resumed."""
    rig, pump = make()
    st = pump.state
    assert pump.bolus(S.BOLUS_NORMAL, 3000, 0, 0) == S.OK
    bid = pump.detail
    drive(rig, pump, 30000)
    progress = list(pump.bolus_progress())
    assert pump.suspend() == S.OK
    pos = rig.motor.pos
    drive(rig, pump, 60000)
    moved_suspended = rig.motor.pos - pos
    assert pump.resume() == S.OK
    basal0 = st[S_BASAL_TODAY]
    pos = rig.motor.pos
    drive(rig, pump, 600000)
    ends = [list(r[3:7]) for r in history(pump) if r[2] == S.H_BOLUS_END]
    return {"bolus_id": bid, "progress_30s": progress, "ends": ends,
            "moved_suspended": moved_suspended, "bolus_after": st[S_BOLUS_ID],
            "bolus_today": st[S_BOLUS_TODAY],
            "moved_after_resume": rig.motor.pos - pos,
            "basal_after_resume": st[S_BASAL_TODAY] - basal0}


def sc_occlusion():
    """A 5 U bolus into a blocked line: alarm and stop, no make-up after resume."""
    rig, pump = make()
    st = pump.state
    pos0 = rig.motor.pos
    rig.line.occluded = True
    assert pump.bolus(S.BOLUS_NORMAL, 5000, 0, 0) == S.OK
    bid = pump.detail
    t = 0
    while not st[S_STOP] and t < 3600:
        drive(rig, pump, 1000)
        t += 1
    out = {"bolus_id": bid, "alarm_s": t, "stop": st[S_STOP],
           "occlusion_active": pump.alarms.active[S.A_OCCLUSION],
           "relieved": rig.motor.relieved, "kpa": rig.line.read(),
           "blocked_pulses": rig.line.pushed_blocked, "pulses": rig.motor.pos - pos0,
           "ends": [list(r[3:7]) for r in history(pump) if r[2] == S.H_BOLUS_END]}
    pos = rig.motor.pos
    drive(rig, pump, 60000)
    out["moved_stopped"] = rig.motor.pos - pos
    rig.line.occluded = False
    out["resume"] = pump.resume()
    out["occlusion_after_resume"] = pump.alarms.active[S.A_OCCLUSION]
    pos = rig.motor.pos
    bolus0 = st[S_BOLUS_TODAY]
    basal0 = st[S_BASAL_TODAY]
    drive(rig, pump, 600000)
    out["moved_after_resume"] = rig.motor.pos - pos
    out["basal_after_resume"] = st[S_BASAL_TODAY] - basal0
    out["bolus_after_resume"] = st[S_BOLUS_TODAY] - bolus0
    return out


def sc_power_cut():
    """Power dies mid-move 20 s into a 2 U bolus: after reboot the bolus is logged
    interrupted with what the motor really pushed, counted once, never resumed."""
    rig, pump = make()
    pos0 = rig.motor.pos
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    bid = pump.detail
    drive(rig, pump, 20000)
    before = list(pump.bolus_progress())
    rig.motor.cut_after = 2  # dies after 2 pulses of the next movement
    cut = 0
    try:
        drive(rig, pump, 7000, 7000)
    except PowerCut:
        cut = 1
    pos_cut = rig.motor.pos
    pump = Pump(rig.hardware())
    bits = pump.boot()
    st = pump.state
    out = {"bolus_id": bid, "before": before, "cut": cut, "moved": pos_cut - pos0,
           "selftest": bits, "bolus_after_boot": st[S_BOLUS_ID],
           "bolus_today": st[S_BOLUS_TODAY], "basal_today": st[S_BASAL_TODAY],
           "ends": [list(r[3:7]) for r in history(pump) if r[2] == S.H_BOLUS_END]}
    pump = Pump(rig.hardware())  # and once more: nothing counted twice
    pump.boot()
    st = pump.state
    out["boots"] = st[S_BOOTS]
    out["ends_after_second_boot"] = len(
        [r for r in history(pump) if r[2] == S.H_BOLUS_END])
    out["bolus_today_second_boot"] = st[S_BOLUS_TODAY]
    out["basal_today_second_boot"] = st[S_BASAL_TODAY]
    bolus0 = st[S_BOLUS_TODAY]
    drive(rig, pump, 60000)
    out["stop"] = st[S_STOP]
    out["bolus_after_60s"] = st[S_BOLUS_TODAY] - bolus0
    return out


def sc_prime():
    """Issue 15: the prime-incomplete alarm through resumes, reboots and a tubing prime cut
    short by a power cut. Returns, per step, [step, alarm active, S_PRIME], and the alarm's
    history records as [action, value]."""
    a = S.A_PRIME_INCOMPLETE
    rig, pump = make(resume=False)
    steps = []

    def note(step):
        steps.append([step, pump.alarms.active[a], pump.state[S_PRIME]])

    assert pump.rewind() == S.OK and pump.fill(100000) == S.OK, "refill"
    note("fill")
    assert pump.resume() == S.OK, "resume"
    note("resume")
    drive(rig, pump, 60000)
    pump = Pump(rig.hardware())
    pump.boot()
    note("reboot")
    assert pump.suspend() == S.OK, "suspend"
    rig.motor.cut_after = 3  # power dies 3 pulses into a 10-pulse tubing prime
    cut = 0
    try:
        pump.prime(S.PRIME_TUBING, 500)
    except PowerCut:
        cut = 1
    pump = Pump(rig.hardware())
    pump.boot()
    note("prime cut")
    assert pump.prime(S.PRIME_TUBING, 500) == S.OK, "prime"
    note("primed")
    pump = Pump(rig.hardware())
    pump.boot()
    assert pump.resume() == S.OK, "resume primed"
    drive(rig, pump, 60000)
    note("resumed primed")
    log = [[r[3], r[5]] for r in history(pump) if r[2] == S.H_ALARM and r[4] == a]
    return {"steps": steps, "cut": cut, "log": log, "stop": pump.state[S_STOP]}


def sc_day_basal_25():
    return sc_day_basal(25)


def sc_day_basal_10():
    return sc_day_basal(10)


# 5-min readings (minutes from the start): a fall with a suspension before low and its
# auto-resume, a second fall suspended and resumed by hand, the 30-min wait, a third
# suspension, a gap (signal loss) and the reading that ends it.
SENSOR_TRACE = ((5, 150), (10, 140), (15, 130), (20, 120), (25, 100), (30, 85), (35, 75),
                (40, 72), (45, 78), (50, 88), (55, 100), (60, 95), (65, 90), (70, 85),
                (75, 82), (80, 80), (85, 79), (90, 78), (95, 77), (100, 76), (105, 75),
                (140, 120))


def sc_sensor():
    """Sensor link on 5-min readings for 150 min (SNS-1..3), basal 1.2 U/h throughout."""
    rig, pump = make(cgm=list(SENSOR_TRACE), settings=((S.SET_SBL, 1),))
    st = pump.state
    t0 = pump.utc_seconds()
    h0 = pump.history.next_seq
    basal0 = st[S_BASAL_TODAY]
    drive(rig, pump, 72 * MIN_MS)
    sbl_at_72 = pump.cgm.sbl
    resume = pump.resume()  # the user resumes basal by hand: the 30-min wait starts
    drive(rig, pump, 78 * MIN_MS)
    recs = history(pump, h0)
    sbl = [[(r[1] - t0) // 60, r[3], r[4], r[5], r[6]] for r in recs if r[2] == S.H_SBL]
    alarms = [[(r[1] - t0) // 60, S.ALARMS[r[4]][0], r[3]] for r in recs
              if r[2] == S.H_ALARM]
    cgm = pump.cgm
    return {"sbl": sbl, "alarms": alarms, "resume": resume, "sbl_at_72": sbl_at_72,
            "basal_mu": st[S_BASAL_TODAY] - basal0, "readings": cgm.readings,
            "held": [list(cgm.reading(i)) for i in range(cgm.count)][-3:],
            "minute0": t0 // 60, "active": active_mask(pump), "sbl_now": cgm.sbl}


SCENARIOS = (
    ("sensor", sc_sensor),
    ("day_basal", sc_day_basal),
    ("day_basal_25", sc_day_basal_25),
    ("day_basal_10", sc_day_basal_10),
    ("bolus_complete", sc_bolus_complete),
    ("suspend_bolus", sc_suspend_bolus),
    ("occlusion", sc_occlusion),
    ("power_cut", sc_power_cut),
    ("prime", sc_prime),
)


def main_scenarios(names=None):
    for name, fn in SCENARIOS:
        if names is None or name in names:
            print("SCENARIO " + json.dumps({"scenario": name, "values": fn()}))


# --------------------------------------------------------------------------- cost


def cost_us(names, ticks, per_round, step):
    """Per-tick time (time.ticks_us) under heap_lock, `ticks` samples per state taken in
    rounds of `per_round` ticks on a freshly set-up pump. Prints ``COST <json>`` lines."""
    import time

    samples = array("i", [0] * ticks)
    for name in names:
        k = 0
        while k < ticks:
            c = setup_state(name, per_round)
            rig = c["rig"]
            pump = c["pump"]
            clock = rig.clock
            end = k + per_round if k + per_round < ticks else ticks
            micropython.heap_lock()
            try:
                while k < end:
                    clock.advance(step)
                    t0 = time.ticks_us()
                    pump.tick()
                    samples[k] = time.ticks_diff(time.ticks_us(), t0)
                    k += 1
            finally:
                micropython.heap_unlock()
        ordered = sorted(samples)
        print("COST " + json.dumps({
            "state": name, "ticks": ticks, "step_ms": step,
            "median_us": ordered[ticks // 2], "mean_us": sum(ordered) / ticks,
            "p99_us": ordered[ticks * 99 // 100], "max_us": ordered[-1]}))


def fuel_probe(name, plan_n, ticks, step):
    """Set up `name`, then run `ticks` ticks of `step` ms under heap_lock (fuel runs)."""
    c = setup_state(name, plan_n)
    rig = c["rig"]
    pump = c["pump"]
    clock = rig.clock
    i = 0
    if micropython is not None:
        micropython.heap_lock()
    while i < ticks:
        clock.advance(step)
        pump.tick()
        i += 1
    if micropython is not None:
        micropython.heap_unlock()
    print("FUEL " + json.dumps({"state": name, "ticks": ticks, "pulses": moved(c)}))
