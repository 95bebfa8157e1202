"""Link scenarios that run inside MicroPython (unix port) and under CPython alike.

Used by tests/test_link.py (allocation of the request paths under micropython.heap_lock)
and tests/test_link_fuzz.py (seeded fuzz: no exception escapes, bad frames change no pump
state, the next good frame is answered). Runners send this file's source followed by one
call, e.g. ``main_fuzz(2, 5000)``, which prints ``RESULT <json>`` lines. Keep it
importable by MicroPython and CPython: no imports from tests/, no CPython-only syntax.

The fuzz uses its own PRNG (xorshift32) so both runtimes see the very same frames and must
produce the very same link statistics.
"""

import json

from boards.fakes import Rig, Serial
from firmware import wire
from firmware.crc import crc16
from firmware.link import Link
from firmware.pump import Pump
from protocol import spec as S

try:
    import micropython
except ImportError:  # CPython: nothing to lock
    micropython = None

KEY = bytes(range(1, 33))
OTHER_KEY = bytes(range(2, 34))
SIZES = (2048, 2048, 512, 512, 24 * 256, 18 * 96, 256, 256, 1552, 1552, 24 * 16)
MONDAY = 2511 * 86400  # 2026-11-16 00:00 UTC, a Monday
ID = wire.INDEX  # message name -> id


class Rand:
    """xorshift32: the same numbers on every runtime."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n


def bench(key=KEY, ready=True, bolus=True):
    """(rig, pump, link): a booted pump with a serial cable, delivering when `ready`:
    profile, time, reservoir 24.4 U (reservoir-low alarm), a temp basal and (`bolus`) a
    2 U bolus, 20 s after they started."""
    rig = Rig(50, storage_sizes=SIZES)
    rig.serial = Serial()
    rig.key = key
    pump = Pump(rig.hardware())
    pump.boot()
    if ready:
        make_ready(pump)
        if bolus:
            assert pump.bolus(S.BOLUS_NORMAL, 2000, 0, 0) == S.OK
        for _ in range(20):
            rig.clock.advance(1000)
            pump.tick()
    link = Link(pump, rig.hardware())
    while pump.events.count:
        link.poll()  # sends the queued events
    rig.serial.out_count = 0
    return rig, pump, link


def make_ready(pump):
    """A booted pump set up to deliver: profile, time, reservoir 24.4 U (reservoir-low
    alarm), primed, running, a 150 % temp basal for 2 h."""
    assert pump.settings.set(S.SET_RES_LOW, 50000) == S.OK
    assert pump.settings.set_profile(0, b"test", [0, 12, 24], [800, 1500, 1200]) == S.OK
    assert pump.set_time(MONDAY + 13 * 3600, 60) == S.OK
    assert pump.rewind() == S.OK
    assert pump.fill(25000) == S.OK
    assert pump.prime(S.PRIME_TUBING, 500) == S.OK
    assert pump.prime(S.PRIME_CANNULA, 100) == S.OK
    assert pump.resume() == S.OK
    assert pump.set_temp_basal(S.TEMP_PERCENT, 150, 120) == S.OK


def frames(data):
    """Decoded frames in pump output."""
    out = []
    for part in bytes(data).split(b"\x00"):
        if part:
            out.append(wire.decode_frame(part))
    return out


def xfer(rig, link, data):
    rig.serial.send(data)
    link.poll()
    return frames(rig.serial.take())


def snapshot(pump, link):
    al = pump.alarms
    return (list(pump.state), list(pump.settings.values), pump.history.next_seq,
            list(al.active), list(al.acked), list(al.level), pump.events.count, link.counter,
            list(link.values))


# --------------------------------------------------------------------------- allocation
def request_frames():
    """(label, wire bytes, expected answer id) for the paths checked under heap_lock."""
    enc = wire.encode_frame
    bad_crc = bytearray(enc(ID["status"], 1, 0, []))
    bad_crc[3] ^= 0x40
    return [
        ("status", enc(ID["status"], 11, 0, []), 0x82),
        ("hello", enc(ID["hello"], 12, 0, []), 0x81),
        ("get_alarms", enc(ID["get_alarms"], 13, 0, []), 0x88),
        ("get_link_stats", enc(ID["get_link_stats"], 14, 0, []), 0x89),
        ("get_settings", enc(ID["get_settings"], 15, 0, []), 0x85),
        ("get_schedule", enc(ID["get_schedule"], 16, 0, []), 0x84),
        ("get_history", enc(ID["get_history"], 17, 0, [1, 8]), 0x86),
        ("unknown_id", _raw(0x5A, 18, b""), 0x80),
        ("wrong_length", _raw(ID["status"], 19, b"\x01\x02"), 0x80),
        ("unauthenticated", enc(ID["bolus"], 20, 0, [9, 1, 1000, 0, 0]), 0x80),
        ("bad_crc", bytes(bad_crc), 0),
        ("garbage", b"\x03\x07\x00", 0),
        ("get_totals", enc(ID["get_totals"], 21, 0, [2511]), 0x87),
        ("get_profile", enc(ID["get_profile"], 22, 0, [0]), 0x83),
        ("bolus_auth", enc(ID["bolus"], 23, 0, [77, 1, 100, 0, 0], key=KEY, counter=500),
         0x80),
    ]


def _raw(mid, seq, payload, version=S.PROTOCOL_VERSION, flags=0):
    """Wire bytes of an arbitrary frame body with a correct CRC."""
    body = bytearray([version, flags, seq & 0xFF, seq >> 8, mid]) + payload
    c = crc16(body, 0, len(body))
    body.append(c & 0xFF)
    body.append(c >> 8)
    out = bytearray(len(body) + len(body) // 254 + 2)
    n = wire.cobs_encode(body, len(body), out)
    return bytes(out[:n])


def locked_poll(rig, link, data, rounds):
    """Send `data` and poll, `rounds` times, under heap_lock. Returns (MemoryErrors,
    faults added). Allocation-free itself."""
    serial = rig.serial
    fails = 0
    faults = link.faults
    i = 0
    lock = micropython is not None
    if lock:
        micropython.heap_lock()
    try:
        while i < rounds:
            try:
                serial.out_count = 0
                serial.send(data)
                link.poll()
            except MemoryError:
                fails += 1
            i += 1
    finally:
        if lock:
            micropython.heap_unlock()
    return fails, link.faults - faults


def alloc_report(rounds=20):
    """Per request path: MemoryErrors and link faults under heap_lock, and the answer."""
    out = {}
    rig, pump, link = bench()
    for label, data, answer in request_frames():
        xfer(rig, link, data)  # warm up (first-use allocations)
        fails, faults = locked_poll(rig, link, data, rounds)
        got = frames(rig.serial.take())
        out[label] = {"fails": fails, "faults": faults,
                      "answer": got[-1][0] if got else 0,
                      "answer_ok": (got[-1][0] if got else 0) == answer}
    # events: queue some, send them under the lock
    pump.events.put(S.EV_ALARM, 1, 2, 3)
    pump.events.put(S.EV_BOLUS, 1, 100, 2000)
    fails, faults = locked_poll(rig, link, b"", 1)
    got = frames(rig.serial.take())
    out["events"] = {"fails": fails, "faults": faults, "answer": len(got),
                     "answer_ok": [f[0] for f in got] == [0xC0, 0xC0]}
    out["locked"] = micropython is not None
    return out


def main_alloc(rounds=20):
    print("RESULT " + json.dumps(alloc_report(rounds)))


# --------------------------------------------------------------------------- fuzz
def _stuff(body):
    out = bytearray(len(body) + len(body) // 254 + 2)
    n = wire.cobs_encode(body, len(body), out)
    return bytes(out[:n])


def _with_crc(body):
    body = bytearray(body)
    c = crc16(body, 0, len(body))
    body.append(c & 0xFF)
    body.append(c >> 8)
    return body


def _unstuff(wire_bytes):
    dec = wire.Decoder()
    dec.feed(wire_bytes, 0, len(wire_bytes))
    return bytearray(dec.buf[:dec.size])


def _sample_values(mid, r):
    vals = []
    kinds = wire.KINDS[mid]
    for i in range(len(kinds)):
        k = kinds[i]
        if k == 0:
            n = wire.LENGTHS[mid][i]
            vals.append(bytes([r.below(256) for _ in range(n)]))
        elif k > 0:
            vals.append(r.next() & ((1 << (8 * k)) - 1) if r.below(2) else r.below(4))
        else:
            bits = -8 * k
            vals.append((r.next() & ((1 << bits) - 1)) - (1 << (bits - 1)))
    return vals


def fuzz_corpus(r, link_counter):
    """Valid frames to mutate: every query and every command (commands signed with
    counters already used: exact copies are replays)."""
    out = []
    for mid in sorted(S.MESSAGES):
        if mid >= 0x80:
            continue
        vals = _sample_values(mid, r)
        if mid < S.CMD_FIRST:
            out.append(wire.encode_frame(mid, r.below(65536), 0, vals))
        else:
            out.append(wire.encode_frame(mid, r.below(65536), 0, vals, key=KEY,
                                         counter=1 + r.below(link_counter)))
            out.append(wire.encode_frame(mid, r.below(65536), 0, vals, key=OTHER_KEY,
                                         counter=link_counter + 1 + r.below(1000)))
    return out


def bad_frame(r, corpus):
    """One malformed input (ends with the 0x00 delimiter)."""
    kind = r.below(10)
    base = corpus[r.below(len(corpus))]
    if kind == 0:  # random bytes, zeros included
        return bytes([r.below(256) for _ in range(1 + r.below(80))]) + b"\x00"
    if kind == 1:  # random non-zero bytes, up to twice the longest frame
        return bytes([1 + r.below(255) for _ in range(1 + r.below(2 * S.MAX_FRAME))]) + b"\x00"
    if kind == 2:  # truncated wire frame
        return base[:1 + r.below(len(base) - 2)] + b"\x00"
    if kind == 3:  # bytes of the stuffed frame changed
        b = bytearray(base[:-1])
        for _ in range(1 + r.below(3)):
            b[r.below(len(b))] = r.below(256)
        return bytes(b) + b"\x00"
    body = _unstuff(base)[:-2]  # frame without its CRC
    if kind == 4:  # content changed, CRC right
        for _ in range(1 + r.below(3)):
            body[r.below(len(body))] ^= 1 + r.below(255)
    elif kind == 5:  # header fields changed, CRC right
        which = r.below(3)
        if which == 0:
            body[0] = r.below(256)  # version
        elif which == 1:
            body[1] = r.below(256)  # flags
        else:
            body[4] = r.below(256)  # message id
    elif kind == 6:  # length changed, CRC right
        if r.below(2) and len(body) > 1:
            at = r.below(len(body))
            body = body[:at] + body[at + 1:]
        else:
            at = r.below(len(body) + 1)
            body = body[:at] + bytes([r.below(256)]) + body[at:]
    elif kind == 7:  # exact copy (commands: a replayed counter)
        pass
    elif kind == 8:  # auth trailer removed (commands) or garbage trailer added
        if body[1] & S.F_AUTH:
            body = body[:len(body) - S.AUTH_SIZE]
            body[1] &= ~S.F_AUTH
        else:
            body[1] |= S.F_AUTH
            body += bytes([r.below(256) for _ in range(S.AUTH_SIZE)])
    else:  # longer than any frame, CRC right
        body += bytes([r.below(256) for _ in range(S.MAX_FRAME)])
    return _stuff(_with_crc(body))


def fuzz(seed, n):
    """n malformed inputs, each followed by a good query that must be answered."""
    r = Rand(seed)
    rig, pump, link = bench()
    # a few real commands, so replays have counters to replay
    for i in range(1, 6):
        got = xfer(rig, link, wire.encode_frame(ID["get_alarms"], i, 0, []))
        assert got[-1][0] == 0x88
    got = xfer(rig, link, wire.encode_frame(ID["ack_alarm"], 1, 0, [1000, S.A_RESERVOIR_LOW],
                                            key=KEY, counter=40))
    assert got[0][0] == 0x80 and got[0][3][1] == S.OK, "ack"
    got = xfer(rig, link, wire.encode_frame(ID["set_setting"], 2, 0, [1001, S.SET_SNOOZE, 40],
                                            key=KEY, counter=50))
    assert got[0][0] == 0x80 and got[0][3][1] == S.OK, "set_setting"
    corpus = fuzz_corpus(r, 50)
    before = snapshot(pump, link)
    hello = wire.encode_frame(ID["hello"], 0xFFFF, 0, [])
    status = wire.encode_frame(ID["status"], 0xFFFE, 0, [])
    serial = rig.serial
    answered = 0
    responses = 0
    for i in range(n):
        data = bad_frame(r, corpus)
        good = hello if i & 1 else status
        # the bytes arrive in pieces of random size
        at = 0
        while at < len(data):
            step = 1 + r.below(64)
            serial.send(data[at:at + step])
            link.poll()
            at += step
        serial.send(good)
        link.poll()
        out = frames(serial.take())  # every output frame must decode
        responses += len(out)
        last = out[-1]
        if last[1] == (0xFFFF if i & 1 else 0xFFFE) and last[0] == (0x81 if i & 1 else 0x82):
            answered += 1
    after = snapshot(pump, link)
    return {
        "frames": n,
        "answered": answered,
        "responses": responses,
        "faults": link.faults,
        "unchanged": before == after,
        "diff": [i for i in range(len(before)) if before[i] != after[i]],
        "stats": list(link.stats),
        "overflow": serial.overflow,
    }


def main_fuzz(seed, n):
    print("RESULT " + json.dumps(fuzz(seed, n)))
