"""CGM Measurement records (SNS-4): the decoder, allocation-free.

The record is the Bluetooth SIG Continuous Glucose Monitoring Service's "CGM Measurement"
characteristic, little-endian, in this order:

    size         u8      bytes of the whole record, the size byte and the E2E-CRC included
    flags        u8      F_* below; bits 2-4 are reserved (must be 0)
    glucose      SFLOAT  mg/dL
    time_offset  u16     minutes since the sensor session started
    status       u8      if flags & F_STATUS     (sensor status annunciation, bits 0-7)
    cal_temp     u8      if flags & F_CAL_TEMP   (bits 8-15)
    warning      u8      if flags & F_WARNING    (bits 16-23)
    trend        SFLOAT  if flags & F_TREND      (mg/dL)/min
    quality      SFLOAT  if flags & F_QUALITY    %
    e2e_crc      u16     if the transmitter supports E2E-CRC: the size byte tells (size =
                         the fields' length + 2)

E2E-CRC: CRC-CCITT, polynomial 0x1021 with seed 0xFFFF, bits taken least significant first
(the reflected form, CRC-16/MCRF4XX), over every byte before it, sent low octet first. The
specification's wording leaves the bit order open; its worked example and public collectors
settle it (docs/boards.md "E2E-CRC", tests/test_cgm_record.py). SFLOAT (IEEE 11073-20601):
a 4-bit signed exponent (high nibble) and a 12-bit signed mantissa, value = m * 10**e;
0x07FF NaN, 0x0800 NRes, 0x07FE +INF, 0x0802 -INF, 0x0801 reserved.

`decode(buf, start, n, out)` checks buf[start:start+n] and fills `out` (an array("i") of
OUT_LEN) with integers: glucose in mg/dL (rounded half away from zero), time offset, the
24-bit annunciation (status | cal_temp << 8 | warning << 16), trend in 0.1 mg/dL/min
(NO_VALUE if absent or not a number), quality in % (NO_VALUE if absent), the flags and
whether an E2E-CRC was present. It returns OK or one of the R_* reasons and never raises,
whatever the bytes. No slicing, no floats (a float is a heap object in MicroPython),
intermediate values stay below 2**30 (small ints on 32-bit boards).

What a record *means* for the pump (pairing, order, LOW/HIGH, warm-up) is decided by the
sensor link (firmware/cgm_link.py), not here. The host's encoder is protocol/cgm_record.py.
"""

from firmware.compat import const

# flags
F_TREND = const(0x01)
F_QUALITY = const(0x02)
F_WARNING = const(0x20)
F_CAL_TEMP = const(0x40)
F_STATUS = const(0x80)
F_RESERVED = const(0x1C)

# sensor status annunciation (24 bits: status, cal/temp, warning octets)
SS_SESSION_STOPPED = const(0x000001)
SS_BATTERY_LOW = const(0x000002)
SS_TYPE_INCORRECT = const(0x000004)
SS_MALFUNCTION = const(0x000008)
SS_DEVICE_ALERT = const(0x000010)
SS_DEVICE_FAULT = const(0x000020)
SS_TIME_SYNC = const(0x000100)
SS_CAL_NOT_ALLOWED = const(0x000200)
SS_CAL_RECOMMENDED = const(0x000400)
SS_CAL_REQUIRED = const(0x000800)
SS_TEMP_HIGH = const(0x001000)
SS_TEMP_LOW = const(0x002000)
SS_CAL_PENDING = const(0x004000)
SS_BELOW_PATIENT_LOW = const(0x010000)
SS_ABOVE_PATIENT_HIGH = const(0x020000)
SS_BELOW_HYPO = const(0x040000)
SS_ABOVE_HYPER = const(0x080000)
SS_RATE_DECREASE = const(0x100000)
SS_RATE_INCREASE = const(0x200000)
SS_BELOW_DEVICE = const(0x400000)  # lower than the device can process: LOW
SS_ABOVE_DEVICE = const(0x800000)  # higher than the device can process: HIGH
SS_FAULTS = const(SS_TYPE_INCORRECT | SS_MALFUNCTION | SS_DEVICE_FAULT)

# SFLOAT special values
SF_NAN = const(0x07FF)
SF_NRES = const(0x0800)
SF_PINF = const(0x07FE)
SF_RESERVED = const(0x0801)
SF_NINF = const(0x0802)

# sizes
MIN_SIZE = const(6)  # size, flags, glucose, time offset
MAX_SIZE = const(15)  # every optional field and the E2E-CRC

# decode() results
OK = const(0)
R_SHORT = const(1)  # fewer bytes than the size byte says, or size below MIN_SIZE
R_SIZE = const(2)  # the size byte disagrees with the flags
R_FLAGS = const(3)  # reserved flag bits set
R_CRC = const(4)  # the E2E-CRC does not match
REASONS = ("ok", "short", "size", "flags", "crc")

# out[] slots
O_GLUCOSE = const(0)  # mg/dL, or SPECIAL for NaN/NRes/INF/reserved, +-BIG beyond range
O_OFFSET = const(1)  # minutes since session start
O_STATUS = const(2)  # annunciation bits (SS_*)
O_TREND = const(3)  # 0.1 mg/dL/min, NO_VALUE when absent or special
O_QUALITY = const(4)  # %, NO_VALUE when absent or special
O_FLAGS = const(5)
O_CRC = const(6)  # 1 if the record carried an E2E-CRC (then it matched)
OUT_LEN = const(7)

NO_VALUE = const(-32768)
SPECIAL = const(-0x100000)  # glucose was NaN, NRes, +-INF or reserved
BIG = const(0x80000)  # |value| at least this: clamped to it (SFLOATs reach 2047e7)

_POW10 = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000)


def crc16_mcrf4xx(buf, start, end, crc=0xFFFF):
    """E2E-CRC of buf[start:end]: CRC-CCITT, seed 0xFFFF, least significant bit first."""
    i = start
    while i < end:
        crc ^= buf[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        i += 1
    return crc


def sfloat_scaled(raw, scale):
    """The SFLOAT `raw` (u16) times 10**scale (scale 0 or 1), rounded half away from zero;
    SPECIAL for the special values, +-BIG beyond that magnitude."""
    if raw == SF_NAN or raw == SF_NRES or raw == SF_PINF or raw == SF_NINF or raw == SF_RESERVED:
        return SPECIAL
    m = raw & 0x0FFF
    if m & 0x0800:
        m -= 0x1000
    e = raw >> 12
    if e & 0x8:
        e -= 0x10
    e += scale
    if m == 0:
        return 0
    if e >= 0:
        if e > 5:  # at least 1e6: beyond BIG (and 2047e6 would not be a small int)
            return BIG if m > 0 else -BIG
        v = m * _POW10[e]  # at most 2047e5, a small int
        if v >= BIG:
            return BIG
        if v <= -BIG:
            return -BIG
        return v
    p = _POW10[-e]
    if m > 0:
        return (2 * m + p) // (2 * p)
    return -((-2 * m + p) // (2 * p))


def _u16(buf, at):
    return buf[at] | buf[at + 1] << 8


def decode(buf, start, n, out):
    """Check and decode the record in buf[start:start+n] into out; OK or an R_* reason."""
    if n < MIN_SIZE:
        return R_SHORT
    size = buf[start]
    if size < MIN_SIZE or size > n:
        return R_SHORT
    flags = buf[start + 1]
    if flags & F_RESERVED:
        return R_FLAGS
    fields = MIN_SIZE
    if flags & F_STATUS:
        fields += 1
    if flags & F_CAL_TEMP:
        fields += 1
    if flags & F_WARNING:
        fields += 1
    if flags & F_TREND:
        fields += 2
    if flags & F_QUALITY:
        fields += 2
    if size == fields + 2:
        end = start + fields
        if crc16_mcrf4xx(buf, start, end) != _u16(buf, end):
            return R_CRC
        out[O_CRC] = 1
    elif size == fields:
        out[O_CRC] = 0
    else:
        return R_SIZE
    out[O_FLAGS] = flags
    out[O_GLUCOSE] = sfloat_scaled(_u16(buf, start + 2), 0)
    out[O_OFFSET] = _u16(buf, start + 4)
    at = start + 6
    status = 0
    if flags & F_STATUS:
        status = buf[at]
        at += 1
    if flags & F_CAL_TEMP:
        status |= buf[at] << 8
        at += 1
    if flags & F_WARNING:
        status |= buf[at] << 16
        at += 1
    out[O_STATUS] = status
    trend = NO_VALUE
    if flags & F_TREND:
        trend = sfloat_scaled(_u16(buf, at), 1)
        if trend == SPECIAL:
            trend = NO_VALUE
        at += 2
    out[O_TREND] = trend
    quality = NO_VALUE
    if flags & F_QUALITY:
        quality = sfloat_scaled(_u16(buf, at), 0)
        if quality == SPECIAL:
            quality = NO_VALUE
    out[O_QUALITY] = quality
    return OK
