"""Host side of the sensor link (SNS-4): CGM Measurement records and sensor-link frames.

One construct definition of the Bluetooth SIG "CGM Measurement" record (the format and its
field order are described in firmware/cgm_record.py, whose decoder runs on the pump; the
flag and annunciation bits are imported from there) and of the frame that carries it over
the sensor transport (a UART on the boards, a pty on the emulator):

    frame on the wire = COBS(transmitter <I + record + crc16 <H) + 0x00

crc16 is the main link's CRC-16/CCITT-FALSE over the transmitter id and the record, so a
damaged transmitter id is caught on the way (the record's own E2E-CRC covers only the
record, from the sensor to whatever bridges it onto the UART). Transmitter ids are
1..TX_ID_MAX (29 bits, a small int on every board; 0 means "not paired").

    encode_record({"glucose": 120, "time_offset": 35, ...}) -> bytes
    encode_frame(tx_id, record_bytes) -> wire bytes
    parse_record(bytes) -> construct Container (raises RecordError)

Glucose, trend and quality are SFLOAT on the wire; `sfloat(x)` picks the representation of
a number (an int mg/dL is exact with exponent 0), `sfloat_value(raw)` reads one back as a
Fraction (None for the special values).
"""

from __future__ import annotations

from fractions import Fraction

import construct as c
from cobs import cobs

from firmware import cgm_record as R
from firmware.cgm_record import crc16_mcrf4xx
from firmware.crc import crc16 as _crc_ccitt_false

TX_ID_MAX = (1 << 29) - 1  # the sensor_id setting's range
SFLOAT_SPECIALS = {R.SF_NAN: "NaN", R.SF_NRES: "NRes", R.SF_PINF: "+INF",
                   R.SF_NINF: "-INF", R.SF_RESERVED: "reserved"}


class RecordError(ValueError):
    """A record or frame that does not parse or does not check."""


def _fields_size(flags: int) -> int:
    n = R.MIN_SIZE
    for bit, size in ((R.F_STATUS, 1), (R.F_CAL_TEMP, 1), (R.F_WARNING, 1),
                      (R.F_TREND, 2), (R.F_QUALITY, 2)):
        if flags & bit:
            n += size
    return n


def _e2e(ctx) -> bool:
    return bool(ctx._params.get("e2e", True))


_Fields = c.Struct(
    "size" / c.Rebuild(c.Int8ul, lambda ctx: _fields_size(ctx.flags) + (2 if _e2e(ctx) else 0)),
    "flags" / c.Int8ul,
    "glucose" / c.Int16ul,  # raw SFLOAT, mg/dL
    "time_offset" / c.Int16ul,  # minutes since the session started
    "status" / c.If(c.this.flags & R.F_STATUS, c.Int8ul),
    "cal_temp" / c.If(c.this.flags & R.F_CAL_TEMP, c.Int8ul),
    "warning" / c.If(c.this.flags & R.F_WARNING, c.Int8ul),
    "trend" / c.If(c.this.flags & R.F_TREND, c.Int16ul),  # raw SFLOAT, (mg/dL)/min
    "quality" / c.If(c.this.flags & R.F_QUALITY, c.Int16ul),  # raw SFLOAT, %
)

# The record: the fields, then the E2E-CRC when the size byte has room for it.
RECORD = c.Struct(
    "fields" / c.RawCopy(_Fields),
    "e2e_crc" / c.If(
        lambda ctx: ctx.fields.value.size == _fields_size(ctx.fields.value.flags) + 2,
        c.Checksum(c.Int16ul, lambda data: crc16_mcrf4xx(data, 0, len(data)),
                   c.this.fields.data),
    ),
    c.Check(lambda ctx: ctx.fields.value.size in (_fields_size(ctx.fields.value.flags),
                                                    _fields_size(ctx.fields.value.flags) + 2)),
    c.Check(lambda ctx: not ctx.fields.value.flags & R.F_RESERVED),
    c.Terminated,
)

def encode_frame(tx_id: int, record: bytes) -> bytes:
    """Wire bytes of one sensor-link frame: COBS(tx <I + record + crc16 <H) + 0x00."""
    if not 0 <= tx_id <= 0xFFFFFFFF:
        raise RecordError(f"transmitter id {tx_id} is not a 32-bit unsigned number")
    body = c.Int32ul.build(tx_id) + bytes(record)
    raw = body + c.Int16ul.build(_crc_ccitt_false(body, 0, len(body)))
    return cobs.encode(raw) + b"\x00"


def decode_frame(wire: bytes) -> tuple[int, bytes]:
    """(transmitter id, record bytes) of one frame (with or without its 0x00)."""
    data = wire[:-1] if wire.endswith(b"\x00") else wire
    try:
        raw = cobs.decode(data)
    except cobs.DecodeError as exc:
        raise RecordError(f"frame is not valid COBS: {exc}") from None
    if len(raw) < 4 + R.MIN_SIZE + 2:
        raise RecordError(f"frame of {len(raw)} bytes is too short")
    body, crc = raw[:-2], c.Int16ul.parse(raw[-2:])
    if _crc_ccitt_false(body, 0, len(body)) != crc:
        raise RecordError("frame CRC does not match")
    return c.Int32ul.parse(body[:4]), body[4:]


def build_record(fields: dict, e2e: bool = True) -> bytes:
    """Bytes of a record from raw fields: flags, glucose (raw SFLOAT), time_offset and the
    optional status, cal_temp, warning, trend, quality (raw SFLOAT) the flags ask for."""
    flags = fields["flags"]
    full = {"flags": flags, "glucose": fields["glucose"], "time_offset": fields["time_offset"],
            "status": None, "cal_temp": None, "warning": None, "trend": None, "quality": None}
    for name, bit in (("status", R.F_STATUS), ("cal_temp", R.F_CAL_TEMP),
                      ("warning", R.F_WARNING), ("trend", R.F_TREND), ("quality", R.F_QUALITY)):
        if flags & bit:
            if fields.get(name) is None:
                raise RecordError(f"flags 0x{flags:02x} ask for {name}, which is missing")
            full[name] = fields[name]
    try:
        data = _Fields.build(full, e2e=e2e)
    except (c.ConstructError, OverflowError) as exc:
        raise RecordError(f"cannot build the record: {exc}") from None
    if e2e:
        data += c.Int16ul.build(crc16_mcrf4xx(data, 0, len(data)))
    return data


def parse_record(data: bytes) -> c.Container:
    """The raw fields of a record; RecordError if it does not parse or check."""
    try:
        rec = RECORD.parse(bytes(data))
    except c.ChecksumError:
        raise RecordError("E2E-CRC does not match") from None
    except c.ConstructError as exc:
        raise RecordError(f"not a CGM Measurement record: {exc}".splitlines()[0]) from None
    out = c.Container(rec.fields.value)
    out.e2e = rec.e2e_crc is not None
    return out


def sfloat(x) -> int:
    """The raw SFLOAT of x (int, Fraction, float or Decimal): exponent 0 for a whole number
    that fits (as CGMs send mg/dL), else the smallest exponent whose rounded mantissa fits
    (the most precise). RecordError if |x| is beyond the format."""
    x = Fraction(x)
    if x.denominator == 1 and abs(x) <= 2045:
        return int(x) & 0x0FFF
    for e in range(-8, 8):
        m = round(x / Fraction(10) ** e)
        if -2045 <= m <= 2045:
            return ((e & 0xF) << 12) | (m & 0x0FFF)
    raise RecordError(f"{float(x)} does not fit an SFLOAT")


def sfloat_value(raw: int) -> Fraction | None:
    """The value of a raw SFLOAT, None for NaN, NRes, +-INF and reserved."""
    if raw in SFLOAT_SPECIALS:
        return None
    m = raw & 0x0FFF
    if m & 0x0800:
        m -= 0x1000
    e = raw >> 12
    if e & 0x8:
        e -= 0x10
    return Fraction(m) * Fraction(10) ** e


def encode_record(glucose, time_offset: int, status: int = 0, trend=None, quality=None,
                  e2e: bool = True, flags_extra: int = 0) -> bytes:
    """A record from values: glucose mg/dL (a number, or "NaN" for no result), time offset
    in minutes, the 24-bit annunciation (its non-zero octets are sent), trend (mg/dL)/min
    and quality % when given."""
    flags = flags_extra
    fields = {"time_offset": time_offset,
              "glucose": R.SF_NAN if glucose == "NaN" else sfloat(glucose)}
    for name, bit, shift in (("status", R.F_STATUS, 0), ("cal_temp", R.F_CAL_TEMP, 8),
                             ("warning", R.F_WARNING, 16)):
        octet = (status >> shift) & 0xFF
        if octet:
            flags |= bit
            fields[name] = octet
    if trend is not None:
        flags |= R.F_TREND
        fields["trend"] = sfloat(trend)
    if quality is not None:
        flags |= R.F_QUALITY
        fields["quality"] = sfloat(quality)
    fields["flags"] = flags
    return build_record(fields, e2e=e2e)
