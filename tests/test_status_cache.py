"""The kept status payload (firmware/status.py, issue 12) is never stale: after every step
of a random sequence of commands (boluses, temp basals, suspend/resume, settings,
profiles, schedules, clock and UTC-offset changes, rewind/fill/prime, alarm
acknowledgements), ticks of every length (slot boundaries, midnight, temp-basal and bolus
ends), failing saves, CGM readings and sensor states, battery changes, button presses and
writes straight into the pump's state, the status the cache answers equals one packed
from the pump at that moment, byte for byte.

The cache is on where the runtime has a native emitter (the ARM image, the unix port);
here, on CPython, it is switched on with the portable compare and copy (the viper ones
agree with them byte for byte: tests/test_native.py)."""

import random
import struct

import pytest

from boards.fakes import Radio, Rig
from firmware import layout as LY
from firmware import status as ST
from firmware.doses import BOLUS_N, D_BOLUS
from firmware.hal import BUTTON_ACK
from firmware.layout import S_BATTERY, S_BUCKET, S_LOCAL_MS, S_MONO_S, V_RATES, V_SCHEDULE
from firmware.pump import Pump, minutes_left
from firmware.settings import at
from protocol import spec as S
from tests.pumpkit import MONDAY_2026

SLOTS = S.SLOTS  # 30-minute basal segments a day

STARTS = (0, 12, 18, 24, 36, 44)
RATES = (800, 1500, 2400, 1200, 1800, 900)


def _pump():
    rig = Rig(50)
    rig.radio = Radio(rig.clock)
    pump = Pump(rig.hardware())
    assert pump.boot() == 0
    assert pump.settings.set_profile(0, b"test", list(STARTS), list(RATES)) == S.OK
    assert pump.set_time(MONDAY_2026 + 23 * 3600, 0) == S.OK  # an hour before midnight
    assert pump.rewind() == S.OK
    assert pump.fill(300000) == S.OK
    assert pump.prime(S.PRIME_TUBING, 500) == S.OK
    assert pump.prime(S.PRIME_CANNULA, 100) == S.OK
    assert pump.resume() == S.OK
    return rig, pump


def _command(pump, rig, rng):
    op = rng.randrange(20)
    if op == 0:
        pump.bolus(S.BOLUS_NORMAL, rng.choice((100, 1000, 3000)), 0, 0)
    elif op == 1:
        pump.bolus(S.BOLUS_DUAL, 500, rng.choice((500, 2000)), rng.choice((30, 120)))
    elif op == 2:
        pump.cancel_bolus()
    elif op == 3:
        pump.set_temp_basal(rng.choice((S.TEMP_ABSOLUTE, S.TEMP_PERCENT)),
                            rng.choice((0, 50, 150, 2000)), rng.choice((30, 60)))
    elif op == 4:
        pump.cancel_temp_basal()
    elif op == 5:
        pump.suspend()
    elif op == 6:
        pump.resume()
    elif op == 7:
        sid = rng.choice((S.SET_DIA, S.SET_RES_LOW, S.SET_MAX_BASAL, S.SET_BOLUS_SPEED,
                          S.SET_SBL))
        lo, hi = S.SETTINGS[sid][2], S.SETTINGS[sid][3]
        pump.settings.set(sid, rng.randint(lo, hi))
    elif op == 8:
        rates = [rng.choice((0, 300, 1000, 2500)) for _ in STARTS]
        pump.settings.set_profile(rng.randrange(2), b"p", list(STARTS), rates)
    elif op == 9:
        pump.settings.set_schedule([rng.randrange(2) for _ in range(7)])
    elif op == 10:
        pump.set_time(pump.utc_seconds() + rng.choice((-7200, 1800, 3 * 3600)),
                      rng.choice((0, 60, -120)))
    elif op == 11:
        pump.suspend()
        pump.rewind()
        pump.fill(rng.choice((100000, 300000)))
        pump.prime(S.PRIME_TUBING, 200)
    elif op == 12:
        pump.ack_alarm(rng.randrange(S.ALARM_COUNT))
    elif op == 13:
        rig.radio.push(rng.choice((45, 70, 120, 180, 260, 400)))
    elif op == 14:
        rig.radio.push(rng.choice((S.CGM_WARMUP, S.CGM_EXPIRED)))
    elif op == 15:
        rig.battery.level = rng.choice((3, 15, 60, 100))
    elif op == 16:
        rig.buttons.press(BUTTON_ACK)
    elif op == 17:
        pump.state[S_BATTERY] = rng.randrange(101)  # written straight into the state
    elif op == 18:
        pump.state[S_LOCAL_MS] += rng.choice((1000, 60000))
    else:
        rig.radio.lost = not rig.radio.lost


def _reference(pump):
    """status_info's payload from the pump's own methods, one by one: what the status
    must say, independent of status.py's packing."""
    st = pump.state
    rate = pump.basal_rate()
    reservoir = pump.reservoir_mu()
    mask = sum(1 << i for i in range(S.ALARM_COUNT) if pump.alarms.active[i])
    bolus_id, delivered, requested = pump.bolus_progress()
    cgm = pump.cgm
    return struct.pack(
        ST.FORMAT, pump.stop_reason(), rate, pump.settings.profile_rate(),
        st[LY.S_TEMP_KIND], st[LY.S_TEMP_VALUE], st[LY.S_TEMP_LEFT] // 60000, bolus_id,
        st[LY.S_BOLUS_KIND], delivered, requested, reservoir, minutes_left(reservoir, rate),
        st[S_BATTERY], pump.iob(), st[LY.S_BASAL_TODAY], st[LY.S_BOLUS_TODAY], mask,
        pump.utc_seconds(), pump.setting(S.SET_UTC_OFFSET), st[LY.S_TIME_SET],
        st[LY.S_LAST_CMD], st[LY.S_LAST_CODE], st[LY.S_LAST_DETAIL], pump.history.next_seq,
        pump.selftest_bits, cgm.last, cgm.age_min(), cgm.trend, cgm.flags())


def _fresh(snap, buf):
    """The payload packed from the pump (the class's _pack, past _counting's wrapper), its
    keys read through Settings.profile_rate and Pump.utc_seconds, not pack_into's inline
    copies."""
    pump = snap.pump
    ST.Status._pack(snap, buf, 0, pump.settings.profile_rate(), pump.setting(S.SET_UTC_OFFSET),
                    pump.utc_seconds())


def _check(snap, cached, fresh):
    snap.pack_into(cached, 0)
    _fresh(snap, fresh)
    assert cached == fresh
    assert cached == _reference(snap.pump)


def _counting(snap):
    """Count the packs pack_into makes (the other statuses are the kept payload)."""
    packs = [0]
    pack = snap._pack

    def counted(buf, at, *keys):
        packs[0] += 1
        pack(buf, at, *keys)

    snap._pack = counted
    return packs


@pytest.mark.req("LNK-3", "LNK-6")
@pytest.mark.parametrize("seed", range(4))
def test_the_kept_status_equals_a_fresh_one_after_every_step(seed):
    rng = random.Random(seed)
    rig, pump = _pump()
    snap = ST.snapshot(pump)
    snap.cache = True
    packs = _counting(snap)
    cached = bytearray(ST.SIZE)
    fresh = bytearray(ST.SIZE)
    calls = 0
    for _ in range(300):
        rig.storage.fail = rng.random() < 0.1  # failed saves: settings revert, state stays
        if rng.random() < 0.5:
            _command(pump, rig, rng)
        rig.storage.fail = False
        # statuses right after the change, then (the kept one) before any tick
        for _ in range(3):
            _check(snap, cached, fresh)
            calls += 1
        for _ in range(rng.randrange(0, 4)):
            rig.clock.advance(rng.choice((100, 1000, 7000, 600000, 1800000)))
            pump.tick()
            _check(snap, cached, fresh)
            calls += 1
    assert 300 < packs[0] < calls - 250  # both paths ran: packed, and kept


def _pokes(rig, pump):
    """One change of each status input, made alone (straight into the object, touching
    no other input), each changing the status: (name, change)."""
    v = pump.settings.values
    st = pump.state
    cgm = pump.cgm
    slot = V_RATES + SLOTS * v[V_SCHEDULE + pump.weekday()] + st[S_LOCAL_MS] // S.SLOT_MS
    closed = D_BOLUS + (st[S_BUCKET] - 1) % BOLUS_N

    def doses():
        pump.doses.v[closed] += 1000
        pump.doses.gen += 1

    def alarm():
        pump.alarms.active[S.A_BATTERY_LOW] = 1
        pump.alarms.count += 1

    def iob_minute():  # the CGM reading as old as before: only the IOB's minute moves
        st[S_MONO_S] += 60
        cgm.last_s += 60

    def poke(obj, name, value):
        return lambda: setattr(obj, name, value(getattr(obj, name)))

    return [
        ("motor position", poke(rig.motor, "pos", lambda x: x + 3)),
        ("profile rate", lambda: v.__setitem__(slot, v[slot] + 100)),
        ("UTC offset", lambda: v.__setitem__(at(S.SET_UTC_OFFSET), 60)),
        ("DIA", lambda: v.__setitem__(at(S.SET_DIA), v[at(S.SET_DIA)] + 60)),
        ("dose rings", doses),
        ("history head", poke(pump.history, "next_seq", lambda x: x + 1)),
        ("self-test bits", poke(pump, "selftest_bits", lambda x: x | 4)),
        ("CGM value", poke(cgm, "last", lambda x: x + 9)),
        ("CGM age", poke(cgm, "last_s", lambda x: x - 600)),
        ("CGM readings", poke(cgm, "readings", lambda x: 0)),
        ("CGM sensor", poke(cgm, "sensor", lambda x: S.CGMF_WARMUP)),
        ("CGM trend", poke(cgm, "trend", lambda x: x + 5)),
        ("alarm", alarm),
        ("state", lambda: st.__setitem__(S_BATTERY, st[S_BATTERY] - 1)),
        # the state words the comparison skips, through what the status makes of them
        ("clock second (utc)", lambda: st.__setitem__(S_LOCAL_MS, st[S_LOCAL_MS] + 1000)),
        ("IOB minute", iob_minute),
        ("temp basal minute", lambda: st.__setitem__(LY.S_TEMP_LEFT,
                                                     st[LY.S_TEMP_LEFT] - 60000)),
    ]


@pytest.mark.req("LNK-3", "LNK-6")
def test_each_input_alone_moves_the_kept_status():
    """Sensitivity: an unchanged status is answered from the kept payload, and each
    input changed alone (no other input moving with it) makes a new one: drop any input
    from the comparison and this fails."""
    rig, pump = _pump()
    rig.radio.push(150)
    assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
    assert pump.set_temp_basal(S.TEMP_PERCENT, 150, 120) == S.OK
    for _ in range(40):  # 20 min: the bolus is in the closed buckets, a CGM reading
        rig.clock.advance(30000)
        pump.tick()
    assert pump.cgm.readings and pump.iob() > 0
    snap = ST.snapshot(pump)
    snap.cache = True
    out = bytearray(ST.SIZE)
    fresh = bytearray(ST.SIZE)
    snap.pack_into(out, 0)
    snap.payload[0] ^= 0x55  # marks the kept payload: answered while nothing changes
    snap.pack_into(out, 0)
    assert out[0] == snap.payload[0]
    snap.payload[0] ^= 0x55
    for name, change in _pokes(rig, pump):
        before = bytes(out)
        change()
        snap.pack_into(out, 0)
        _fresh(snap, fresh)
        assert out == fresh, name
        assert out == _reference(pump), name
        assert out != before, name  # the change shows in the status


def _bolus_pump():
    rig, pump = _pump()
    rig.radio.push(150)
    assert pump.bolus(S.BOLUS_DUAL, 2000, 1000, 60) == S.OK
    assert pump.set_temp_basal(S.TEMP_PERCENT, 150, 120) == S.OK
    for _ in range(40):
        rig.clock.advance(30000)
        pump.tick()
    assert pump.iob() > 0 and pump.cgm.readings and pump.state[LY.S_BOLUS_ID]
    return rig, pump


@pytest.mark.req("LNK-3", "LNK-6")
@pytest.mark.parametrize("delta", [1, -1, 999, 1000, 59999, 60000, 300, 1800000])
def test_each_state_word_changed_alone_is_never_stale(delta):
    """Every word of the state array, the ones the comparison skips too (the clocks, the
    accumulators), changed alone by steps below and at the resolutions the status reads
    them (ms, s, min, the 5-min dose bucket, the 30-min slot): the status answered is
    the fresh one. Drop a word the status reads into the skipped ones, or a minute value
    from the key, and this fails."""
    rig, pump = _bolus_pump()
    snap = ST.snapshot(pump)
    snap.cache = True
    cached = bytearray(ST.SIZE)
    fresh = bytearray(ST.SIZE)
    st = pump.state
    checked = 0
    for i in range(len(st)):
        _check(snap, cached, fresh)
        _check(snap, cached, fresh)  # kept
        old = st[i]
        st[i] = old + delta
        try:
            _reference(pump)
        except struct.error:  # a word packed into a byte: no status for that state
            st[i] = old
            continue
        _check(snap, cached, fresh)
        checked += 1
        st[i] = old
    _check(snap, cached, fresh)
    assert checked >= len(st) // 2 if delta > 255 or delta < 0 else checked > 45


@pytest.mark.req("LNK-3", "LNK-6")
def test_a_tick_that_moves_only_the_clock_keeps_the_payload():
    """100-ms ticks in a dual bolus's extended part and a temp basal: the status after
    each is the fresh one; it is packed again only when something it shows moved beyond
    the clock's second (a pulse, a minute boundary), and the utc field of the kept
    payload follows the clock."""
    rig, pump = _bolus_pump()
    snap = ST.snapshot(pump)
    snap.cache = True
    packs = _counting(snap)
    cached = bytearray(ST.SIZE)
    fresh = bytearray(ST.SIZE)
    _check(snap, cached, fresh)
    utc = ST._OFF[ST.INDEX["utc"]]
    first = packs[0]
    seen = set()
    for _ in range(600):  # 60 s
        rig.clock.advance(100)
        pump.tick()
        _check(snap, cached, fresh)
        seen.add(bytes(cached[utc:utc + 4]))
    assert len(seen) >= 60  # the utc field moved every second
    assert 0 < packs[0] - first < 60  # kept after most ticks, packed again after some


@pytest.mark.req("LNK-3", "LNK-6")
@pytest.mark.parametrize("changed", ["state", "motor"])
def test_a_pack_cut_short_keeps_no_payload(changed):
    """The inputs are taken before the pack: a pack that raised half-way (a driver fault)
    leaves no kept payload, so the next status is packed again, not the older one."""
    rig, pump = _pump()
    snap = ST.snapshot(pump)
    snap.cache = True
    out = bytearray(ST.SIZE)
    snap.pack_into(out, 0)
    snap.pack_into(out, 0)
    assert snap.valid
    if changed == "state":
        pump.state[S_BATTERY] -= 1
    else:
        rig.motor.pos += 3  # not in the state array: the reservoir

    def broken():
        raise OSError("driver fault")

    pump.iob = broken
    with pytest.raises(OSError):
        snap.pack_into(out, 0)
    del pump.iob
    fresh = bytearray(ST.SIZE)
    _fresh(snap, fresh)
    snap.pack_into(out, 0)
    assert out == fresh
    assert out[ST._OFF[ST.INDEX["battery"]]] == pump.state[S_BATTERY]
    res = ST._OFF[ST.INDEX["reservoir"]]
    assert int.from_bytes(out[res:res + 4], "little") == pump.reservoir_mu()
