"""Firmware codec (firmware/wire.py): frames exactly as spec.py describes them (LNK-1), the
truncated HMAC (SEC-2), COBS and the incremental decoder that malformed input cannot
confuse (LNK-5), on CPython and on the MicroPython unix port.

The reference here is written independently of the firmware: struct.pack with the table's
codes, the `cobs` package, hmac + hashlib, and a bit-by-bit CRC-16/CCITT-FALSE.
"""

import functools
import hashlib
import hmac
import json
import random
import struct

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import wire
from protocol import spec as S
from tests.runtimes import run_unix

KEY = bytes(range(100, 132))
SCHEMA = struct.pack("<I", S.schema_hash())
IDS = sorted(S.MESSAGES)


def crc_bitwise(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def reference(mid, seq, flags, values, key=None, counter=0):
    """Wire bytes built straight from the spec with standard libraries."""
    codes = "".join(code for _, code in S.MESSAGES[mid][1])
    if key is not None:
        flags |= S.F_AUTH
    body = struct.pack(S.HEADER_FMT, S.PROTOCOL_VERSION, flags, seq, mid)
    body += struct.pack("<" + codes, *values)
    if key is not None:
        signed = body + struct.pack("<I", counter)
        mac = hmac.new(key, SCHEMA + signed, hashlib.sha256).digest()  # MAC covers the table
        body = signed + mac[:S.MAC_SIZE]
    body += struct.pack("<H", crc_bitwise(body))
    return cobs.encode(body) + b"\x00"


def field_values(mid, rnd, extreme=None):
    """Values for every field: random, or all minimum / all maximum."""
    out = []
    for _, code in S.MESSAGES[mid][1]:
        if code.endswith("s"):
            n = int(code[:-1])
            if extreme is None:
                out.append(bytes(rnd.randrange(256) for _ in range(n)))
            else:
                out.append(bytes([0 if extreme == "min" else 0xFF]) * n)
            continue
        bits = 8 * struct.calcsize(code)
        lo, hi = (0, (1 << bits) - 1) if code.isupper() else (-(1 << bits - 1),
                                                              (1 << bits - 1) - 1)
        out.append({None: rnd.randint(lo, hi), "min": lo, "max": hi}[extreme])
    return out


# ------------------------------------------------------------------ the table
@pytest.mark.req("LNK-1")
def test_layouts_follow_the_table():
    for mid, (name, fields) in S.MESSAGES.items():
        codes = "".join(code for _, code in fields)
        assert wire.SIZE[mid] == struct.calcsize("<" + codes) <= S.MAX_PAYLOAD, name
        assert wire.INDEX[name] == mid
        offsets = [struct.calcsize("<" + "".join(c for _, c in fields[:i]))
                   for i in range(len(fields))]
        assert list(wire.OFFSETS[mid]) == offsets, name
    assert S.MAX_FRAME == S.HEADER_SIZE + S.MAX_PAYLOAD + S.AUTH_SIZE + S.CRC_SIZE


def _table_views_of(messages):
    """What the firmware's byte table must answer for each id, from spec.py with struct."""
    kinds = {"B": 1, "H": 2, "I": 4, "b": -1, "h": -2, "i": -4}
    want = {}
    for mid, (_, fields) in messages.items():
        codes = [code for _, code in fields]
        want[mid] = {
            "size": struct.calcsize("<" + "".join(codes)),
            "kinds": tuple(kinds.get(c, 0) for c in codes),
            "lengths": tuple(struct.calcsize("<" + c) for c in codes),
            "formats": tuple(None if c.endswith("s") else "<" + c for c in codes),
        }
    return want


TABLE_CHECK = """
import json
from firmware import wire
from protocol.spec import MESSAGES
out = {}
for mid in MESSAGES:
    out[mid] = [wire.PAYLOAD_SIZE[mid], wire.SIZE[mid], list(wire.KINDS[mid]),
                list(wire.LENGTHS[mid]), list(wire.FORMATS[mid]),
                [wire.field_offset(mid, i) for i in range(len(MESSAGES[mid][1]))],
                list(wire.OFFSETS[mid])]
others = [m for m in range(-3, 300) if not wire.known(m)]
print(json.dumps({"out": out, "unknown": others, "index": wire.INDEX}))
"""


@pytest.mark.req("LNK-1")
@pytest.mark.parametrize("runtime", ["cpython", "unix"])
def test_byte_table_and_its_views_follow_the_table(runtime):
    """The firmware's compact table (PAYLOAD_SIZE, known(), field offsets) and the
    per-message views built from it on first use (SIZE, KINDS, LENGTHS, FORMATS, OFFSETS,
    INDEX) agree with spec.py, on CPython and on MicroPython."""
    if runtime == "unix":
        got = json.loads(run_unix(TABLE_CHECK).strip().splitlines()[-1])
    else:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(TABLE_CHECK, {})
        got = json.loads(buf.getvalue())
    want = _table_views_of(S.MESSAGES)
    assert sorted(int(m) for m in got["out"]) == IDS
    for mid, (psize, size, kinds, lengths, formats, at, offsets) in got["out"].items():
        w = want[int(mid)]
        assert psize == size == w["size"], mid
        assert tuple(kinds) == w["kinds"] and tuple(lengths) == w["lengths"], mid
        assert tuple(formats) == w["formats"], mid
        assert at == [S.HEADER_SIZE + o for o in offsets], mid
    assert got["unknown"] == [m for m in range(-3, 300) if m not in S.MESSAGES]
    assert got["index"] == {name: mid for mid, (name, _) in S.MESSAGES.items()}


# ------------------------------------------------------------------ round trips
@pytest.mark.req("LNK-1", "SEC-2")
@pytest.mark.parametrize("mid", IDS, ids=lambda m: S.MESSAGES[m][0])
def test_every_message_round_trips_and_matches_the_reference(mid):
    rnd = random.Random(mid)
    cases = [(field_values(mid, rnd, ext), key)
             for ext in (None, "min", "max") for key in (None, KEY)]
    for values, key in cases:
        seq = rnd.randrange(65536)
        counter = rnd.randrange(1 << 32) if key else 0
        flags = S.F_RESPONSE if mid >= 0x80 else 0
        got = wire.encode_frame(mid, seq, flags, values, key=key, counter=counter)
        assert got == reference(mid, seq, flags, values, key, counter)
        want_flags = flags | (S.F_AUTH if key else 0)
        assert wire.decode_frame(got) == (mid, seq, want_flags, values, counter)
        assert wire.decode_frame(got[:-1], key=key) == (mid, seq, want_flags, values, counter)


@pytest.mark.req("LNK-1", "SEC-2")
@settings(max_examples=150, deadline=None)
@given(st.data())
def test_round_trip_property(data):
    mid = data.draw(st.sampled_from(IDS))
    values = []
    for _, code in S.MESSAGES[mid][1]:
        if code.endswith("s"):
            n = int(code[:-1])
            values.append(data.draw(st.binary(min_size=n, max_size=n)))
        else:
            bits = 8 * struct.calcsize(code)
            lo, hi = (0, (1 << bits) - 1) if code.isupper() else (-(1 << bits - 1),
                                                                  (1 << bits - 1) - 1)
            values.append(data.draw(st.integers(lo, hi)))
    seq = data.draw(st.integers(0, 0xFFFF))
    key = data.draw(st.sampled_from([None, KEY, b"k", bytes(100)]))
    counter = data.draw(st.integers(0, 0xFFFFFFFF)) if key is not None else 0
    got = wire.encode_frame(mid, seq, 0, values, key=key, counter=counter)
    assert got == reference(mid, seq, 0, values, key, counter)
    assert wire.decode_frame(got, key=key)[3] == values


@pytest.mark.req("LNK-1")
def test_short_bytes_values_are_zero_padded_like_struct():
    got = wire.encode_frame(0x84, 1, 0, [b"\x01\x02"])
    assert wire.decode_frame(got)[3] == [b"\x01\x02\x00\x00\x00\x00\x00"]


# ------------------------------------------------------------------ HMAC
@pytest.mark.req("SEC-2")
@pytest.mark.parametrize("key_len", [0, 1, 32, 64, 65, 200])
def test_hmac_matches_the_hmac_module(key_len):
    rnd = random.Random(key_len)
    key = bytes(rnd.randrange(256) for _ in range(key_len))
    auth = wire.Auth(key)
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 300):
        msg = bytearray(rnd.randrange(256) for _ in range(n))
        want = hmac.new(key, SCHEMA + bytes(msg), hashlib.sha256).digest()
        full = bytearray(32)
        auth.sign(msg + b"tail", n, full, 0, 32)
        assert full == want
        out = bytearray(b"\xee" * 40)
        auth.sign(msg, n, out, 3, 5)  # a part of the MAC, anywhere in a buffer
        assert out == b"\xee" * 3 + want[:5] + b"\xee" * 32
        assert auth.verify(msg, n, out, 3, 5)


@pytest.mark.req("SEC-2")
def test_mac_check_rejects_any_changed_byte():
    frame = wire.encode_frame(0x10, 5, 0, [9, 1, 1000, 0, 0], key=KEY, counter=77)
    body = bytearray(cobs.decode(frame[:-1]))
    mac_at = len(body) - S.CRC_SIZE - S.MAC_SIZE
    auth = wire.Auth(KEY)
    assert auth.verify(body, mac_at, body, mac_at, S.MAC_SIZE)
    for i in range(mac_at + S.MAC_SIZE):
        bad = bytearray(body)
        bad[i] ^= 0x01
        assert not auth.verify(bad, mac_at, bad, mac_at, S.MAC_SIZE), i
    assert not wire.Auth(bytes(32)).verify(body, mac_at, body, mac_at, S.MAC_SIZE)
    assert not wire.Auth(KEY, schema=S.schema_hash() ^ 1).verify(body, mac_at, body, mac_at,
                                                              S.MAC_SIZE)


# ------------------------------------------------------------------ COBS
def decode_stream(data, chunk_sizes, size=S.MAX_FRAME):
    """Frames (bytes, or None for a bad one) an incremental Decoder yields."""
    dec = wire.Decoder(size)
    out = []
    at = 0
    k = 0
    while at < len(data):
        end = min(len(data), at + chunk_sizes[k % len(chunk_sizes)])
        k += 1
        i = at
        while i < end:
            i = dec.feed(data, i, end)
            if dec.done:
                dec.done = False
                out.append(bytes(dec.buf[:dec.size]) if dec.size >= 0 else None)
        at = end
    return out


@pytest.mark.req("LNK-1")
@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=600),
                          st.binary(min_size=250, max_size=520).map(
                              lambda b: bytes(x or 1 for x in b))),
                min_size=1, max_size=4),
       st.lists(st.integers(1, 300), min_size=1, max_size=5))
def test_cobs_matches_the_cobs_package_and_decodes_in_any_chunking(payloads, chunks):
    stream = b""
    for p in payloads:
        out = bytearray(len(p) + len(p) // 254 + 2)
        n = wire.cobs_encode(p, len(p), out)
        assert bytes(out[:n]) == cobs.encode(p) + b"\x00"
        stream += bytes(out[:n])
    assert decode_stream(stream, chunks, size=1024) == [p or b"" for p in payloads]


@pytest.mark.req("LNK-5")
def test_decoder_flags_bad_cobs_and_overflow_then_recovers():
    good = cobs.encode(b"\x01\x00\x02") + b"\x00"
    # a code byte promising more bytes than arrive before the delimiter
    assert decode_stream(b"\x05\x01\x02\x00" + good, [3]) == [None, b"\x01\x00\x02"]
    # longer than the buffer: dropped whole, the next frame is fine
    assert decode_stream(cobs.encode(bytes(range(1, 40))) + b"\x00" + good, [7],
                         size=16) == [None, b"\x01\x00\x02"]
    # empty frames between delimiters
    assert decode_stream(b"\x00\x00" + good, [1]) == [b"", b"", b"\x01\x00\x02"]


# ------------------------------------------------------------------ malformed frames
def raw(body):
    return cobs.encode(bytes(body)) + b"\x00"


def with_crc(body):
    return bytes(body) + struct.pack("<H", crc_bitwise(body))


@pytest.mark.req("LNK-1", "LNK-5")
@pytest.mark.parametrize(("label", "frame"), [
    ("empty", b"\x00"),
    ("zero inside", b"\x02\x01\x00\x02\x01\x00"),
    ("bad cobs", b"\x09\x01\x02\x00"),
    ("truncated", raw(with_crc(b"\x01\x00\x01"))),
    ("bad crc", raw(b"\x01\x00\x01\x00\x02\x00\x00")),
    ("other version", raw(with_crc(b"\x02\x00\x01\x00\x02"))),
    ("unknown id", raw(with_crc(b"\x01\x00\x01\x00\x7f"))),
    ("payload too long", raw(with_crc(b"\x01\x00\x01\x00\x02\x00"))),
    ("payload too short", raw(with_crc(b"\x01\x00\x01\x00\x03"))),
    ("auth flag, no trailer", raw(with_crc(b"\x01\x01\x01\x00\x02"))),
    ("longer than any frame", raw(with_crc(b"\x01\x00\x01\x00\x02" + b"\x01" * 300))),
])
def test_decode_frame_refuses_malformed_frames(label, frame):
    with pytest.raises(ValueError):
        wire.decode_frame(frame)


@pytest.mark.req("SEC-2")
def test_decode_frame_with_key_refuses_a_bad_mac():
    frame = wire.encode_frame(0x14, 5, 0, [3], key=KEY, counter=9)
    assert wire.decode_frame(frame, key=KEY)[4] == 9
    with pytest.raises(ValueError):
        wire.decode_frame(frame, key=bytes(32))


@pytest.mark.req("LNK-1")
@pytest.mark.parametrize(("args", "kwargs"), [
    ((0x7F, 1, 0, []), {}),
    ((0x14, 1, 0, []), {}),  # a value missing
    ((0x14, 1, 0, [1 << 32]), {}),
    ((0x14, 1, 0, [-1]), {}),
    ((0x18, 1, 0, [1, 2, 1 << 31]), {}),
    ((0x84, 1, 0, [b"12345678"]), {}),  # 8 bytes for a 7s field
    ((0x84, 1, 0, [7]), {}),
    ((0x14, 1 << 16, 0, [1]), {}),
    ((0x14, 1, S.F_AUTH, [1]), {}),  # auth flag without a key
    ((0x14, 1, 0, [1]), {"key": KEY, "counter": 1 << 32}),
])
def test_encode_frame_refuses_values_the_fields_cannot_carry(args, kwargs):
    with pytest.raises(ValueError):
        wire.encode_frame(*args, **kwargs)


@pytest.mark.req("LNK-1")
def test_get_int_reads_signed_and_unsigned_extremes():
    buf = struct.pack("<BbHhIi", 255, -128, 65535, -32768, 0xFFFFFFFF, -(1 << 31))
    assert [wire.get_int(buf, at, kind) for at, kind in
            ((0, 1), (1, -1), (2, 2), (4, -2), (6, 4), (10, -4))] == \
        [255, -128, 65535, -32768, 0xFFFFFFFF, -(1 << 31)]
    buf = struct.pack("<i", 1 << 30)
    assert wire.get_int(buf, 0, -4) == 1 << 30


# ------------------------------------------------------------------ MicroPython unix port
GUEST = """
import json
from firmware import wire
cases = json.loads(CASES)
for mid, seq, flags, values, key, counter in cases:
    vals = [bytes(v) if isinstance(v, list) else v for v in values]
    k = bytes(key) if key else None
    w = wire.encode_frame(mid, seq, flags, vals, key=k, counter=counter)
    d = wire.decode_frame(w, key=k)
    back = [list(v) if isinstance(v, bytes) else v for v in d[3]]
    print("FRAME " + json.dumps([list(w), [d[0], d[1], d[2], back, d[4]]]))  # one a line:
    # a single JSON text of every frame outgrows the unix port's default heap
bad = 0
for frame in BAD:
    try:
        wire.decode_frame(bytes(frame))
    except ValueError:
        bad += 1
print("RESULT " + json.dumps({"bad": bad}))
"""


def unix_cases():
    rnd = random.Random(2024)
    cases = []
    for mid in IDS:
        for ext in (None, "min", "max"):
            for key in (None, KEY):
                values = field_values(mid, rnd, ext)
                cases.append((mid, rnd.randrange(65536), 0, values, key,
                              rnd.randrange(1 << 32) if key else 0))
    return cases


@functools.cache
def unix_run():
    cases = unix_cases()
    js = [[m, s, f, [list(v) if isinstance(v, bytes) else v for v in vals],
           list(k) if k else None, c] for m, s, f, vals, k, c in cases]
    bad = [list(f) for f in (b"\x09\x01\x02", b"\x02\x01", raw(b"\x01\x00\x01\x00\x02\x00\x00"),
                             raw(with_crc(b"\x01\x00\x01\x00\x7f")),
                             raw(with_crc(b"\x02\x00\x01\x00\x02")))]
    code = f"CASES = {json.dumps(json.dumps(js))}\nBAD = {json.dumps(bad)}\n" + GUEST
    frames = []
    for line in run_unix(code).splitlines():
        if line.startswith("FRAME "):
            frames.append(json.loads(line[6:]))
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]), frames=frames)
    raise AssertionError("no RESULT from the guest")


@pytest.mark.req("LNK-1", "SEC-2", "HW-3")
def test_unix_port_codec_produces_the_reference_frames():
    got = unix_run()
    cases = unix_cases()
    assert len(got["frames"]) == len(cases) == 6 * len(IDS)
    for (mid, seq, flags, values, key, counter), (frame, back) in zip(cases, got["frames"],
                                                                      strict=True):
        assert bytes(frame) == reference(mid, seq, flags, values, key, counter)
        assert bytes(frame) == wire.encode_frame(mid, seq, flags, values, key=key,
                                                 counter=counter)
        want = [list(v) if isinstance(v, bytes) else v for v in values]
        assert back == [mid, seq, S.F_AUTH if key else 0, want, counter]


@pytest.mark.req("LNK-5", "HW-3")
def test_unix_port_codec_refuses_malformed_frames():
    assert unix_run()["bad"] == 5
