"""Whole-frame encode and decode for tests and tools (allocate; the firmware never calls
them): firmware/wire.py hands them out as `wire.encode_frame` / `wire.decode_frame` on first
use, so a board that loads .mpy files keeps their bytecode out of RAM (issue 12)."""

from firmware.crc import stamped
from firmware.wire import (
    _FIRST,
    _KIND,
    _LENGTH,
    PAYLOAD_SIZE,
    Auth,
    Decoder,
    Encoder,
    field_offset,
    field_values,
    get_int,
    known,
)
from protocol.spec import (
    AUTH_SIZE,
    CRC_SIZE,
    F_AUTH,
    HEADER_SIZE,
    MAC_SIZE,
    MESSAGES,
    PROTOCOL_VERSION,
)


def _check_int(kind, v):
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError("int field needs an int")
    if kind > 0:
        lo, hi = 0, (1 << (8 * kind)) - 1
    else:
        lo, hi = -(1 << (-8 * kind - 1)), (1 << (-8 * kind - 1)) - 1
    if v < lo or v > hi:
        raise ValueError("value out of range")


def encode_frame(msg_id, seq, flags, values, key=None, counter=0, schema=None):
    """Wire bytes of one frame: COBS(frame) + b"\\x00" (allocates; for tests and tools).

    values: the message's fields in table order (ints, or bytes for "Ns" fields, padded
    with zeros like struct). With `key` the frame is authenticated with `counter` (F_AUTH
    is set); `schema`: the schema hash the MAC covers (default: this table's). Raises
    ValueError for an unknown id or values the fields cannot carry.
    """
    if not known(msg_id):
        raise ValueError("unknown message id")
    first = _FIRST[msg_id] - 1
    if len(values) != len(MESSAGES[msg_id][1]):
        raise ValueError("wrong number of values")
    _check_int(2, seq)
    _check_int(1, flags)
    if key is None and flags & F_AUTH:
        raise ValueError("F_AUTH needs a key")
    enc = Encoder()
    enc.begin(msg_id, seq, flags)
    for i in range(len(values)):
        v = values[i]
        kind = _KIND[first + i]
        if kind:
            _check_int(kind, v)
            enc.put(i, v)
        else:
            if not isinstance(v, (bytes, bytearray)):
                raise ValueError("bytes field needs bytes")
            if len(v) > _LENGTH[first + i]:
                raise ValueError("bytes value too long")
            enc.clear(i)
            at = field_offset(msg_id, i)
            for j in range(len(v)):
                enc.buf[at + j] = v[j]
    if key is not None:
        _check_int(4, counter)
        n = enc.finish(Auth(key, schema), counter)
    else:
        n = enc.finish()
    return bytes(enc.wire[:n])


def decode_frame(frame, key=None):
    """(msg_id, seq, flags, values, counter) of one frame (allocates; for tests and tools).

    frame: the COBS bytes between delimiters (a trailing 0x00 is accepted too).
    counter is 0 without auth. With `key`, an authenticated frame's MAC must match.
    Raises ValueError for anything malformed: bad COBS, too short or long, bad CRC,
    other protocol version, unknown message id, length not matching the message.
    """
    frame = bytes(frame)
    if frame and frame[-1] == 0:
        frame = frame[:-1]
    if 0 in frame:
        raise ValueError("0x00 inside a frame")
    dec = Decoder()
    dec.feed(frame + b"\x00", 0, len(frame) + 1)
    n = dec.size
    buf = dec.buf
    if n < 0:
        raise ValueError("bad COBS or frame too long")
    if n < HEADER_SIZE + CRC_SIZE:
        raise ValueError("truncated frame")
    if not stamped(buf, n - CRC_SIZE):
        raise ValueError("bad CRC")
    if buf[0] != PROTOCOL_VERSION:
        raise ValueError("other protocol version")
    flags = buf[1]
    seq = buf[2] | (buf[3] << 8)
    mid = buf[4]
    if not known(mid):
        raise ValueError("unknown message id")
    size = PAYLOAD_SIZE[mid]
    auth = AUTH_SIZE if flags & F_AUTH else 0
    if n != HEADER_SIZE + size + auth + CRC_SIZE:
        raise ValueError("length does not match the message")
    values = field_values(buf, mid)
    counter = 0
    if auth:
        at = HEADER_SIZE + size
        counter = get_int(buf, at, 4)
        if key is not None and not Auth(key).verify(buf, at + 4, buf, at + 4, MAC_SIZE):
            raise ValueError("bad MAC")
    return mid, seq, flags, values, counter
