"""Host codec (protocol/codec.py): framing, CRC, MAC, table-driven structs, clear errors.

LNK-1 frames (COBS, 0x00, CRC-16, version), LNK-5 malformed input is recognised as such,
SEC-2 truncated HMAC-SHA256 over header + payload + counter.
"""

import hashlib
import hmac
import struct

import construct
import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.crc import crc16 as fw_crc16
from protocol import codec, spec
from protocol.codec import AuthError, ProtocolError, VersionError
from protocol.make_golden import TEST_KEY

BOLUS = {"cmd_id": 7, "kind": 1, "now": 1500, "ext": 0, "ext_minutes": 0}


# ------------------------------------------------------------------ strategies (shared)
def field_strategy(f):
    if f.is_bytes:
        return st.binary(min_size=f.size, max_size=f.size)
    return st.integers(f.lo, f.hi)


ALL_IDS = tuple(sorted(codec.MESSAGES))


@st.composite
def frames(draw, ids=ALL_IDS):
    """(msg_id, seq, flags, fields, counter or None) for any message of the table."""
    mid = draw(st.sampled_from(ids))
    m = codec.MESSAGES[mid]
    fields = {f.name: draw(field_strategy(f)) for f in m.fields}
    seq = draw(st.integers(0, 0xFFFF))
    flags = draw(st.sampled_from([0, spec.F_RESPONSE, spec.F_EVENT]))
    counter = draw(st.none() | st.integers(0, 0xFFFFFFFF))
    return mid, seq, flags, fields, counter


# ------------------------------------------------------------------ table-driven structs
@pytest.mark.req("LNK-1")
def test_every_message_of_the_table_has_a_struct_of_the_right_size():
    assert set(codec.MESSAGES) == set(spec.MESSAGES)
    for mid, (name, fields) in spec.MESSAGES.items():
        m = codec.MESSAGES[mid]
        assert m.name == name
        assert isinstance(m.struct, construct.Struct)
        assert m.size == struct.calcsize("<" + "".join(code for _, code in fields))
        assert m.size <= spec.MAX_PAYLOAD
        assert codec.message_id(name) == mid


@pytest.mark.req("LNK-1")
def test_frame_layout_header_payload_crc_exact_bytes():
    frame = codec.encode_frame("bolus", 0x1234, BOLUS, flags=0)
    payload = struct.pack("<IBIIH", 7, 1, 1500, 0, 0)
    body = struct.pack("<BBHB", spec.PROTOCOL_VERSION, 0, 0x1234, 0x10) + payload
    assert frame == body + struct.pack("<H", fw_crc16(body, 0, len(body)))
    wire = codec.encode("bolus", 0x1234, BOLUS)
    assert wire == cobs.encode(frame) + b"\0"
    assert wire.count(0) == 1 and wire.endswith(b"\0")


@pytest.mark.req("SEC-2", "LNK-1")
def test_auth_trailer_is_counter_and_truncated_hmac_sha256():
    frame = codec.encode_frame("suspend", 9, {"cmd_id": 42}, key=TEST_KEY, counter=0x01020304)
    signed = struct.pack("<BBHBI", 1, spec.F_AUTH, 9, 0x14, 42)
    schema = struct.pack("<I", spec.schema_hash())  # the MAC covers the table (LNK-1)
    mac = hmac.new(TEST_KEY, schema + signed + struct.pack("<I", 0x01020304),
                   hashlib.sha256).digest()[:8]
    body = signed + struct.pack("<I", 0x01020304) + mac
    assert frame == body + struct.pack("<H", fw_crc16(body, 0, len(body)))
    msg = codec.decode_frame(frame, key=TEST_KEY)
    assert (msg.counter, msg.mac, msg.flags) == (0x01020304, mac, spec.F_AUTH)
    assert codec.verify_mac(frame, TEST_KEY)
    assert codec.verify_mac(codec.stuff(frame), TEST_KEY, wire=True)
    assert codec.verify_mac(msg, TEST_KEY)
    assert not codec.verify_mac(frame, bytes(32))


@pytest.mark.req("LNK-1")
def test_crc16_is_ccitt_false_and_matches_the_firmware():
    assert codec.crc16(b"123456789") == 0x29B1  # the catalogue check value
    data = bytes(range(256)) * 2
    assert codec.crc16(data) == fw_crc16(data, 0, len(data))


@pytest.mark.req("LNK-1")
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_decode_inverts_encode(case):
    mid, seq, flags, fields, counter = case
    key = TEST_KEY if counter is not None else None
    wire = codec.encode(mid, seq, fields, key=key, counter=counter, flags=flags)
    assert wire.index(0) == len(wire) - 1
    msg = codec.decode(wire, key=key)
    assert (msg.id, msg.name, msg.seq, msg.fields) == (mid, spec.MESSAGES[mid][0], seq, fields)
    assert msg.flags == flags | (spec.F_AUTH if key else 0)
    assert msg.counter == counter
    assert msg.values() == [fields[f] for f, _ in spec.MESSAGES[mid][1]]


@pytest.mark.req("LNK-1")
def test_short_bytes_fields_are_zero_padded_like_struct():
    msg = codec.decode(codec.encode("profile_info", 1, {
        "index": 0, "name": b"day", "count": 1, "starts": b"", "rates": b"\x10\x27"}))
    assert msg["name"] == b"day" + bytes(5)
    assert msg["rates"] == b"\x10\x27" + bytes(94)


# ------------------------------------------------------------------ bad values to encode
@pytest.mark.req("LNK-1")
@pytest.mark.parametrize("args, kwargs, message", [
    (("nope", 1, {}), {}, "unknown message name 'nope'"),
    ((0x7E, 1, {}), {}, "unknown message id 0x7E"),
    ((1.5, 1, {}), {}, "message must be a name or an id"),
    (("bolus", 1, {"cmd_id": 1}), {}, "missing field 'kind'"),
    (("hello", 1, {"x": 1}), {}, "has no field(s) x; its fields are: (none)"),
    (("bolus", 1, dict(BOLUS, kind=256)), {}, "bolus.kind = 256 is out of range for B (0..255)"),
    (("event", 0, {"kind": 1, "a": -2**31 - 1, "b": 0, "c": 0}), {},
     "event.a = -2147483649 is out of range for i"),
    (("bolus", 1, dict(BOLUS, now="1.5")), {}, "bolus.now must be an integer, not str"),
    (("bolus", 1, dict(BOLUS, now=True)), {}, "bolus.now must be an integer, not bool"),
    (("bolus", 1, dict(BOLUS, now=1.5)), {}, "bolus.now must be an integer, not float"),
    (("schedule_info", 1, {"days": "0000000"}), {}, "schedule_info.days must be bytes, not str"),
    (("schedule_info", 1, {"days": [0] * 7}), {}, "schedule_info.days must be bytes, not list"),
    (("schedule_info", 1, {"days": bytes(8)}), {}, "schedule_info.days is 8 bytes, at most 7"),
    (("hello", 0x10000, {}), {}, "sequence = 65536 is out of range"),
    (("hello", 1, {}), {"flags": 256}, "flags = 256 is out of range"),
    (("hello", 1, {}), {"key": TEST_KEY}, "an authenticated frame needs a counter"),
    (("hello", 1, {}), {"key": bytes(16), "counter": 1}, "key must be 32 bytes (256 bits)"),
    (("hello", 1, {}), {"key": "k" * 32, "counter": 1}, "key must be 32 bytes, not str"),
    (("hello", 1, {}), {"key": TEST_KEY, "counter": -1}, "counter = -1 is out of range"),
    (("hello", 1, {}), {"flags": spec.F_AUTH}, "F_AUTH set but no key"),
])
def test_encode_errors_are_clear(args, kwargs, message):
    with pytest.raises(ProtocolError) as err:
        codec.encode(*args, **kwargs)
    assert message in str(err.value)


# ------------------------------------------------------------------ bad frames to decode
def _recrc(body: bytes) -> bytes:
    return body + struct.pack("<H", codec.crc16(body))


GOOD = codec.encode_frame("bolus", 5, BOLUS)


@pytest.mark.req("LNK-5", "LNK-1")
@pytest.mark.parametrize("data, message", [
    (b"", "empty frame"),
    (b"\0", "empty frame"),
    (b"\x05\x01\x02", "bad COBS encoding"),
    (cobs.encode(b"\x01\x00\x01") + b"\0", "truncated frame: 3 bytes"),
    (codec.stuff(GOOD[:-1] + bytes([GOOD[-1] ^ 1])), "bad CRC"),
    (codec.stuff(_recrc(bytes([2]) + GOOD[1:-2])), "protocol version mismatch: frame has "
                                                    "version 2"),
    (codec.stuff(_recrc(GOOD[:4] + b"\x7e" + GOOD[5:-2])), "unknown message id 0x7E"),
    (codec.stuff(_recrc(GOOD[:-3])), "length mismatch: bolus frame is 21 bytes, expected 22"),
    (codec.stuff(_recrc(GOOD[:-2] + b"\0")), "length mismatch: bolus frame is 23 bytes"),
    (codec.stuff(_recrc(GOOD[:1] + bytes([spec.F_AUTH]) + GOOD[2:-2])),
     "is 22 bytes, expected 34 (15-byte payload, with auth)"),
    (codec.stuff(_recrc(bytes(300))), "frame too long: 302 bytes"),
    (GOOD[:3] + b"\0" + GOOD[3:], "more than one frame"),
])
def test_decode_errors_are_clear(data, message):
    with pytest.raises(ProtocolError) as err:
        codec.decode(data)
    assert message in str(err.value)


@pytest.mark.req("LNK-1")
def test_version_error_names_what_to_update():
    with pytest.raises(VersionError) as err:
        codec.decode_frame(_recrc(bytes([9]) + GOOD[1:-2]))
    assert err.value.version == 9
    assert "update the host tools or the pump firmware" in str(err.value)


@pytest.mark.req("SEC-2")
def test_decode_with_key_requires_a_valid_mac():
    plain = codec.encode("suspend", 1, {"cmd_id": 3})
    with pytest.raises(AuthError, match="suspend frame: missing auth"):
        codec.decode(plain, key=TEST_KEY)
    signed = codec.encode_frame("suspend", 1, {"cmd_id": 3}, key=TEST_KEY, counter=8)
    forged = bytearray(signed)
    forged[9] ^= 1  # cmd_id changed after signing: the MAC no longer matches
    with pytest.raises(AuthError, match="bad MAC"):
        codec.decode_frame(_recrc(bytes(forged[:-2])), key=TEST_KEY)
    replay = bytearray(signed)
    replay[10] += 1  # counter changed: also covered by the MAC
    assert not codec.verify_mac(_recrc(bytes(replay[:-2])), TEST_KEY)
    assert codec.decode_frame(signed, key=TEST_KEY)["cmd_id"] == 3


# ------------------------------------------------------------------ stream splitting
@pytest.mark.req("LNK-1", "LNK-5")
# generating a few signed frames can take seconds on a loaded 2-core machine: not a failure
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames(), min_size=1, max_size=5), st.data())
def test_frame_reader_splits_any_chunking_and_skips_garbage(cases, data):
    wires = [codec.encode(mid, seq, f, flags=fl) for mid, seq, fl, f, _ in cases]
    stream = b"\0\x07\x07garbage\0" + b"".join(wires)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = codec.FrameReader()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += reader.feed(stream[a:b])
    errors = [x for x in got if isinstance(x, ProtocolError)]
    good = [codec.decode_frame(x) for x in got if not isinstance(x, ProtocolError)]
    assert len(errors) == 1  # the garbage chunk
    assert [(m.id, m.seq, m.fields) for m in good] == [(c[0], c[1], c[3]) for c in cases]


@pytest.mark.req("LNK-5")
def test_frame_reader_drops_an_oversized_chunk_and_recovers():
    reader = codec.FrameReader()
    assert reader.feed(b"\x01" * 5000) == []
    out = reader.feed(b"\x01" * 10 + b"\0" + codec.encode("hello", 3))
    assert isinstance(out[0], ProtocolError) and "oversized" in str(out[0])
    assert codec.decode_frame(out[1]).seq == 3


@pytest.mark.req("HW-3")
def test_frame_reader_tells_console_text_from_frames():
    """On the shared port (issue 17) a chunk of console text is text, not a broken frame;
    a frame never passes for text (its raw version byte 0x01 is not printable), and text
    with a binary byte in it stays an error."""
    frame = codec.stuff(codec.encode_frame("status", 7))
    text = b"\r\npump> status\r\nstopped   no\r\n"
    reader = codec.FrameReader(console=True)
    items = reader.feed(text + b"\0" + frame + b"\x00" + b"ok\x02\0")
    assert isinstance(items[0], codec.ConsoleText) and items[0] == text.decode()
    assert codec.decode_frame(items[1]).seq == 7
    assert isinstance(items[2], ProtocolError)
    long_session = reader.feed(b"pump> help\r\n" * 400 + b"\0")  # > any frame: still text
    assert all(isinstance(i, codec.ConsoleText) for i in long_session)
    assert "".join(long_session) == "pump> help\r\n" * 400
    plain = codec.FrameReader().feed(text + b"\0")
    assert len(plain) == 1 and isinstance(plain[0], ProtocolError)


@pytest.mark.req("HW-5")
def test_frame_reader_gives_up_text_no_zero_has_ended():
    """The console's answer ends with its prompt, no 0x00 (that comes before its next
    frame): read together with a frame it stays in the reader until taken; a frame's
    first bytes never come out as text."""
    frame = codec.stuff(codec.encode_frame("status", 7))
    reader = codec.FrameReader(console=True)
    items = reader.feed(frame + b"\0" + b"\r\nbolus #7 started: 0.500 U\r\npump> ")
    assert len(items) == 1 and codec.decode_frame(items[0]).seq == 7
    assert reader.take_text() == "\r\nbolus #7 started: 0.500 U\r\npump> "
    assert reader.take_text() == ""
    for cut in (1, 2, 5):  # a frame's beginning stays a frame
        reader.feed(frame[:cut])
        assert reader.take_text() == ""
        assert codec.decode_frame(reader.feed(frame[cut:] + b"\0")[0]).seq == 7
    reader.feed(b"p")  # one byte may be a frame's COBS code byte: kept
    assert reader.take_text() == ""
    assert reader.feed(b"ump> \0") == ["pump> "]
