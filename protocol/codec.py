"""Host codec for the micropump wire protocol, built from the table in protocol/spec.py.

One construct ``Struct`` per message is generated from ``spec.MESSAGES``; the frame is a
``Switch`` on the message id, protected by a ``Checksum`` (CRC-16/CCITT-FALSE) and, for
authenticated frames, an 8-byte truncated HMAC-SHA256 over schema hash + header + payload +
counter (SEC-2, LNK-1). On the wire a frame is COBS-encoded (``cobs`` package) and ends
with 0x00 (LNK-1).

    encode("bolus", seq, {"cmd_id": 7, "kind": 1, ...}, key=KEY, counter=12) -> wire bytes
    decode(wire_bytes) -> Message(id, name, seq, flags, fields, counter, mac)

Every malformed input raises ``ProtocolError`` (or a subclass) with a message that says
what is wrong; nothing here raises construct's own exceptions to the caller.

construct is imported, and the tables built, on first use (``MESSAGES``, ``Frame``, ...,
or any function that needs them): the host tools talk through protocol/fastcodec.py and
come here only for what it declines, so a `pumpctl status` never pays for construct.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cobs import cobs

from protocol import spec

__all__ = [
    "AuthError",
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
    "message_id",
    "message_name",
    "payload_size",
    "verify_mac",
]


class ProtocolError(ValueError):
    """A frame or a set of field values that the protocol cannot carry."""


class VersionError(ProtocolError):
    """The frame speaks another protocol version (the peer needs an update)."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(
            f"protocol version mismatch: frame has version {version}, host tools speak "
            f"version {spec.PROTOCOL_VERSION}; update the host tools or the pump firmware "
            "so both are built from the same protocol/spec.py"
        )


class AuthError(ProtocolError):
    """Missing or wrong MAC on a frame checked with a key."""


# ------------------------------------------------------------------------- CRC-16
def _crc_table():
    table = []
    for n in range(256):
        v = n << 8
        for _ in range(8):
            v = ((v << 1) ^ 0x1021) if v & 0x8000 else (v << 1)
        table.append(v & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout)."""
    t = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ b) & 0xFF]
    return crc


SCHEMA = spec.schema_hash()


def compute_mac(key: bytes, signed: bytes, counter: int, schema: int = SCHEMA) -> bytes:
    """First MAC_SIZE bytes of HMAC-SHA256(key, schema_le32 + header + payload +
    counter_le32). The schema hash binds the MAC to this message table (LNK-1): a pump built
    from another table refuses the frame, and the host refuses the pump's answers."""
    msg = schema.to_bytes(4, "little") + bytes(signed) + counter.to_bytes(4, "little")
    return hmac.new(bytes(key), msg, hashlib.sha256).digest()[: spec.MAC_SIZE]


# ------------------------------------------------------------------------- the table
# struct code -> (construct field name, lo, hi)
_INT_CODES = {
    "B": ("Int8ul", 0, 0xFF),
    "H": ("Int16ul", 0, 0xFFFF),
    "I": ("Int32ul", 0, 0xFFFFFFFF),
    "b": ("Int8sl", -0x80, 0x7F),
    "h": ("Int16sl", -0x8000, 0x7FFF),
    "i": ("Int32sl", -0x80000000, 0x7FFFFFFF),
}


@dataclass(frozen=True)
class _Field:
    name: str
    code: str
    size: int
    lo: int | None = None  # integer range; None for bytes fields
    hi: int | None = None

    @property
    def is_bytes(self) -> bool:
        return self.lo is None


def _field(name: str, code: str) -> tuple[_Field, c.Construct]:
    if code in _INT_CODES:
        sub_name, lo, hi = _INT_CODES[code]
        sub = getattr(c, sub_name)
        return _Field(name, code, sub.sizeof(), lo, hi), sub
    if code.endswith("s") and code[:-1].isdigit():
        n = int(code[:-1])
        return _Field(name, code, n), c.Bytes(n)
    raise AssertionError(f"spec.MESSAGES: field {name!r} has unsupported code {code!r}")


@dataclass(frozen=True)
class _MessageDef:
    id: int
    name: str
    fields: tuple[_Field, ...]
    struct: c.Struct
    size: int


def _build_table() -> tuple[dict[int, _MessageDef], dict[str, int]]:
    by_id: dict[int, _MessageDef] = {}
    by_name: dict[str, int] = {}
    for mid, (name, fields) in sorted(spec.MESSAGES.items()):
        defs, subs = [], []
        for fname, code in fields:
            d, sub = _field(fname, code)
            defs.append(d)
            subs.append(fname / sub)
        st = c.Struct(*subs)
        size = st.sizeof()
        assert size <= spec.MAX_PAYLOAD, f"{name}: payload {size} > MAX_PAYLOAD"
        by_id[mid] = _MessageDef(mid, name, tuple(defs), st, size)
        by_name[name] = mid
    return by_id, by_name


def _load() -> None:
    """Import construct and build the tables, once (see the module's docstring)."""
    global c, MESSAGES, _IDS, MessageId, Header, Signed, Auth, Frame
    import construct

    c = construct
    MESSAGES, _IDS = _build_table()

    MessageId = c.Enum(c.Int8ul, **{m.name: mid for mid, m in MESSAGES.items()})

    Header = c.Struct(
        "version" / c.Int8ul,
        "flags" / c.Int8ul,
        "seq" / c.Int16ul,
        "msg_id" / MessageId,
    )

    # header + payload: the part the MAC signs
    Signed = c.Struct(
        "header" / Header,
        "payload" / c.Switch(
            c.this.header.msg_id,
            {m.name: m.struct for m in MESSAGES.values()},
            default=c.Error,
        ),
    )

    Auth = c.Struct("counter" / c.Int32ul, "mac" / c.Bytes(spec.MAC_SIZE))

    Frame = c.Struct(
        "body" / c.RawCopy(
            c.Struct(
                "signed" / c.RawCopy(Signed),
                "auth" / c.If(c.this.signed.value.header.flags & spec.F_AUTH, Auth),
            )
        ),
        "crc" / c.Checksum(c.Int16ul, crc16, c.this.body.data),
        c.Terminated,
    )


_LAZY = frozenset(("c", "MESSAGES", "_IDS", "MessageId", "Header", "Signed", "Auth", "Frame"))


def __getattr__(name: str):
    """codec.MESSAGES, codec.Frame, ...: built on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _load()
    return globals()[name]


def _tables() -> dict[int, _MessageDef]:
    """MESSAGES, built first if needed (functions cannot rely on the module __getattr__).
    Frame is the last name _load sets: another thread may be half-way through it."""
    if "Frame" not in globals():
        _load()
    return MESSAGES


def message_id(name_or_id: str | int) -> int:
    """The id of a message given by name or id; ProtocolError if the table lacks it."""
    _tables()
    if isinstance(name_or_id, str):
        try:
            return _IDS[name_or_id]
        except KeyError:
            raise ProtocolError(f"unknown message name {name_or_id!r}") from None
    if isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        if name_or_id in MESSAGES:
            return name_or_id
        raise ProtocolError(f"unknown message id 0x{name_or_id:02X}")
    raise ProtocolError(f"message must be a name or an id, not {name_or_id!r}")


def message_name(mid: int) -> str:
    return _tables()[message_id(mid)].name


def payload_size(name_or_id: str | int) -> int:
    return _tables()[message_id(name_or_id)].size


def field_names(name_or_id: str | int) -> tuple[str, ...]:
    return tuple(f.name for f in _tables()[message_id(name_or_id)].fields)


# ------------------------------------------------------------------------- messages
@dataclass(frozen=True)
class Message:
    """A decoded frame. ``fields`` maps field names to ints or bytes, in table order."""

    id: int
    name: str
    seq: int
    flags: int
    fields: dict = field(default_factory=dict)
    counter: int | None = None  # auth counter, None if the frame is not authenticated
    mac: bytes | None = None
    frame: bytes = field(default=b"", repr=False)  # unstuffed frame (header .. crc)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & spec.F_RESPONSE)

    @property
    def is_event(self) -> bool:
        return bool(self.flags & spec.F_EVENT)

    def __getitem__(self, name: str):
        return self.fields[name]

    def values(self) -> list:
        """Field values in table order (the firmware codec's representation)."""
        return list(self.fields.values())


def _check_int(what: str, value, lo: int, hi: int, bits: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{what} must be an integer, not {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ProtocolError(f"{what} = {value} is out of range for {bits} ({lo}..{hi})")
    return value


def _normalise(m: _MessageDef, fields: dict | None) -> dict:
    fields = dict(fields or {})
    unknown = sorted(set(fields) - {f.name for f in m.fields})
    if unknown:
        raise ProtocolError(
            f"message {m.name!r} has no field(s) {', '.join(unknown)}; "
            f"its fields are: {', '.join(f.name for f in m.fields) or '(none)'}"
        )
    out = {}
    for f in m.fields:
        if f.name not in fields:
            raise ProtocolError(f"message {m.name!r}: missing field {f.name!r}")
        v = fields[f.name]
        what = f"{m.name}.{f.name}"
        if f.is_bytes:
            if isinstance(v, str):
                raise ProtocolError(f"{what} must be bytes, not str {v!r}")
            if not isinstance(v, bytes | bytearray | memoryview):
                raise ProtocolError(f"{what} must be bytes, not {type(v).__name__}")
            v = bytes(v)
            if len(v) > f.size:
                raise ProtocolError(f"{what} is {len(v)} bytes, at most {f.size} fit")
            out[f.name] = v.ljust(f.size, b"\0")  # like struct's "Ns": zero padded
        else:
            out[f.name] = _check_int(what, v, f.lo, f.hi, f.code)
    return out


def encode_frame(name_or_id: str | int, seq: int, fields: dict | None = None,
                 key: bytes | None = None, counter: int | None = None, flags: int = 0,
                 version: int = spec.PROTOCOL_VERSION) -> bytes:
    """The unstuffed frame: header + payload + [auth] + crc16 (no COBS, no 0x00)."""
    m = _tables()[message_id(name_or_id)]
    values = _normalise(m, fields)
    _check_int("sequence", seq, 0, 0xFFFF, "u16")
    _check_int("flags", flags, 0, 0xFF, "u8")
    _check_int("version", version, 0, 0xFF, "u8")
    if key is not None:
        key = _check_key(key)
        if counter is None:
            raise ProtocolError("an authenticated frame needs a counter")
        _check_int("counter", counter, 0, 0xFFFFFFFF, "u32")
        flags |= spec.F_AUTH
    elif flags & spec.F_AUTH:
        raise ProtocolError("flag F_AUTH set but no key given to compute the MAC")
    header = dict(version=version, flags=flags, seq=seq, msg_id=m.name)
    try:
        signed_value = dict(header=header, payload=values)
        auth = None
        if key is not None:
            signed = Signed.build(signed_value)
            auth = dict(counter=counter, mac=compute_mac(key, signed, counter))
        return Frame.build(dict(body=dict(value=dict(signed=dict(value=signed_value),
                                                     auth=auth))))
    except c.ConstructError as exc:  # pragma: no cover - values are validated above
        raise ProtocolError(f"cannot encode {m.name}: {exc}") from None


def encode(name_or_id: str | int, seq: int, fields: dict | None = None,
           key: bytes | None = None, counter: int | None = None, flags: int = 0) -> bytes:
    """Wire bytes of one frame: COBS(frame) + b"\\x00"."""
    return stuff(encode_frame(name_or_id, seq, fields, key, counter, flags))


def stuff(frame: bytes) -> bytes:
    """COBS-encode an unstuffed frame and append the 0x00 delimiter."""
    return cobs.encode(bytes(frame)) + b"\0"


def unstuff(data: bytes) -> bytes:
    """Undo COBS on wire bytes (one frame, the trailing 0x00 optional)."""
    data = bytes(data)
    if data.endswith(b"\0"):
        data = data[:-1]
    if not data:
        raise ProtocolError("empty frame")
    if b"\0" in data:
        raise ProtocolError("more than one frame: 0x00 inside the data (split frames first)")
    try:
        return cobs.decode(data)
    except cobs.DecodeError as exc:
        raise ProtocolError(f"bad COBS encoding: {exc}") from None


def decode_frame(frame: bytes, key: bytes | None = None) -> Message:
    """Decode an unstuffed frame; with ``key``, also require and check its MAC."""
    frame = bytes(frame)
    n = len(frame)
    minimum = spec.HEADER_SIZE + spec.CRC_SIZE
    if n < minimum:
        raise ProtocolError(f"truncated frame: {n} bytes, a frame has at least {minimum}")
    if n > spec.MAX_FRAME:
        raise ProtocolError(f"frame too long: {n} bytes, at most {spec.MAX_FRAME}")
    got_crc = int.from_bytes(frame[-2:], "little")
    want_crc = crc16(frame[:-2])
    if got_crc != want_crc:
        raise ProtocolError(f"bad CRC: frame says 0x{got_crc:04X}, computed 0x{want_crc:04X}")
    version, flags, seq, mid = frame[0], frame[1], int.from_bytes(frame[2:4], "little"), frame[4]
    if version != spec.PROTOCOL_VERSION:
        raise VersionError(version)
    if mid not in _tables():
        raise ProtocolError(f"unknown message id 0x{mid:02X} (seq {seq})")
    m = MESSAGES[mid]
    auth = spec.AUTH_SIZE if flags & spec.F_AUTH else 0
    want = spec.HEADER_SIZE + m.size + auth + spec.CRC_SIZE
    if n != want:
        raise ProtocolError(
            f"length mismatch: {m.name} frame is {n} bytes, expected {want} "
            f"({m.size}-byte payload{', with auth' if auth else ''})"
        )
    try:
        parsed = Frame.parse(frame)
    except c.ConstructError as exc:  # pragma: no cover - checked above
        raise ProtocolError(f"malformed {m.name} frame: {exc}") from None
    body = parsed.body.value
    payload = body.signed.value.payload
    fields = {f.name: payload[f.name] for f in m.fields}
    counter = mac = None
    if body.auth is not None:
        counter, mac = body.auth.counter, body.auth.mac
    msg = Message(mid, m.name, seq, flags, fields, counter, mac, frame)
    if key is not None and not verify_mac(frame, key):
        raise AuthError(f"{m.name} frame: {'bad MAC' if mac else 'missing auth'}")
    return msg


def decode(data: bytes, key: bytes | None = None) -> Message:
    """Decode wire bytes of one frame (COBS, trailing 0x00 optional)."""
    return decode_frame(unstuff(data), key)


def verify_mac(msg_bytes: bytes | Message, key: bytes, wire: bool = False) -> bool:
    """True if the frame carries auth and its MAC matches ``key`` (constant-time compare).

    ``msg_bytes`` is an unstuffed frame (header .. crc), a decoded Message, or with
    ``wire=True`` the wire bytes of one frame (COBS, trailing 0x00 optional).
    """
    key = _check_key(key)
    if isinstance(msg_bytes, Message):
        frame = msg_bytes.frame
    else:
        frame = unstuff(msg_bytes) if wire else bytes(msg_bytes)
    if len(frame) < spec.HEADER_SIZE + spec.AUTH_SIZE + spec.CRC_SIZE:
        return False
    if not frame[1] & spec.F_AUTH:
        return False
    end = len(frame) - spec.CRC_SIZE
    signed = frame[: end - spec.AUTH_SIZE]
    counter = int.from_bytes(frame[end - spec.AUTH_SIZE: end - spec.MAC_SIZE], "little")
    mac = frame[end - spec.MAC_SIZE: end]
    return hmac.compare_digest(mac, compute_mac(key, signed, counter))


def _check_key(key) -> bytes:
    if not isinstance(key, bytes | bytearray):
        raise ProtocolError(f"key must be 32 bytes, not {type(key).__name__}")
    if len(key) != 32:
        raise ProtocolError(f"key must be 32 bytes (256 bits), got {len(key)}")
    return bytes(key)


# ------------------------------------------------------------------------- stream
CONSOLE_BYTES = frozenset(range(0x20, 0x7F)) | {0x07, 0x08, 0x09, 0x0A, 0x0D, 0x1B}


class ConsoleText(str):
    """Text the bench console wrote between two frames on the shared port."""


def is_console_text(chunk: bytes) -> bool:
    return all(b in CONSOLE_BYTES for b in chunk)


class FrameReader:
    """Split a byte stream at 0x00 delimiters into unstuffed frames.

    ``feed(data)`` returns the chunks completed by ``data``: an unstuffed frame (bytes) or
    a ProtocolError for a chunk that could not be unstuffed. Empty chunks (0x00 0x00) are
    skipped; a chunk longer than any frame is reported as an error when its 0x00 arrives.
    With ``console=True`` a chunk of console text (the bench console shares the port,
    issue 17: printable ASCII and line control only, while every frame holds the raw
    version byte 0x01) comes out as a ConsoleText instead of an error.
    """

    MAX_CHUNK = spec.MAX_FRAME + spec.MAX_FRAME // 254 + 2

    def __init__(self, console: bool = False):
        self._buf = bytearray()
        self._overflow = False
        self._console = console

    def feed(self, data: bytes) -> list:
        out = []
        *complete, tail = bytes(data).split(b"\0")
        for part in complete:
            item = self._finish(part, out)
            if item is not None:
                out.append(item)
        self._append(tail, out)
        return out

    def take_text(self) -> str:
        """The console text read so far that no 0x00 has ended yet, taken out of the buffer
        ("" if the buffer may be a frame). The console ends its answer with a prompt and
        no 0x00 (that comes only before its next frame), so an answer read together with
        a frame stays here until asked for. Two or more bytes of console text are never a
        frame's beginning (a frame's second byte is the raw version, 0x01, not text); one
        byte may be (its COBS code byte), so it stays."""
        buf = self._buf
        if self._overflow or len(buf) < 2 or not is_console_text(buf):
            return ""
        text = buf.decode("ascii")
        buf.clear()
        return ConsoleText(text)

    def _append(self, part: bytes, out: list):
        if self._overflow:
            return
        self._buf += part
        if len(self._buf) > self.MAX_CHUNK:
            if self._console and is_console_text(self._buf):
                # a person's session has no 0x00 for as long as it lasts: pass it on
                out.append(ConsoleText(self._buf.decode("ascii")))
            else:
                self._overflow = True
            self._buf.clear()

    def _finish(self, part: bytes, out: list):
        self._append(part, out)
        chunk, overflow = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            return ProtocolError("oversized frame dropped")
        if not chunk:
            return None
        if self._console and is_console_text(chunk):
            return ConsoleText(chunk.decode("ascii"))
        try:
            return unstuff(chunk)
        except ProtocolError as exc:
            return exc
