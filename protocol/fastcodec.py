"""Fast path of the host codec: the frames of protocol/codec.py, derived from the same table.

protocol/codec.py (construct) stays the definition and the checker: it says what a frame
is and describes what is wrong with a bad one. Interpreting its construct tree costs
55-150 us per frame, 12-30x what pymavlink needs for a message (benchmarks/RESULTS.md,
issue 6 item 3).
This module precomputes, at import, from ``spec.MESSAGES``:

- one ``struct.Struct`` per message: header ``<BBHB`` followed by the message's field codes
  (the table's codes are struct codes; ``Ns`` pads with zeros, as codec does),
- the field names in table order and the type each value must have (int or bytes),

and frames with C code only: ``cobs`` (the package codec.py uses) for COBS,
``binascii.crc_hqx(data, 0xFFFF)`` for CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
reflection, no xorout: crc_hqx is that CRC with the start value given), and hashlib's
sha256 with the HMAC key blocks precomputed per key for the truncated HMAC-SHA256.

Anything the fast path does not accept as plainly valid (unknown message, missing or extra
field, a value that is not exactly an int or bytes, out of range, too long, bad key; a
frame that is too short or long, has a bad CRC, another version, an unknown id, the wrong
length or a bad MAC) is handed to codec.py, which raises its descriptive ProtocolError
(or, for an input codec accepts that the fast path declined, such as an IntEnum or a
bytearray value, returns codec's result). So errors are codec's by construction, and
tests/test_fastcodec.py proves both agree byte for byte on the golden vectors and on
random messages (hypothesis).

The API is codec's (encode, encode_frame, decode, decode_frame, verify_mac; everything
else is re-exported), so a caller switches with ``from protocol import fastcodec as codec``.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import struct
from binascii import crc_hqx

from cobs import cobs

from protocol import codec, spec
from protocol.codec import (  # noqa: F401 - re-exported: the same API as codec
    AuthError,
    ConsoleText,
    FrameReader,
    Message,
    ProtocolError,
    VersionError,
    _check_key,
    compute_mac,
    crc16,
    stuff,
    unstuff,
)

__all__ = [
    "AuthError",
    "ConsoleText",
    "FrameReader",
    "Message",
    "ProtocolError",
    "VersionError",
    "compute_mac",
    "crc16",
    "decode",
    "decode_frame",
    "encode",
    "encode_frame",
    "field_names",
    "message_id",
    "message_name",
    "payload_size",
    "verify_mac",
]

_VERSION = spec.PROTOCOL_VERSION
_F_AUTH = spec.F_AUTH
_HEADER = struct.Struct(spec.HEADER_FMT)
_AUTH = struct.Struct(spec.AUTH_FMT)
_MIN_FRAME = spec.HEADER_SIZE + spec.CRC_SIZE
_MAX_FRAME = spec.MAX_FRAME


class _Def:
    """One message of the table, ready for struct."""

    __slots__ = ("id", "name", "names", "struct", "payload", "size", "types", "values",
                 "sized", "plain_len", "auth_len")

    def __init__(self, mid: int, name: str, fields):
        self.id = mid
        self.name = name
        self.names = tuple(n for n, _ in fields)
        codes = "".join(code for _, code in fields)
        self.struct = struct.Struct(spec.HEADER_FMT + codes)  # header + payload
        self.payload = struct.Struct("<" + codes)
        self.size = self.struct.size - spec.HEADER_SIZE
        self.types = tuple(bytes if code.endswith("s") else int for _, code in fields)
        # bytes fields: (index, size); struct would silently cut a longer value
        self.sized = tuple((i, int(code[:-1])) for i, (_, code) in enumerate(fields)
                           if code.endswith("s"))
        n = len(self.names)
        if n == 0:
            self.values = lambda d: ()
        elif n == 1:
            get = operator.itemgetter(self.names[0])
            self.values = lambda d: (get(d),)
        else:
            self.values = operator.itemgetter(*self.names)
        self.plain_len = spec.HEADER_SIZE + self.size + spec.CRC_SIZE
        self.auth_len = self.plain_len + spec.AUTH_SIZE


def _build():
    # the same layout as the definition (codec.py): tests/test_fastcodec.py compares them
    # message by message (not done here: it would import construct into every host tool)
    by_id: dict[int, _Def] = {}
    by_name: dict[str, _Def] = {}
    for mid, (name, fields) in sorted(spec.MESSAGES.items()):
        d = _Def(mid, name, fields)
        by_id[mid] = d
        by_name[name] = d
    return by_id, by_name


_BY_ID, _BY_NAME = _build()


def _lookup(name_or_id) -> _Def | None:
    t = type(name_or_id)
    if t is str:
        return _BY_NAME.get(name_or_id)
    if t is int:
        return _BY_ID.get(name_or_id)
    return None


def _known(name_or_id) -> _Def:
    """The message's definition; anything else is codec's to describe (it raises)."""
    d = _lookup(name_or_id)
    # codec raises its ProtocolError, or accepts what the fast path declined (an IntEnum)
    return d if d is not None else _BY_ID[codec.message_id(name_or_id)]


def message_id(name_or_id: str | int) -> int:
    """codec.message_id, from the precomputed table."""
    return _known(name_or_id).id


def message_name(mid: int) -> str:
    return _known(mid).name


def payload_size(name_or_id: str | int) -> int:
    return _known(name_or_id).size


def field_names(name_or_id: str | int) -> tuple[str, ...]:
    return _known(name_or_id).names


def encode_frame(name_or_id: str | int, seq: int, fields: dict | None = None,
                 key: bytes | None = None, counter: int | None = None, flags: int = 0,
                 version: int = spec.PROTOCOL_VERSION) -> bytes:
    """The unstuffed frame: header + payload + [auth] + crc16 (codec.encode_frame's)."""
    d = _lookup(name_or_id)
    try:
        if d is None or type(seq) is not int or type(flags) is not int \
                or type(version) is not int:
            raise LookupError
        if fields:
            if len(fields) != len(d.names):
                raise LookupError
            values = d.values(fields)
            if tuple(map(type, values)) != d.types:
                raise LookupError
            for i, n in d.sized:
                if len(values[i]) > n:
                    raise LookupError
        elif d.names:
            raise LookupError
        else:
            values = ()
        if key is not None:
            if type(key) is not bytes or len(key) != 32 or type(counter) is not int:
                raise LookupError
            body = d.struct.pack(version, flags | _F_AUTH, seq, d.id, *values)
            signed = body + counter.to_bytes(4, "little")  # OverflowError: out of range
            body = signed + _mac(key, signed)
        elif flags & _F_AUTH:
            raise LookupError
        else:
            body = d.struct.pack(version, flags, seq, d.id, *values)
        return body + crc_hqx(body, 0xFFFF).to_bytes(2, "little")
    except (LookupError, struct.error, TypeError, ValueError, OverflowError):
        pass
    # not plainly valid: the definition decides (and describes the problem)
    return codec.encode_frame(name_or_id, seq, fields, key, counter, flags, version)


def encode(name_or_id: str | int, seq: int, fields: dict | None = None,
           key: bytes | None = None, counter: int | None = None, flags: int = 0) -> bytes:
    """Wire bytes of one frame: COBS(frame) + b"\\x00"."""
    return cobs.encode(encode_frame(name_or_id, seq, fields, key, counter, flags)) + b"\0"


_new = object.__new__
_SCHEMA = codec.SCHEMA.to_bytes(4, "little")
_PADS: dict[bytes, tuple] = {}  # key -> sha256 states after the HMAC ipad / opad blocks


def _mac(key: bytes, signed: bytes) -> bytes:
    """First MAC_SIZE bytes of HMAC-SHA256(key, signed) (codec.compute_mac's value), from
    sha256 states precomputed per key: two compressions fewer than hmac.digest."""
    pads = _PADS.get(key)
    if pads is None:
        if len(_PADS) >= 16:
            _PADS.clear()
        block = key.ljust(64, b"\0")  # keys are 32 bytes: no pre-hash (RFC 2104)
        pads = _PADS[key] = (hashlib.sha256(bytes(b ^ 0x36 for b in block)
                                            + _SCHEMA),  # the MAC covers the schema hash
                             hashlib.sha256(bytes(b ^ 0x5C for b in block)))
    inner = pads[0].copy()
    inner.update(signed)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()[:spec.MAC_SIZE]


def _message(mid, name, seq, flags, fields, counter, mac, frame) -> Message:
    """codec.Message(...) without the frozen dataclass's __init__ (one object.__setattr__
    per field): the same instance state, a third of the time."""
    m = _new(Message)
    m.__dict__.update(id=mid, name=name, seq=seq, flags=flags, fields=fields,
                      counter=counter, mac=mac, frame=frame)
    return m


def decode_frame(frame: bytes, key: bytes | None = None) -> Message:
    """Decode an unstuffed frame; with ``key``, also require and check its MAC."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    n = len(frame)
    if n < _MIN_FRAME or n > _MAX_FRAME:
        return codec.decode_frame(frame, key)
    if crc_hqx(frame[:-2], 0xFFFF) != frame[-2] | frame[-1] << 8:
        return codec.decode_frame(frame, key)
    version, flags, seq, mid = _HEADER.unpack_from(frame)
    d = _BY_ID.get(mid)
    if version != _VERSION or d is None:
        return codec.decode_frame(frame, key)
    if flags & _F_AUTH:
        if n != d.auth_len:
            return codec.decode_frame(frame, key)
        counter, mac = _AUTH.unpack_from(frame, n - spec.CRC_SIZE - spec.AUTH_SIZE)
    else:
        if n != d.plain_len:
            return codec.decode_frame(frame, key)
        counter = mac = None
    if key is not None:
        if mac is None or type(key) is not bytes or len(key) != 32 or not hmac.compare_digest(
                mac, _mac(key, frame[:n - spec.CRC_SIZE - spec.MAC_SIZE])):
            return codec.decode_frame(frame, key)  # raises AuthError (or ProtocolError)
    fields = dict(zip(d.names, d.payload.unpack_from(frame, spec.HEADER_SIZE), strict=False))
    return _message(mid, d.name, seq, flags, fields, counter, mac, frame)


def decode(data: bytes, key: bytes | None = None) -> Message:
    """Decode wire bytes of one frame (COBS, trailing 0x00 optional)."""
    if type(data) is not bytes:
        data = bytes(data)
    if data[-1:] == b"\0":
        data = data[:-1]
    if not data:
        return codec.decode(data, key)  # raises
    try:
        frame = cobs.decode(data)  # refuses a 0x00 inside too
    except cobs.DecodeError:
        return codec.decode(data, key)  # raises, with codec's message
    return decode_frame(frame, key)


def verify_mac(msg_bytes, key: bytes, wire: bool = False) -> bool:
    """codec.verify_mac, with the precomputed HMAC key blocks."""
    if type(key) is not bytes or len(key) != 32:
        return codec.verify_mac(msg_bytes, key, wire)
    if isinstance(msg_bytes, Message):
        frame = msg_bytes.frame
    else:
        frame = unstuff(msg_bytes) if wire else bytes(msg_bytes)
    n = len(frame)
    if n < spec.HEADER_SIZE + spec.AUTH_SIZE + spec.CRC_SIZE or not frame[1] & _F_AUTH:
        return False
    at = n - spec.CRC_SIZE - spec.MAC_SIZE
    return hmac.compare_digest(frame[at:at + spec.MAC_SIZE], _mac(key, frame[:at]))
