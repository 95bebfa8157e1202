"""Firmware codec of the wire protocol (LNK-1, SEC-2), built from protocol/spec.py.

Frame = header <BBHB (version, flags, sequence, message id) + payload (the message's fields,
little-endian, no padding) + [auth <I8s: counter, HMAC-SHA256(key, schema hash <I + header +
payload + counter)[:8], when flags & F_AUTH] + crc16 <H (CRC-16/CCITT-FALSE over everything
before it). On the wire: COBS(frame) + b"\\x00". The schema hash in the MAC makes a frame
from a host built from another message table fail authentication (LNK-1, LNK-6).

Hot path (the link): `Decoder` turns received bytes into frames in a preallocated buffer
(no allocation per byte) and `Encoder` packs a response field by field with one
struct.pack_into per field into a preallocated buffer, then COBS-encodes it into another.
`get(buf, msg_id, index)` reads a field of a received frame without struct.unpack.

The message table is held in byte arrays (`PAYLOAD_SIZE` by id, `known(mid)`, the fields'
offsets and kinds); the per-message dicts SIZE, KINDS, OFFSETS, FORMATS, LENGTHS and INDEX
(name -> id) are built on first use, for host code and tests only (heap, issue 12).

For tests and tools (these allocate): `field_values`, and `encode_frame` / `decode_frame`,
which live in firmware/wire_frames.py and are handed out here on first use.
"""

import struct
from array import array

from firmware.compat import const
from firmware.crc import NATIVE, stamp
from protocol.spec import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_PAYLOAD,
    MESSAGES,
    schema_hash,
)

# Field kinds: size in bytes, negative for signed ints; bytes fields are kind 0.
_KINDS = {"B": 1, "H": 2, "I": 4, "b": -1, "h": -2, "i": -4}
# struct format by kind + 4 (bytes fields have none): one string per int code, shared
_FORMAT = ("<i", None, "<h", "<b", None, "<B", "<H", None, "<I")

# The message table in four byte arrays built at import (heap, issue 12: five dicts of
# tuples per message took ~6 kB of RAM, these ~1 kB). By message id:
# protocol.spec HEADER_SIZE, CRC_SIZE, PROTOCOL_VERSION, inlined in the Encoder
# (tests/test_tick_consts.py checks them)
_HEADER_SIZE = const(5)
_CRC_SIZE = const(2)
_VERSION = const(1)
_F_AUTH = const(1)  # protocol.spec F_AUTH and MAC_SIZE, for Encoder.finish
_MAC_SIZE = const(8)
PAYLOAD_SIZE = bytearray(256)  # payload size (MAX_PAYLOAD fits a byte)
_FIRST = bytearray(256)  # 1 + the index of the message's first field below; 0: no message
# By field, the fields of each message in table order (allocated once, not grown):
_FIELDS = sum(len(fields) for _, fields in MESSAGES.values())
_AT = bytearray(_FIELDS)  # offset in the frame buffer (header included: < 256)
_KIND = array("b", _AT)  # kind (_KINDS, 0: bytes)
_LENGTH = bytearray(_FIELDS)  # size in bytes


def _build():
    if _FIELDS > 254:
        raise ValueError("too many fields for the byte table")
    i = 0
    for mid, (name, fields) in MESSAGES.items():
        _FIRST[mid] = i + 1
        off = 0
        for _, code in fields:
            if code in _KINDS:
                kind = _KINDS[code]
                n = kind if kind > 0 else -kind
            elif code.endswith("s"):
                kind = 0
                n = int(code[:-1])
            else:
                raise ValueError("bad field code " + code)
            _AT[i] = HEADER_SIZE + off
            _KIND[i] = kind
            _LENGTH[i] = n
            off += n
            i += 1
        if off > MAX_PAYLOAD:
            raise ValueError("payload too long: " + name)
        PAYLOAD_SIZE[mid] = off


_build()


def known(mid):
    """Is `mid` a message id of the table?"""
    return isinstance(mid, int) and 0 <= mid < 256 and _FIRST[mid] != 0


def _views(name):
    # The per-message dicts host code and tests read (SIZE, KINDS, OFFSETS, FORMATS,
    # LENGTHS: tuples by id; INDEX: name -> id), built on first use: the firmware reads
    # the byte arrays above and never builds them.
    if name == "INDEX":
        return {MESSAGES[mid][0]: mid for mid in MESSAGES}
    out = {}
    for mid in MESSAGES:
        first = _FIRST[mid] - 1
        fields = range(first, first + len(MESSAGES[mid][1]))
        if name == "SIZE":
            out[mid] = PAYLOAD_SIZE[mid]
        elif name == "KINDS":
            out[mid] = tuple(_KIND[i] for i in fields)
        elif name == "OFFSETS":
            out[mid] = tuple(_AT[i] - HEADER_SIZE for i in fields)
        elif name == "FORMATS":
            out[mid] = tuple(_FORMAT[_KIND[i] + 4] for i in fields)
        else:
            out[mid] = tuple(_LENGTH[i] for i in fields)
    return out


def __getattr__(name):
    if name in ("SIZE", "KINDS", "OFFSETS", "FORMATS", "LENGTHS", "INDEX"):
        view = _views(name)
        globals()[name] = view  # once
        return view
    if name in ("encode_frame", "decode_frame"):
        # the tests' and tools' whole-frame helpers, in their own module: the firmware
        # never calls them and a board loading .mpy files would hold their bytecode in RAM
        from firmware import wire_frames

        fn = getattr(wire_frames, name)
        globals()[name] = fn  # once
        return fn
    raise AttributeError(name)

COBS_MAX = MAX_FRAME + MAX_FRAME // 254 + 2  # stuffed frame + delimiter
SCHEMA = schema_hash()  # of this table: HELLO reports it, every MAC covers it
SCHEMA_LE = struct.pack("<I", SCHEMA)


# ----------------------------------------------------------------------------- primitives
def get_int(buf, off, kind):
    """Little-endian int of `kind` at buf[off]; no allocation for values below 2**30."""
    if kind == 1:
        return buf[off]
    if kind == 2:
        return buf[off] | (buf[off + 1] << 8)
    if kind == 4:
        return buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16) | (buf[off + 3] << 24)
    if kind == -1:
        v = buf[off]
        return v - 256 if v & 0x80 else v
    if kind == -2:
        v = buf[off] | (buf[off + 1] << 8)
        return v - 65536 if v & 0x8000 else v
    if kind == -4:
        v = buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16)
        top = buf[off + 3]
        if top & 0x80:
            return v - ((256 - top) << 24)
        return v | (top << 24)
    raise ValueError("not an int field")


def get(buf, mid, index):
    """Int field `index` of message `mid` in a received frame buffer (header at 0)."""
    i = _FIRST[mid] - 1 + index
    return get_int(buf, _AT[i], _KIND[i])


def store_le(buf, at, value, size):
    """Write `value` little-endian into buf[at:at + size] (two's complement). No allocation."""
    i = 0
    while i < size:
        buf[at + i] = (value >> (8 * i)) & 0xFF
        i += 1


def message_format(mid):
    """The struct format of a message's payload (int fields only), for one pack_into."""
    return "<" + "".join(code for _, code in MESSAGES[mid][1])


def field_offset(mid, index):
    """Offset of a field in the frame buffer (header included)."""
    return _AT[_FIRST[mid] - 1 + index]


def field_values(buf, mid):
    """The fields of message `mid` in a frame buffer (header at 0): ints, and bytes for
    bytes fields (allocates: emulator commands, tests and tools)."""
    first = _FIRST[mid] - 1
    values = []
    for i in range(first, first + len(MESSAGES[mid][1])):
        at = _AT[i]
        if _KIND[i]:
            values.append(get_int(buf, at, _KIND[i]))
        else:
            values.append(bytes(buf[at:at + _LENGTH[i]]))
    return values


# COBS encoding: the viper version where the runtime has a native emitter, else the
# portable bytecode (firmware/portable.py, imported only then)
if NATIVE:
    from firmware.native import cobs_encode
else:
    from firmware.portable import cobs_encode


def seal_portable(buf, n, wire):
    """buf[n:n + 2] = the CRC of buf[:n] (little-endian), then COBS(buf[:n + 2]) + 0x00
    into wire; returns the wire length. `seal` is the ARM images' C version (crc16c.seal:
    both byte loops in one call), else this with the viper or portable pieces."""
    stamp(buf, n)
    return cobs_encode(buf, n + _CRC_SIZE, wire)


seal = seal_portable
try:
    from crc16c import seal  # noqa: F811
except ImportError:  # every runtime but the ARM images
    pass


# Decoder state, in an array('i') both feed loops share (the viper one cannot set
# attributes): bytes decoded so far, code byte of the current block (0 before the first),
# data bytes still to come in it, 1 once the frame is bad, the buffer's capacity, and the
# length of a completed frame (-1: bad) with 1 in D_DONE when a delimiter was consumed.
D_N = const(0)
D_CODE = const(1)
D_LEFT = const(2)
D_BAD = const(3)
D_CAP = const(4)
D_SIZE = const(5)
D_DONE = const(6)


# COBS decoding: the ARM images' C version (tools/arm/cmod/crc16c), else the viper one, else
# the portable bytecode (firmware/portable.py, imported only then)
try:
    from crc16c import cobs_feed
except ImportError:
    if NATIVE:
        from firmware.native import cobs_feed
    else:
        from firmware.portable import cobs_feed


class Decoder:
    """Incremental COBS decoder into a preallocated frame buffer.

    `feed(chunk, i, end)` consumes bytes from chunk[i:end] up to and including one 0x00
    and returns the index after the last byte consumed. When a delimiter was consumed,
    `done` is True and `size` is the decoded length, or -1 for a frame that was not valid
    COBS or longer than the buffer. Empty frames (0x00 0x00) give size 0. `st` holds the
    decoding state (D_*: `st[D_N]` bytes decoded so far, `st[D_BAD]` not a frame).
    """

    def __init__(self, size=MAX_FRAME):
        self.buf = bytearray(size)
        self.st = array("i", [0] * 7)
        self.st[D_CAP] = size
        self.size = 0  # length of the last completed frame
        self.done = False

    def reset(self):
        st = self.st
        st[D_N] = 0
        st[D_CODE] = 0
        st[D_LEFT] = 0
        st[D_BAD] = 0
        self.done = False

    def feed(self, chunk, i, end):
        st = self.st
        i = cobs_feed(chunk, i, end, self.buf, st)
        if st[D_DONE]:
            st[D_DONE] = 0
            self.done = True
            self.size = st[D_SIZE]
        return i


try:  # the ARM images' C module (tools/arm/cmod/hmac256)
    from hmac256 import HMAC
except ImportError:  # unix port, wasm, CPython: firmware/hmac_portable.py
    HMAC = None


def Auth(key, schema=None, portable=False):
    """The link's MAC (SEC-2): HMAC-SHA256 with the pairing key over the schema hash (it
    binds the message table) + the frame, truncated to MAC_SIZE bytes by the callers:
    `auth.sign(buf, n, buf, n, MAC_SIZE)` writes the MAC of buf[:n] after it,
    `auth.verify(buf, n, buf, n, MAC_SIZE)` checks the one there (every byte compared);
    for a frame's auth trailer (counter <I + MAC) at buf[at], one call each:
    `auth.seal(buf, at, counter, MAC_SIZE, wire)` writes the trailer, then the CRC and
    the COBS frame into wire (as `seal`), and returns the wire length,
    `auth.check(buf, at, MAC_SIZE)` returns the counter if the MAC is good, else None.

    The hmac256 C module's HMAC where the image has it (ARM: the key pads hashed once, two
    SHA-256 blocks for a short frame, no allocation), else, or if `portable`, the same
    interface in Python (firmware/hmac_portable.py, imported only then: heap)."""
    prefix = SCHEMA_LE if schema is None else struct.pack("<I", schema)
    if HMAC is None or portable:
        from firmware.hmac_portable import HmacPortable

        return HmacPortable(key, prefix)
    return HMAC(key, prefix)


class Encoder:
    """Builds one frame at a time in `buf`, stuffs it into `wire`.

    begin(mid, seq, flags); put(i, value) per int field (one struct.pack_into each) or
    write bytes fields straight into buf at field_offset(mid, i); finish() -> wire length.
    """

    def __init__(self):
        self.buf = bytearray(MAX_FRAME)
        self.buf[0] = _VERSION  # every frame's first byte: begin() leaves it
        self.wire = bytearray(COBS_MAX)
        self.mid = 0
        self.first = _FIRST[0x80] - 1  # index of the message's first field (_AT, ...)

    def begin(self, mid, seq, flags):
        buf = self.buf
        buf[1] = flags
        buf[2] = seq & 0xFF
        buf[3] = (seq >> 8) & 0xFF
        buf[4] = mid
        self.mid = mid
        self.first = _FIRST[mid] - 1

    def put(self, index, value):
        i = self.first + index
        struct.pack_into(_FORMAT[_KIND[i] + 4], self.buf, _AT[i], value)

    def clear(self, index):
        """Zero a bytes field (before filling part of it)."""
        buf = self.buf
        i = self.first + index
        at = _AT[i]
        end = at + _LENGTH[i]
        while at < end:
            buf[at] = 0
            at += 1

    def finish(self, auth=None, counter=0):
        """CRC (after the auth trailer if `auth`), COBS; returns the wire length."""
        buf = self.buf
        n = _HEADER_SIZE + PAYLOAD_SIZE[self.mid]
        if auth is not None:
            buf[1] |= _F_AUTH
            return auth.seal(buf, n, counter, _MAC_SIZE, self.wire)  # trailer, CRC, COBS
        return seal(buf, n, self.wire)
