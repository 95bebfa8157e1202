"""Fuzz campaign guest code: runs on the MicroPython unix port (and under CPython alike).

One call, ``main_chunk(seed, n, sample)``, feeds ``n`` malformed inputs to the firmware
link of a booted, delivering pump (tests/mp_link.bench: a temp basal and a bolus running,
alarms active, 50 authenticated commands accepted before) and prints ``RESULT <json>``.

The inputs are tests/mp_link.bad_frame's ten kinds (random bytes, oversized, truncated,
stuffed bytes changed, content / header / length changed with the CRC made right, exact
replays of signed commands, auth trailer removed or added, longer than any frame) plus:

  10  two frames spliced at random points, CRC made right
  11  1..4 single-bit flips in the unstuffed frame, CRC left as it was
  12  a frame cut off with no delimiter (the host's next frame must resync with 0x00)
  13  a burst of 2..5 bad inputs in one write
  14  runs of delimiters (empty frames)

Each input arrives in pieces of random size. After a random ``sample`` per cent of them
a good query follows (status or hello, alternating; with a leading 0x00 when the bad input
left a frame open, as hosts do to resync) and must be answered at once. Every byte the pump
writes must decode as a frame, and no RESULT the pump sends may carry OK (a bad command
acted). The pump runs meanwhile: after each input both it and a twin pump that gets no
input are ticked (TICK_MS of board time), and every poll of the link is mirrored on the
twin's. At the end of the chunk the pump state (tests/mp_link.snapshot: state, settings,
history head, alarms, event queue, auth counter, command-id ring) must be the twin's: bad
input changed nothing that delivery did not change on both. No exception may have escaped
the link or been caught inside it (link.faults), and a genuine authenticated command must
still be accepted.
"""

import json

from firmware import wire
from firmware.pump import S_BASAL_TODAY, S_BOLUS_TODAY
from tests import mp_link as M

ID = wire.INDEX
KINDS = 15
M_RESULT = 0x80
TICK_MS = 100  # board time between two inputs: the pump delivers during the chunk


def _flip_bits(r, body):
    b = bytearray(body)
    for _ in range(1 + r.below(4)):
        i = r.below(len(b))
        b[i] ^= 1 << r.below(8)
    return b


def bad_input(r, corpus):
    """(kind, bytes, leaves_open): one malformed input."""
    kind = r.below(KINDS)
    if kind < 10:
        peek = M.Rand(1)
        peek.s = r.s
        kind = peek.below(10)  # the kind bad_frame is about to draw
        return kind, M.bad_frame(r, corpus), False
    base = corpus[r.below(len(corpus))]
    if kind == 10:
        a = M._unstuff(base)[:-2]
        b = M._unstuff(corpus[r.below(len(corpus))])[:-2]
        cut_a = r.below(len(a) + 1)
        cut_b = r.below(len(b) + 1)
        return kind, M._stuff(M._with_crc(a[:cut_a] + b[cut_b:])), False
    if kind == 11:
        return kind, M._stuff(_flip_bits(r, M._unstuff(base))), False
    if kind == 12:
        return kind, base[:1 + r.below(len(base) - 1)], True
    if kind == 13:
        out = b""
        for _ in range(2 + r.below(4)):
            out += M.bad_frame(r, corpus)
        return kind, out, False
    return kind, b"\x00" * (1 + r.below(8)), False


def check_output(data):
    """Decode every frame the pump wrote; returns (frames, undecodable, results with OK)."""
    got = []
    bad = 0
    ok = 0
    for part in bytes(data).split(b"\x00"):
        if not part:
            continue
        try:
            f = wire.decode_frame(part)
        except ValueError:
            bad += 1
            continue
        got.append(f)
        if f[0] == M_RESULT and f[3][1] == 0:
            ok += 1
    return got, bad, ok


def _ready():
    rig, pump, link = M.bench()
    for i in range(1, 6):
        M.xfer(rig, link, wire.encode_frame(ID["get_alarms"], i, 0, []))
    M.xfer(rig, link, wire.encode_frame(ID["ack_alarm"], 1, 0, [1000, 8], key=M.KEY,
                                        counter=40))
    M.xfer(rig, link, wire.encode_frame(ID["set_setting"], 2, 0, [1001, 9, 40], key=M.KEY,
                                        counter=50))
    return rig, pump, link


def chunk(seed, n, sample):
    r = M.Rand(seed)
    rig, pump, link = _ready()
    twin_rig, twin, twin_link = _ready()  # the same pump, no bad input
    serial = rig.serial
    corpus = M.fuzz_corpus(r, 50)

    def poll():
        twin_link.poll()
        twin_rig.serial.take()
        link.poll()

    def tick():
        for g, p in ((rig, pump), (twin_rig, twin)):
            g.clock.advance(TICK_MS)
            p.tick()
    hello = wire.encode_frame(ID["hello"], 0xFFFF, 0, [])
    status = wire.encode_frame(ID["status"], 0xFFFE, 0, [])
    kinds = [0] * KINDS
    sampled = answered = escapes = undecodable = accepted = responses = 0
    open_frame = False
    for i in range(n):
        kind, data, leaves_open = bad_input(r, corpus)
        kinds[kind] += 1
        at = 0
        while at < len(data):
            step = 1 + r.below(64)
            serial.send(data[at:at + step])
            try:
                poll()
            except Exception:
                escapes += 1
            at += step
        open_frame = leaves_open or (open_frame and b"\x00" not in data)
        if r.below(100) < sample:
            sampled += 1
            good = hello if i & 1 else status
            if open_frame:
                serial.send(b"\x00")
                open_frame = False
            serial.send(good)
            try:
                poll()
            except Exception:
                escapes += 1
            frames, bad, ok = check_output(serial.take())
            undecodable += bad
            accepted += ok
            responses += len(frames)
            want = (0x81, 0xFFFF) if i & 1 else (0x82, 0xFFFE)
            if frames and (frames[-1][0], frames[-1][1]) == want:
                answered += 1
        else:
            frames, bad, ok = check_output(serial.take())
            undecodable += bad
            accepted += ok
            responses += len(frames)
        tick()
    before = M.snapshot(twin, twin_link)  # what the pump would be without the bad input
    after = M.snapshot(pump, link)
    # the link still takes a genuine authenticated command
    if open_frame:
        serial.send(b"\x00")
    done = M.xfer(rig, link, wire.encode_frame(ID["set_setting"], 3, 0, [1002, 9, 41],
                                               key=M.KEY, counter=link.counter + 1))
    genuine_ok = bool(done) and done[-1][0] == M_RESULT and done[-1][3][1] == 0
    return {
        "seed": seed,
        "inputs": n,
        "ticks": n,
        "delivered": twin.state[S_BASAL_TODAY] + twin.state[S_BOLUS_TODAY],
        "kinds": kinds,
        "sampled": sampled,
        "answered": answered,
        "responses": responses,
        "escapes": escapes,
        "faults": link.faults,
        "undecodable": undecodable,
        "accepted": accepted,
        "unchanged": before == after,
        "diff": [i for i in range(len(before)) if before[i] != after[i]],
        "overflow": serial.overflow,
        "stats": list(link.stats),
        "genuine_ok": genuine_ok,
    }


def main_chunk(seed, n, sample=50):
    print("RESULT " + json.dumps(chunk(seed, n, sample)))
