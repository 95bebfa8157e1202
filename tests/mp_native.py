"""Guest code of tests/test_native.py: the viper byte loops (firmware/native.py) against
their portable bytecode twins, byte for byte, on every message of the table.

Runs inside MicroPython (the unix port, the QEMU ARM board). ``main_native(rounds)`` prints
one ``NATIVE <json>`` line. Its own xorshift32, so every runtime checks the same bytes.
"""

import json
import struct
from array import array

from firmware import crc, hmac_portable, native, portable, wire
from protocol.spec import AUTH_SIZE, CRC_SIZE, HEADER_SIZE, MAX_FRAME, MESSAGES


class Rand:
    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x


def fill(buf, n, rnd, style):
    """Frame-like bytes: 0 random, 1 all zero, 2 all 0xFF (COBS block limits), 3 mostly
    zero, 4 mostly 0xFF with a zero now and then."""
    for i in range(n):
        r = rnd.next()
        if style == 0:
            b = r & 0xFF
        elif style == 1:
            b = 0
        elif style == 2:
            b = 0xFF
        elif style == 3:
            b = (r >> 8) & 0xFF if r & 7 == 0 else 0
        else:
            b = 0 if r % 97 == 0 else 0xFF
        buf[i] = b


def frame_values(mid, rnd):
    """Random field values for message `mid` (ints within their kind, bytes fields)."""
    values = []
    for i, kind in enumerate(wire.KINDS[mid]):
        if kind == 0:
            values.append(bytes((rnd.next() >> 3) & 0xFF
                                for _ in range(wire.LENGTHS[mid][i])))
        else:
            bits = 8 * (kind if kind > 0 else -kind)
            v = rnd.next() & ((1 << bits) - 1)
            if kind < 0 and v >= 1 << (bits - 1):
                v -= 1 << bits
            values.append(v)
    return values


def compare(buf, n, out_a, out_b):
    """(crc agrees, cobs agrees) for buf[0:n]."""
    ok_crc = portable.crc16(buf, 0, n) == native.crc16(buf, 0, n)
    for i in range(len(out_a)):
        out_a[i] = 0x55
        out_b[i] = 0x55
    la = portable.cobs_encode(buf, n, out_a)
    lb = native.cobs_encode(buf, n, out_b)
    return ok_crc, la == lb and out_a == out_b


def feed_both(stream, cap, splits, rnd, feeds=None):
    """Feed `stream` to the viper and the portable COBS decoder loops in the same random
    pieces; True if every return index, state word and decoded byte agrees."""
    bufs = (bytearray(cap), bytearray(cap))
    sts = (array("i", [0] * 7), array("i", [0] * 7))
    for st in sts:
        st[wire.D_CAP] = cap
    feeds = feeds or (native.cobs_feed, portable.cobs_feed)
    i = (0, 0)
    end = len(stream)
    while i[0] < end:
        stop = end if not splits else min(end, i[0] + 1 + rnd.next() % splits)
        i = tuple(feeds[k](stream, i[k], stop, bufs[k], sts[k]) for k in (0, 1))
        if i[0] != i[1] or sts[0] != sts[1] or bufs[0] != bufs[1]:
            return False
        sts[0][wire.D_DONE] = sts[1][wire.D_DONE] = 0
    return True


def feed_cases(rnd, rounds):
    """(cases, bad) of the decoder loops on frames of every message, run together with
    garbage, empty frames, bad COBS and frames longer than the buffer, in random pieces."""
    bad = []
    cases = 0
    for mid in sorted(MESSAGES):
        for r in range(rounds):
            key = bytes(range(32)) if r & 1 else None
            data = wire.encode_frame(mid, r, 0, frame_values(mid, rnd), key=key,
                                     counter=rnd.next() >> 2)
            junk = bytearray(1 + rnd.next() % 40)
            fill(junk, len(junk), rnd, r % 5)
            stream = bytes(junk) + b"\x00" + data + b"\x00" + data[: len(data) // 2] + data
            cap = MAX_FRAME if r % 3 else max(1, len(data) - 3)  # too long for the buffer
            if not feed_both(stream, cap, r % 4 * 7, rnd):
                bad.append([mid, r, "feed"])
            cases += 1
    return cases, bad


def feed_sensitive(rnd):
    """feed_both can fail: a twin that decodes one byte wrong disagrees."""
    def wrong(chunk, i, end, buf, st):
        i = portable.cobs_feed(chunk, i, end, buf, st)
        if st[wire.D_DONE] and st[wire.D_SIZE] > 5:
            buf[5] ^= 1
        return i

    data = wire.encode_frame(0x82, 7, 0, frame_values(0x82, rnd))
    return (feed_both(data, MAX_FRAME, 0, rnd)
            and not feed_both(data, MAX_FRAME, 0, rnd, (native.cobs_feed, wrong)))


def main_native(rounds):
    rnd = Rand(12345)
    buf = bytearray(MAX_FRAME)
    out_a = bytearray(wire.COBS_MAX)
    out_b = bytearray(wire.COBS_MAX)
    checked = 0
    bad = []
    messages = 0
    for mid in sorted(MESSAGES):
        messages += 1
        for r in range(rounds):
            # a real frame of this message, signed every other round (CRC and MAC inside)
            key = bytes(range(32)) if r & 1 else None
            data = wire.encode_frame(mid, r, 0, frame_values(mid, rnd), key=key,
                                     counter=rnd.next() >> 2)
            dec = wire.Decoder()
            dec.feed(data, 0, len(data))
            n = dec.size
            ok = compare(dec.buf, n, out_a, out_b)
            # the native encoder's wire bytes are the frame as received
            if not (ok[0] and ok[1]) or bytes(out_b[:len(data)]) != data:
                bad.append([mid, r, "frame"])
            checked += 1
            # the same length with edge-case bytes
            n = HEADER_SIZE + wire.SIZE[mid] + (AUTH_SIZE if r & 1 else 0) + CRC_SIZE
            fill(buf, n, rnd, r % 5)
            ok = compare(buf, n, out_a, out_b)
            if not (ok[0] and ok[1]):
                bad.append([mid, r, "bytes"])
            checked += 1
    # every length up to a full frame, around the 254-byte COBS block
    for n in range(MAX_FRAME + 1):
        fill(buf, n, rnd, n % 5)
        ok = compare(buf, n, out_a, out_b)
        if not (ok[0] and ok[1]):
            bad.append([-1, n, "length"])
        checked += 1
    # state images (store.Slots): the array's bytes copied against struct "<i" per value
    for r in range(rounds * 5):
        vals = array("i", [0] * (1 + r % 97))
        for i in range(len(vals)):
            x = rnd.next()
            vals[i] = x - (1 << 32) if x >= 1 << 31 else x
        n4 = 4 * len(vals)
        img_a = bytearray(n4)
        img_b = bytearray(n4)
        for i in range(len(vals)):
            struct.pack_into("<i", img_a, 4 * i, vals[i])
        native.copy(img_b, 0, vals, 0, n4)
        back = array("i", [0] * len(vals))
        native.copy(back, 0, img_b, 0, n4)
        if img_a != img_b or back != vals:
            bad.append([-2, r, "image"])
        checked += 1
    # the MAC comparison: equal, and one flipped bit anywhere in the 8 bytes, at offsets
    macs = 0
    for r in range(rounds * 8):
        want = bytearray(8)
        fill(want, 8, rnd, r % 5)
        at = rnd.next() % 40
        fill(buf, at + 8, rnd, 0)
        for k in range(8):
            buf[at + k] = want[k]
        if r & 1:
            buf[at + r % 8] ^= 1 << (r % 7)
        a = hmac_portable.mac_diff_portable(want, buf, at)
        b = native.mac_diff(want, buf, at)
        if a != b or (a == 0) != (not r & 1):
            bad.append([-3, r, "mac"])
        macs += 1
    # the status key comparison (firmware/status.py): same32 with a skip mask, same8;
    # both copy src into dst and say whether every word not skipped was equal
    from firmware.status import same_portable
    sames = 0
    for r in range(rounds * 8):
        n = 1 + r % 60
        src = array("i", [0] * n)
        for i in range(n):
            src[i] = (rnd.next() & 0xFFFF) - 0x8000
        skip = bytearray(n)
        for i in range(n):
            skip[i] = 1 if rnd.next() % 4 == 0 else 0
        dst_a = array("i", src)
        k = rnd.next() % n
        if r % 3:
            dst_a[k] += 1 + r  # one word differs (skipped or not)
        dst_b = array("i", dst_a)
        a = same_portable(dst_a, src, n, skip)
        b = native.same32(dst_b, src, n, skip)
        want = 0 if r % 3 and not skip[k] else 1
        if a != b or a != want or dst_a != src or dst_b != src:
            bad.append([-4, r, "same32"])
        src8 = bytearray(n)
        fill(src8, n, rnd, 0)
        d8_a = bytearray(src8)
        if r % 3:
            d8_a[k] ^= 1 << (r % 8)
        d8_b = bytearray(d8_a)
        a = same_portable(d8_a, src8, n)
        b = native.same8(d8_b, src8, n)
        if a != b or a != (0 if r % 3 else 1) or d8_a != src8 or d8_b != src8:
            bad.append([-4, r, "same8"])
        sames += 1
    feeds, feed_bad = feed_cases(rnd, rounds)
    bad += feed_bad
    # the comparison can fail: one flipped byte changes both outputs
    fill(buf, 40, rnd, 0)
    ref_crc = native.crc16(buf, 0, 40)
    ref_len = native.cobs_encode(buf, 40, out_b)
    ref = bytes(out_b[:ref_len])
    buf[17] ^= 0x10
    n2 = portable.cobs_encode(buf, 40, out_a)
    sensitive = (portable.crc16(buf, 0, 40) != ref_crc
                 and bytes(out_a[:n2]) != ref)
    print("NATIVE " + json.dumps({"sensitive": sensitive,
                                  "native": crc.NATIVE and wire.cobs_encode is native.cobs_encode,
                                  "messages": messages, "checked": checked,
                                  "length_cases": MAX_FRAME + 1 + rounds * 5,
                                  "feed_cases": feeds, "mac_cases": macs,
                                  "same_cases": sames,
                                  "feed_sensitive": feed_sensitive(rnd),
                                  "bad": bad[:10],
                                  "nbad": len(bad)}))
