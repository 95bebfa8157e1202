"""The fast host codec (protocol/fastcodec.py) agrees with the definition (protocol/codec.py,
construct) byte for byte: on every golden vector, on random messages of every kind
(hypothesis), and on bad input, where it raises codec's very error (LNK-1, LNK-5, SEC-2).
"""

import json

import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec, fastcodec, spec
from protocol.make_golden import GOLDEN_PATH, fields_from_json

GOLDEN = json.loads(GOLDEN_PATH.read_text())
VECTORS = GOLDEN["vectors"]
KEY = bytes.fromhex(GOLDEN["key"])
OTHER_KEY = bytes(range(32))
IDS = tuple(sorted(codec.MESSAGES))
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def outcome(fn, *args, **kwargs):
    """("ok", value) or ("error", exception class, message): comparable across codecs."""
    try:
        return ("ok", fn(*args, **kwargs))
    except codec.ProtocolError as exc:
        return ("error", type(exc), str(exc))


def field_values(f):
    if f.is_bytes:
        return st.binary(min_size=0, max_size=f.size)  # shorter ones are zero padded
    return st.integers(f.lo, f.hi)


@st.composite
def messages(draw, ids=IDS):
    """(id or name, seq, fields, key, counter, flags) of any valid message."""
    mid = draw(st.sampled_from(ids))
    m = codec.MESSAGES[mid]
    fields = {f.name: draw(field_values(f)) for f in m.fields}
    seq = draw(st.integers(0, 0xFFFF))
    flags = draw(st.integers(0, 0xFF)) & ~spec.F_AUTH
    signed = draw(st.booleans())
    key = draw(st.sampled_from([KEY, OTHER_KEY])) if signed else None
    counter = draw(st.integers(0, 0xFFFFFFFF)) if signed else None
    name_or_id = m.name if draw(st.booleans()) else mid
    return name_or_id, seq, fields, key, counter, flags


def _ids(v):
    return f"{v['name']}-{v['case']}"


# ------------------------------------------------------------------ golden vectors
@pytest.mark.req("LNK-1", "SEC-2")
def test_the_fast_codec_is_derived_from_the_current_table():
    assert set(fastcodec._BY_ID) == set(spec.MESSAGES)
    for mid, d in fastcodec._BY_ID.items():
        assert d.size == codec.payload_size(mid)
        assert d.names == codec.field_names(mid)
    assert GOLDEN["schema"] == spec.schema_hash(), (
        "protocol/spec.py changed: run `python -m protocol.make_golden` and review the diff")


@pytest.mark.req("LNK-1")
def test_table_lookups_agree_with_codec_without_construct():
    """message_id, message_name, payload_size and field_names come from the fast table (the
    client builds its records from them at import, before construct is loaded); anything
    else gets codec's own error, or codec's answer for what it accepts (an IntEnum)."""
    import enum

    for mid, (name, _fields) in spec.MESSAGES.items():
        for key in (mid, name):
            assert fastcodec.message_id(key) == codec.message_id(key) == mid
            assert fastcodec.payload_size(key) == codec.payload_size(key)
            assert fastcodec.field_names(key) == codec.field_names(key)
        assert fastcodec.message_name(mid) == codec.message_name(mid) == name
    for bad in ("no_such_message", 0xEE, True, None, 1.0):
        for fn in ("message_id", "payload_size", "field_names", "message_name"):
            want = outcome(getattr(codec, fn), bad)
            assert want[0] == "error"
            assert outcome(getattr(fastcodec, fn), bad) == want
    status = enum.IntEnum("Ids", {"STATUS": codec.message_id("status_info")}).STATUS
    assert fastcodec.field_names(status) == codec.field_names("status_info")


@pytest.mark.req("LNK-1", "SEC-2")
@pytest.mark.parametrize("v", VECTORS, ids=_ids)
def test_fast_codec_reproduces_golden(v):
    if GOLDEN["schema"] != spec.schema_hash():
        pytest.skip("golden.json is stale (see test_the_fast_codec_is_derived_...)")
    key = KEY if v["counter"] is not None else None
    fields = fields_from_json(v["fields"])
    flags = v["flags"] & ~spec.F_AUTH
    frame = fastcodec.encode_frame(v["id"], v["seq"], fields, key, v["counter"], flags)
    assert frame.hex() == v["frame"]
    wire = fastcodec.encode(v["name"], v["seq"], fields, key, v["counter"], flags)
    assert wire.hex() == v["wire"]
    msg = fastcodec.decode(bytes.fromhex(v["wire"]), key)
    assert msg == codec.decode(bytes.fromhex(v["wire"]), key)
    assert (msg.id, msg.seq, msg.flags, msg.fields, msg.counter) == (
        v["id"], v["seq"], v["flags"], fields, v["counter"])
    if key:
        assert fastcodec.verify_mac(msg, KEY) and not fastcodec.verify_mac(msg, OTHER_KEY)
        assert fastcodec.verify_mac(wire, KEY, wire=True)
        assert outcome(fastcodec.decode, wire, OTHER_KEY) == outcome(codec.decode, wire,
                                                                     OTHER_KEY)


# ------------------------------------------------------------------ random messages
@pytest.mark.req("LNK-1", "SEC-2")
@SETTINGS
@given(messages())
def test_fast_and_construct_codecs_agree_byte_for_byte(case):
    name_or_id, seq, fields, key, counter, flags = case
    frame = codec.encode_frame(name_or_id, seq, fields, key, counter, flags)
    assert fastcodec.encode_frame(name_or_id, seq, fields, key, counter, flags) == frame
    wire = codec.encode(name_or_id, seq, fields, key, counter, flags)
    assert fastcodec.encode(name_or_id, seq, fields, key, counter, flags) == wire
    assert wire == cobs.encode(frame) + b"\0"
    want = codec.decode_frame(frame, key)
    got = fastcodec.decode_frame(frame, key)
    assert got == want and type(got) is type(want) and got.fields == want.fields
    assert list(got.fields) == list(want.fields)  # table order
    assert fastcodec.decode(wire) == codec.decode(wire)
    assert fastcodec.decode(wire[:-1]) == want  # the delimiter is optional
    assert fastcodec.decode_frame(bytearray(frame)) == codec.decode_frame(frame)
    if key is not None:
        assert fastcodec.verify_mac(frame, key) and codec.verify_mac(frame, key)
        wrong = OTHER_KEY if key == KEY else KEY
        assert outcome(fastcodec.decode_frame, frame, wrong) == outcome(
            codec.decode_frame, frame, wrong)
        assert fastcodec.verify_mac(frame, wrong) is codec.verify_mac(frame, wrong) is False
    else:
        assert outcome(fastcodec.decode_frame, frame, KEY) == outcome(
            codec.decode_frame, frame, KEY)  # missing auth


def bad_value(f, draw):
    """A value codec refuses for field f."""
    if f.is_bytes:
        return draw(st.one_of(st.binary(min_size=f.size + 1, max_size=f.size + 4),
                              st.text(max_size=3), st.integers(0, 5), st.none()))
    return draw(st.one_of(st.integers(f.hi + 1, f.hi + 2**40),
                          st.integers(f.lo - 2**40, f.lo - 1), st.booleans(),
                          st.floats(allow_nan=False), st.binary(max_size=2), st.none(),
                          st.text(max_size=2)))


@st.composite
def bad_encodes(draw):
    """Arguments of encode_frame that codec refuses (or, rarely, accepts: then both must
    give the same frame)."""
    name_or_id, seq, fields, key, counter, flags = draw(messages())
    m = codec.MESSAGES[codec.message_id(name_or_id)]
    how = draw(st.sampled_from(["value", "missing", "extra", "seq", "flags", "counter",
                                "key", "name", "auth_flag"]))
    fields = dict(fields)
    if how == "value" and m.fields:
        f = draw(st.sampled_from(m.fields))
        fields[f.name] = bad_value(f, draw)
    elif how == "missing" and m.fields:
        del fields[draw(st.sampled_from(m.fields)).name]
    elif how == "extra":
        fields["no_such_field"] = 1
    elif how == "seq":
        seq = draw(st.sampled_from([-1, 0x10000, True, 1.0, "1"]))
    elif how == "flags":
        flags = draw(st.sampled_from([-1, 0x100, None]))
    elif how == "counter":
        key = KEY
        counter = draw(st.sampled_from([None, -1, 2**32, 1.5, True]))
    elif how == "key":
        key = draw(st.sampled_from([b"short", bytes(33), "k" * 32, bytearray(32)]))
        counter = 1
    elif how == "name":
        name_or_id = draw(st.sampled_from(["nope", 0x7F, -1, True, None, 2.0]))
    else:
        key, counter = None, None
        flags |= spec.F_AUTH
    return name_or_id, seq, fields, key, counter, flags


@pytest.mark.req("LNK-1", "LNK-5")
@SETTINGS
@given(bad_encodes())
def test_bad_values_get_the_construct_codecs_error(case):
    assert outcome(fastcodec.encode_frame, *case) == outcome(codec.encode_frame, *case)
    assert outcome(fastcodec.encode, *case) == outcome(codec.encode, *case)


@st.composite
def bad_frames(draw):
    """Unstuffed frames that are mostly wrong: mutated, cut, lengthened, random."""
    name_or_id, seq, fields, key, counter, flags = draw(messages())
    frame = bytearray(codec.encode_frame(name_or_id, seq, fields, key, counter, flags))
    how = draw(st.sampled_from(["flip", "cut", "grow", "random", "version", "id",
                                "recrc"]))
    if how == "flip":
        at = draw(st.integers(0, len(frame) - 1))
        frame[at] ^= draw(st.integers(1, 255))
    elif how == "cut":
        frame = frame[:draw(st.integers(0, len(frame) - 1))]
    elif how == "grow":
        frame += draw(st.binary(min_size=1, max_size=300))
    elif how == "random":
        frame = bytearray(draw(st.binary(max_size=300)))
    else:  # header or payload changed, CRC made right again
        body = frame[:-2]
        if how == "version":
            body[0] = draw(st.integers(0, 255))
        elif how == "id":
            body[4] = draw(st.integers(0, 255))
        else:
            at = draw(st.integers(0, len(body) - 1))
            body[at] ^= draw(st.integers(1, 255))
        frame = body + codec.crc16(bytes(body)).to_bytes(2, "little")
    return bytes(frame), draw(st.sampled_from([None, KEY, OTHER_KEY]))


@pytest.mark.req("LNK-1", "LNK-5", "SEC-2")
@SETTINGS
@given(bad_frames())
def test_bad_frames_get_the_construct_codecs_error(case):
    frame, key = case
    assert outcome(fastcodec.decode_frame, frame, key) == outcome(codec.decode_frame, frame,
                                                                  key)
    stuffed = cobs.encode(frame) + b"\0" if frame else b"\0"
    assert outcome(fastcodec.decode, stuffed, key) == outcome(codec.decode, stuffed, key)


@pytest.mark.req("LNK-1", "LNK-5")
@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([None, KEY]))
def test_any_wire_bytes_decode_the_same(data, key):
    assert outcome(fastcodec.decode, data, key) == outcome(codec.decode, data, key)


@pytest.mark.req("LNK-1")
@SETTINGS
@given(st.binary(max_size=300))
def test_crc_hqx_is_crc16_ccitt_false(data):
    from binascii import crc_hqx

    assert crc_hqx(data, 0xFFFF) == codec.crc16(data)


@pytest.mark.req("SEC-2")
@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([KEY, OTHER_KEY]),
       st.integers(0, 0xFFFFFFFF))
def test_the_precomputed_hmac_is_codecs_mac(signed, key, counter):
    want = codec.compute_mac(key, signed, counter)
    assert fastcodec._mac(key, signed + counter.to_bytes(4, "little")) == want
