"""Golden vectors and cross-codec properties: the host codec (construct, protocol/codec.py)
and the firmware codec (firmware/wire.py) agree byte for byte on every message, on CPython
and on the MicroPython unix port (LNK-1, SEC-2, LNK-5)."""

import json
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import wire
from protocol import codec, spec
from protocol.make_golden import GOLDEN_PATH, TEST_KEY, fields_from_json, render
from tests.runtimes import run_unix
from tests.test_codec import frames

GOLDEN = json.loads(GOLDEN_PATH.read_text())
VECTORS = GOLDEN["vectors"]
KEY = bytes.fromhex(GOLDEN["key"])


def _case(v):
    """(mid, seq, flags, fields, key, counter) of a golden vector."""
    key = KEY if v["counter"] is not None else None
    return v["id"], v["seq"], v["flags"], fields_from_json(v["fields"]), key, v["counter"]


def _ids(v):
    return f"{v['name']}-{v['case']}"


# ------------------------------------------------------------------ the vectors themselves
@pytest.mark.req("LNK-1")
def test_golden_vectors_match_the_current_table():
    assert GOLDEN["protocol_version"] == spec.PROTOCOL_VERSION
    assert GOLDEN["schema"] == spec.schema_hash(), (
        "protocol/spec.py changed: run `python -m protocol.make_golden` and review the diff")
    assert KEY == TEST_KEY
    assert render() == GOLDEN_PATH.read_text(), (
        "protocol/golden.json is not what protocol/make_golden.py generates")


@pytest.mark.req("LNK-1", "SEC-2")
def test_every_message_has_golden_vectors_commands_with_and_without_auth():
    seen = {}
    for v in VECTORS:
        assert spec.MESSAGES[v["id"]][0] == v["name"]
        seen.setdefault(v["id"], set()).add(v["case"])
    assert set(seen) == set(spec.MESSAGES)
    for mid, cases in seen.items():
        want = {"plain", "min", "max"} | ({"auth"} if spec.CMD_FIRST <= mid < 0x80 else set())
        assert cases == want, spec.MESSAGES[mid][0]
    for v in VECTORS:
        assert bool(v["flags"] & spec.F_AUTH) == (v["case"] == "auth")
        assert bytes.fromhex(v["wire"]).index(0) == len(v["wire"]) // 2 - 1


@pytest.mark.req("LNK-1", "SEC-2")
@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_host_codec_reproduces_golden(v):
    mid, seq, flags, fields, key, counter = _case(v)
    frame = codec.encode_frame(mid, seq, fields, key=key, counter=counter, flags=flags)
    assert frame.hex() == v["frame"]
    assert codec.encode(mid, seq, fields, key=key, counter=counter, flags=flags).hex() == v["wire"]
    msg = codec.decode(bytes.fromhex(v["wire"]), key=key)
    assert (msg.id, msg.seq, msg.flags, msg.fields, msg.counter) == (mid, seq, flags, fields,
                                                                     counter)
    if key:
        assert codec.verify_mac(msg, KEY)
        assert not codec.verify_mac(msg, bytes(32))


@pytest.mark.req("LNK-1", "SEC-2")
@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_firmware_codec_reproduces_golden_on_cpython(v):
    mid, seq, flags, fields, key, counter = _case(v)
    got = wire.encode_frame(mid, seq, flags, list(fields.values()), key, counter or 0)
    assert got.hex() == v["wire"]
    assert wire.decode_frame(bytes.fromhex(v["wire"]), key) == (
        mid, seq, flags, list(fields.values()), counter or 0)
    if key:
        with pytest.raises(ValueError, match="bad MAC"):
            wire.decode_frame(bytes.fromhex(v["wire"]), bytes(32))


# ------------------------------------------------------------------ the unix port
_GUEST = """
import binascii, json
from firmware import wire

def hx(b):
    return binascii.hexlify(b).decode()

def enc(v):
    return hx(v) if isinstance(v, bytes) else v

for mid, seq, flags, values, key, counter, host_wire in CASES:
    try:
        mine = hx(wire.encode_frame(mid, seq, flags, values, key, counter))
    except ValueError as e:
        mine = "ValueError"
    try:
        d = wire.decode_frame(host_wire, key)
        dec = [d[0], d[1], d[2], [enc(x) for x in d[3]], d[4]]
    except ValueError:
        dec = "ValueError"
    print(json.dumps([mine, dec]))
"""


def _run_guest(cases):
    """cases: (mid, seq, flags, values, key, counter, host_wire) -> [(wire hex, decoded)]."""
    out = run_unix("CASES = " + repr(cases) + "\n" + _GUEST)
    return [json.loads(line) for line in out.splitlines()]


def _expect_decoded(mid, seq, flags, values, counter):
    return [mid, seq, flags, [x.hex() if isinstance(x, bytes) else x for x in values],
            counter or 0]


@pytest.mark.req("LNK-1", "SEC-2")
def test_firmware_codec_reproduces_golden_on_micropython_unix():
    cases = []
    for v in VECTORS:
        mid, seq, flags, fields, key, counter = _case(v)
        cases.append((mid, seq, flags, list(fields.values()), key, counter or 0,
                      bytes.fromhex(v["wire"])))
    got = _run_guest(cases)
    assert len(got) == len(VECTORS)
    for v, case, (mine, dec) in zip(VECTORS, cases, got, strict=True):
        assert mine == v["wire"], _ids(v)
        assert dec == _expect_decoded(*case[:4], case[5]), _ids(v)


# ------------------------------------------------------------------ properties (CPython)
def _both_encode(case):
    mid, seq, flags, fields, counter = case
    key = TEST_KEY if counter is not None else None
    host = codec.encode(mid, seq, fields, key=key, counter=counter, flags=flags)
    fw = wire.encode_frame(mid, seq, flags, list(fields.values()), key, counter or 0)
    return host, fw, key


@pytest.mark.req("LNK-1", "SEC-2")
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_host_and_firmware_codecs_agree_both_directions(case):
    mid, seq, flags, fields, counter = case
    host, fw, key = _both_encode(case)
    assert host == fw
    # firmware decodes the host's bytes, host decodes the firmware's
    assert wire.decode_frame(host, key) == (mid, seq, flags | (spec.F_AUTH if key else 0),
                                            list(fields.values()), counter or 0)
    msg = codec.decode(fw, key=key)
    assert (msg.id, msg.seq, msg.fields, msg.counter) == (mid, seq, fields, counter)


@pytest.mark.req("LNK-5")
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.data())
def test_codecs_agree_on_damaged_frames(case, data):
    """Flip, cut or insert bytes (re-CRCed or not): both codecs accept the same frames and
    read the same values, or both refuse."""
    host, _fw, key = _both_encode(case)
    frame = bytearray(codec.unstuff(host))
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "flip+crc", "cut+crc"]))
    at = data.draw(st.integers(0, len(frame) - 1))
    if how.startswith("flip"):
        frame[at] ^= data.draw(st.integers(1, 255))
    elif how.startswith("cut"):
        del frame[at]
    else:
        frame.insert(at, data.draw(st.integers(0, 255)))
    if how.endswith("+crc") and len(frame) > 2:
        frame[-2:] = struct.pack("<H", codec.crc16(bytes(frame[:-2])))
    damaged = codec.stuff(bytes(frame))
    _agree(damaged, key)


def _agree(data: bytes, key):
    try:
        msg = codec.decode(data, key=key if data and _has_auth(data) else None)
        host = (msg.id, msg.seq, msg.flags, msg.values(), msg.counter or 0)
    except codec.ProtocolError:
        host = None
    try:
        fw = wire.decode_frame(data, key if data and _has_auth(data) else None)
    except ValueError:
        fw = None
    assert host == fw


def _has_auth(data: bytes) -> bool:
    try:
        frame = codec.unstuff(data)
    except codec.ProtocolError:
        return False
    return len(frame) > 1 and bool(frame[1] & spec.F_AUTH)


@pytest.mark.req("LNK-5")
@settings(max_examples=200)
@given(st.binary(max_size=80))
def test_codecs_agree_on_garbage(data):
    data = data.replace(b"\0", b"")
    _agree(data + b"\0", None)


# ------------------------------------------------------------------ properties (unix port)
def _random_fields(rng: random.Random, mid: int) -> dict:
    out = {}
    for f in codec.MESSAGES[mid].fields:
        if f.is_bytes:
            out[f.name] = bytes(rng.choice((0, rng.getrandbits(8))) for _ in range(f.size))
        else:
            out[f.name] = rng.choice((f.lo, f.hi, 0, rng.randint(f.lo, f.hi),
                                      rng.randint(max(f.lo, -999), min(f.hi, 999))))
    return out


@pytest.mark.req("LNK-1", "SEC-2", "LNK-5")
def test_seeded_batch_agrees_on_micropython_unix():
    """300 random frames (with and without auth) plus 60 damaged ones, seeded: the unix
    port's firmware codec encodes them to the host's bytes and decodes the host's bytes
    to the same values; damaged frames are refused by both."""
    rng = random.Random(20261116)
    ids = sorted(codec.MESSAGES)
    cases, expect = [], []
    for i in range(360):
        mid = rng.choice(ids)
        fields = _random_fields(rng, mid)
        seq = rng.randint(0, 0xFFFF)
        flags = rng.choice((0, spec.F_RESPONSE, spec.F_EVENT))
        auth = rng.random() < 0.5
        key = TEST_KEY if auth else None
        counter = rng.randint(0, 0xFFFFFFFF) if auth else 0
        host = codec.encode(mid, seq, fields, key=key, counter=counter if auth else None,
                            flags=flags)
        values = list(fields.values())
        if i < 300:
            cases.append((mid, seq, flags, values, key, counter, host))
            expect.append((host.hex(), _expect_decoded(mid, seq, flags | (spec.F_AUTH if auth
                                                                           else 0),
                                                       values, counter)))
        else:  # damaged: one byte flipped in the unstuffed frame (CRC or MAC catches it)
            frame = bytearray(codec.unstuff(host))
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            cases.append((mid, seq, flags, values, key, counter, codec.stuff(bytes(frame))))
            expect.append((host.hex(), "ValueError"))
    got = _run_guest(cases)
    assert len(got) == len(cases)
    for n, (g, e) in enumerate(zip(got, expect, strict=True)):
        assert list(g) == list(e), f"case {n}: {cases[n][:3]}"
