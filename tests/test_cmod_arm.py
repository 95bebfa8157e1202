"""The ARM images' C modules (tools/arm/cmod) on the QEMU ARM test image (HW-4).

crc16c: firmware/crc.py's crc16 there, against the viper and the portable version on
buffers of 0..300 bytes at any offset (HIS-1: every record and state copy carries it).

hmac256, the link's MAC (SEC-2) against the firmware's Python path
(firmware/hmac_portable.py, hashlib) on the same board and against CPython's hmac, byte for byte,
for keys of 0..200 bytes (longer than a block: hashed first), prefixes of 0..130 bytes
and messages across every block boundary of SHA-256's padding (55/56, 63/64/65, 119/120).
Then its use: wire.Auth is the C module there, a MAC allocates nothing, bad arguments are
refused, a signed status and a signed bolus through the Link verify on the host, and a
signed status is answered under heap_lock (on the unix port and wasm, with the hashlib
path, it allocates).

One qemu run (~10 s). Needs the image (`make firmware BOARD=qemu-arm`, which `make test`
runs first) and qemu-system-arm; skipped, saying so, without them.
"""

import functools
import hashlib
import hmac
import json
import struct

import pytest

from firmware import wire
from protocol import spec as S
from tools.arm import qemu as Q

KEY_LENGTHS = (0, 1, 20, 32, 55, 63, 64, 65, 100, 200)
MSG_LENGTHS = (0, 1, 9, 55, 56, 63, 64, 65, 119, 120, 200)
PREFIX_LENGTHS = (0, 4, 60, 64, 70, 130)  # 4: the schema hash, as the link has it
BOLUS_KEY = bytes(range(7, 39))

GUEST = """
import gc, json, micropython
import hmac256
from firmware import wire
from firmware.hmac_portable import HmacPortable
{gen}
for k, pl, msgs in {cases}:
    key = gen(1000 + k, k)
    prefix = gen(2000 + k + pl, pl)
    c = hmac256.HMAC(key, prefix)
    p = HmacPortable(key, prefix)
    for n in msgs:
        msg = gen(3000 + 7 * k + pl + n, n)
        buf = bytearray(msg + b"tail")  # the MAC covers msg[:n] only
        mc = bytearray(32)
        mp = bytearray(32)
        c.sign(buf, len(msg), mc, 0, 32)
        p.sign(buf, len(msg), mp, 0, 32)
        print("MAC " + json.dumps([mc.hex(), mp.hex(), c.verify(buf, len(msg), mc, 0, 32),
                                   p.verify(buf, len(msg), mc, 0, 32)]))
gc.collect()

r = {{"auth_is_c": type(wire.Auth(b"k")) is hmac256.HMAC, "hmac_is_c": wire.HMAC is hmac256.HMAC}}
# sign/verify into a caller's buffer: only out[at:at + size] changes; a changed byte fails
c = hmac256.HMAC(b"key", b"pre")
buf = bytearray(b"message of the link" + bytes(12))
c.sign(buf, 19, buf, 21, 8)
r["framed"] = buf.hex()
r["verify_ok"] = c.verify(buf, 19, buf, 21, 8)
bad = []
for i in range(29):
    b2 = bytearray(buf)
    b2[i] ^= 1
    bad.append(c.verify(b2, 19, b2, 21, 8))
r["verify_changed"] = bad
# no allocation: the heap unchanged with the collector off, and nothing raised when locked
m0 = i = 0  # globals made before the measurement (a new one can grow the dict)
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
while i < 10:
    c.sign(buf, 19, buf, 21, 8)
    c.verify(buf, 19, buf, 21, 8)
    i += 1
r["alloc_bytes"] = gc.mem_alloc() - m0
gc.enable()
r["locked"] = None  # the key exists: storing into it then needs no allocation
micropython.heap_lock()
try:
    c.sign(buf, 19, buf, 21, 8)
    r["locked"] = c.verify(buf, 19, buf, 21, 8)
except MemoryError:
    r["locked"] = "MemoryError"
micropython.heap_unlock()
errors = []
for args in ((buf, 40, buf, 0, 8), (buf, -1, buf, 0, 8), (buf, 19, buf, 0, 0),
             (buf, 19, buf, 0, 33), (buf, 19, buf, 30, 8), (buf, 19, b"read-only", 0, 8)):
    try:
        c.sign(*args)
        errors.append("none")
    except (ValueError, TypeError) as exc:
        errors.append(type(exc).__name__ + ": " + str(exc))
r["errors"] = errors
print("CHECKS " + json.dumps(r))

# crc16c against the viper and the portable CRC (firmware/crc.py, firmware/native.py)
import crc16c
from firmware import crc, native, portable
r = {{"crc_is_c": crc.crc16 is crc16c.crc16, "native": crc.NATIVE, "diff": [], "n": 0}}
for k in range(60):
    n = (k * 37) % 301
    buf = gen(4000 + k, n)
    for start, end in ((0, n), (k % 7, n), (0, n - k % 5), (n // 2, n // 2)):
        if 0 <= start <= end <= n:
            a = crc.crc16(buf, start, end)
            if a != native.crc16(buf, start, end) or a != portable.crc16(buf, start, end):
                r["diff"].append([k, start, end])
            r["n"] += 1
# stamp/stamped (a trailer written, checked) against the portable versions, a flipped
# byte anywhere in buf[:n + 2] included
r["stamp_is_c"] = crc.stamp is crc16c.stamp and crc.stamped is crc16c.stamped
r["stamp_diff"] = []
for k in range(40):
    n = (k * 29) % 260
    a = bytearray(gen(7000 + k, n) + bytes(2))
    p = bytearray(a)
    crc16c.stamp(a, n)
    crc.stamp_portable(p, n)
    good = [a == p, crc16c.stamped(a, n), crc.stamped_portable(a, n)]
    a[k % (n + 2)] ^= 1 << (k % 8)
    bad = [crc16c.stamped(a, n), crc.stamped_portable(a, n)]
    if good != [True, True, True] or bad != [False, False]:
        r["stamp_diff"].append(k)
r["empty"] = crc.crc16(b"", 0, 0)
r["check"] = crc.crc16(b"123456789", 0, 9)  # the standard check value of CRC-16/CCITT-FALSE
try:
    crc.crc16(b"abc", 0, 4)
    r["past_end"] = "none"
except ValueError as exc:
    r["past_end"] = str(exc)
print("CRC " + json.dumps(r))

# a frame's ends in one C call each (seal, check; crc16c.seal, cobs_feed) against the
# Python paths (HmacPortable, wire.seal_portable, portable.cobs_feed), byte for byte
from array import array
r = {{"seal_diff": [], "check_diff": [], "crc_cobs_diff": [], "feed_diff": [], "n": 0}}
c = hmac256.HMAC(b"pairing key", wire.SCHEMA_LE)
p = HmacPortable(b"pairing key", wire.SCHEMA_LE)
for k in range(40):
    at = 5 + (k * 13) % 120
    counter = (k * 0x9E3779B1) & 0xFFFFFFFF  # above 2**31 too
    size = 8 if k % 3 else 1 + k % 32
    body = gen(5000 + k, at)
    bc = bytearray(body + bytes(40))
    bp = bytearray(bc)
    wc = bytearray(300)
    wp = bytearray(300)
    nc = c.seal(bc, at, counter, size, wc)
    np_ = p.seal(bp, at, counter, size, wp)
    if nc != np_ or bc != bp or wc != wp:
        r["seal_diff"].append(k)
    got = [c.check(bc, at, size), p.check(bp, at, size)]
    bc[k % (at + 4 + size)] ^= 1 << (k % 8)  # any byte of the frame or its trailer
    bp[k % (at + 4 + size)] ^= 1 << (k % 8)
    got += [c.check(bc, at, size), p.check(bp, at, size)]
    if got != [counter, counter, None, None]:
        r["check_diff"].append([k, got])
    r["n"] += 1
for n in (0, 1, 2, 5, 100, 251, 252, 253, 254, 255, 300, 505, 506, 507):
    src = gen(6000 + n, n)
    if n > 20:  # runs of zeros and of 0xFF blocks: COBS's two block ends
        src = src[:10] + bytes(5) + src[15:]
    ac = bytearray(src + bytes(2))
    ap = bytearray(ac)
    wc = bytearray(n + n // 254 + 5)
    wp = bytearray(wc)
    ln = crc16c.seal(ac, n, wc)
    if ln != wire.seal_portable(ap, n, wp) or ac != ap or wc != wp:
        r["crc_cobs_diff"].append(n)
    # the decoder on what the encoder made, fed in chunks of 1..7 bytes, with a corrupt
    # frame and an overlong one after it
    stream = bytes(wc[:ln]) + b"\x05\x01\x00" + b"\x01" * 40 + b"\x00"
    out = []
    for feed in (crc16c.cobs_feed, portable.cobs_feed):
        buf = bytearray(600)
        st = array("i", [0] * 7)
        st[4] = 30 if n == 300 else 600  # D_CAP: a frame longer than the buffer is bad
        i = 0
        got = []
        while i < len(stream):
            end = min(len(stream), i + 1 + (i + n) % 7)
            while i < end:
                i = feed(stream, i, end, buf, st)
                if st[6]:
                    st[6] = 0
                    got.append([st[5], bytes(buf[:st[5]]).hex()] if st[5] > 0 else [st[5]])
        out.append(got)
    # the frame back (n + 2 bytes), a bad one, 39 zeros (-1 where longer than the capacity)
    want = [[n + 2, bytes(ac).hex()], [-1], [39, bytes(39).hex()]] if n != 300 else [[-1]] * 3
    if out[0] != out[1] or out[0] != want:
        r["feed_diff"].append(n)
m0 = i = 0
bc = bytearray(100)
wc = bytearray(200)
st = array("i", [0, 0, 0, 0, 100, 0, 0])  # D_CAP: bc's size
gc.collect()
gc.disable()
m0 = gc.mem_alloc()
while i < 10:
    c.seal(bc, 20, 7, 8, wc)
    c.check(bc, 20, 8)
    crc16c.seal(bc, 40, wc)
    crc16c.cobs_feed(wc, 0, 20, bc, st)
    i += 1
r["alloc_bytes"] = gc.mem_alloc() - m0
gc.enable()
errors = []
for call in (lambda: c.seal(bc, 95, 7, 8, wc), lambda: c.seal(bc, -1, 7, 8, wc),
             lambda: c.check(bc, 20, 33), lambda: c.seal(bc, 80, 7, 8, bytearray(50)),
             lambda: crc16c.seal(bc, 99, wc), lambda: crc16c.cobs_feed(wc, 0, 300, bc, st),
             lambda: crc16c.cobs_feed(wc, 0, 20, bc, array("h", [0] * 7))):
    try:
        call()
        errors.append("none")
    except ValueError as exc:
        errors.append(str(exc))
r["errors"] = errors
print("FRAME " + json.dumps(r))

# the link on this board: a signed status and a signed bolus, answers signed
from tests import mp_link as L
rig, pump, link = L.bench(key=bytes.fromhex("{bolus_key}"), bolus=False)
rig.serial.send(bytes.fromhex("{status}") + bytes.fromhex("{bolus}"))
link.poll()
print("LINK " + json.dumps([rig.serial.overflow, link.faults, link.counter]))
print("WIRE " + rig.serial.take().hex())
# a signed query again (its counter is a nonce), 20 times under heap_lock: with the C MAC
# the signed path allocates nothing (MemoryErrors, link faults)
print("LOCKED " + json.dumps(L.locked_poll(rig, link, bytes.fromhex("{status}"), 20)))
"""


# the test data, made the same way on the board and here (ZX81's LCG: small ints only)
GEN = """
def gen(seed, n):
    out = bytearray(n)
    x = seed % 65537
    for i in range(n):
        x = (x * 75 + 74) % 65537
        out[i] = x & 0xFF
    return bytes(out)
"""
exec(GEN)  # defines gen() here too


def lengths():
    """(key length, prefix length, message lengths): every key with no prefix and the
    schema hash's 4 bytes, the longer prefixes with two keys."""
    return [(k, p, MSG_LENGTHS) for k in KEY_LENGTHS for p in PREFIX_LENGTHS
            if p in (0, 4) or k in (32, 65)]


def cases():
    return [(gen(1000 + k, k), gen(2000 + k + p, p),  # noqa: F821 (GEN defines it)
             [gen(3000 + 7 * k + p + n, n) for n in msgs])  # noqa: F821
            for k, p, msgs in lengths()]


def request_frames():
    status = wire.encode_frame(wire.INDEX["status"], 31, 0, [], key=BOLUS_KEY, counter=700)
    bolus = wire.encode_frame(wire.INDEX["bolus"], 32, 0, [91, S.BOLUS_NORMAL, 100, 0, 0],
                              key=BOLUS_KEY, counter=701)
    return status, bolus


def _lines(out, tag):
    return [ln[len(tag) + 1:] if tag == "WIRE" else json.loads(ln[len(tag) + 1:])
            for ln in out.splitlines() if ln.startswith(tag + " ")]


@functools.cache
def arm_run(tmp):
    status, bolus = request_frames()
    guest = GUEST.format(gen=GEN, cases=repr(lengths()), bolus_key=BOLUS_KEY.hex(),
                         status=status.hex(), bolus=bolus.hex())
    return Q.run_script(guest, state_dir=tmp, icount=False)


@pytest.fixture(scope="module")
def arm_out(tmp_path_factory):
    try:
        Q.find_image(Q.TEST_IMAGE)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return arm_run(str(tmp_path_factory.mktemp("arm-cmod")))


@pytest.mark.req("SEC-2", "HW-4")
def test_c_mac_matches_python_path_and_cpython_on_arm(arm_out):
    macs = _lines(arm_out, "MAC")
    want = [hmac.new(key, prefix + msg, hashlib.sha256).hexdigest()
            for key, prefix, msgs in cases() for msg in msgs]
    assert len(macs) == len(want) == 28 * len(MSG_LENGTHS)
    for i, (c_mac, py_mac, c_ok, py_ok) in enumerate(macs):
        assert c_mac == want[i], f"C module, case {i}"
        assert py_mac == want[i], f"Python path, case {i}"
        assert c_ok is True and py_ok is True, i


@pytest.mark.req("HIS-1", "HW-4")
def test_c_crc_matches_the_viper_and_portable_crc_on_arm(arm_out):
    (r,) = _lines(arm_out, "CRC")
    assert r["crc_is_c"] is True and r["native"] is True
    assert r["diff"] == [] and r["n"] >= 200
    assert r["stamp_is_c"] is True and r["stamp_diff"] == []
    assert r["empty"] == 0xFFFF
    assert r["check"] == 0x29B1
    assert r["past_end"] == "start:end outside the buffer"


@pytest.mark.req("SEC-2", "HW-4")
def test_c_mac_in_a_frame_buffer_without_allocation_on_arm(arm_out):
    (r,) = _lines(arm_out, "CHECKS")
    assert r["auth_is_c"] is True and r["hmac_is_c"] is True
    msg = b"message of the link"
    mac = hmac.new(b"key", b"pre" + msg, hashlib.sha256).digest()[:8]
    assert bytes.fromhex(r["framed"]) == msg + bytes(2) + mac + bytes(2)
    assert r["verify_ok"] is True
    assert r["verify_changed"] == [False] * 19 + [True] * 2 + [False] * 8  # 19, 20: not covered
    assert r["alloc_bytes"] == 0
    assert r["locked"] is True
    errors = r["errors"]
    assert errors[:5] == ["ValueError: n outside the message buffer"] * 2 + [
        "ValueError: MAC size 1..32 inside the buffer needed"] * 3
    assert errors[5].startswith("TypeError"), errors[5]  # bytes cannot be written


@pytest.mark.req("SEC-2", "LNK-6", "HW-4")
def test_signed_requests_through_the_link_on_arm(arm_out):
    (overflow, faults, counter), = _lines(arm_out, "LINK")
    assert (overflow, faults, counter) == (0, 0, 701)
    (data,) = _lines(arm_out, "WIRE")
    frames = [f for f in bytes.fromhex(data).split(b"\x00") if f]
    frames = [f for f in frames if wire.decode_frame(f)[2] & S.F_RESPONSE]  # not the events
    answers = [wire.decode_frame(f, key=BOLUS_KEY) for f in frames]
    (mid, seq, flags, _, ctr), (rmid, rseq, rflags, values, rctr) = answers
    assert (mid, seq, ctr) == (wire.INDEX["status_info"], 31, 700)
    assert (rmid, rseq, rctr, values) == (wire.INDEX["result"], 32, 701, [91, S.OK, 1])  # bolus 1
    assert flags & S.F_AUTH and rflags & S.F_AUTH
    (locked,) = _lines(arm_out, "LOCKED")
    assert locked == [0, 0]  # no MemoryError, no fault: signed queries allocate nothing
    with pytest.raises(ValueError, match="bad MAC"):  # and signed with the pairing key only
        wire.decode_frame(frames[1], key=bytes(32))
    assert struct.unpack("<I", wire.SCHEMA_LE)[0] == wire.SCHEMA


@pytest.mark.req("SEC-2", "LNK-1", "HW-4")
def test_c_frame_ends_match_the_python_paths_on_arm(arm_out):
    """hmac256's seal/check (a frame's auth trailer, CRC and COBS; the trailer's counter)
    and crc16c's seal/cobs_feed give what HmacPortable, wire.seal_portable and
    portable.cobs_feed give, byte for byte, allocate nothing and refuse bad
    arguments."""
    (r,) = _lines(arm_out, "FRAME")
    assert r["n"] == 40
    assert r["seal_diff"] == [] and r["check_diff"] == []
    assert r["crc_cobs_diff"] == [] and r["feed_diff"] == []
    assert r["alloc_bytes"] == 0
    assert r["errors"] == [
        "MAC size 1..32 inside the buffer needed", "MAC size 1..32 inside the buffer needed",
        "MAC size 1..32 inside the buffer needed", "wire buffer too short for the COBS frame",
        "n + 2 bytes (the CRC) outside the buffer",
        "i:end outside the chunk or capacity past the buffer", "st: array('i') of 7 needed"]
