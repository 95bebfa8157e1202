"""CGM Measurement records and the sensor link on a byte stream (SNS-4).

The host encoder (protocol/cgm_record.py, construct) and the firmware decoder
(firmware/cgm_record.py) are separate code: golden vectors pin the bytes of each flag
combination, property tests check both ends agree with each other and with exact arithmetic
(Fraction), on CPython and on the MicroPython unix port, and seeded fuzzing of the link
counts escapes (an exception, or a reading that no valid frame carried).
"""

from __future__ import annotations

import json
import random
from array import array
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards.fakes import BytePort, Clock
from firmware import cgm_link as L
from firmware import cgm_record as R
from firmware.crc import crc16
from protocol import cgm_record as H
from protocol import spec as S
from tests.runtimes import run_unix

GOLDEN = json.loads((Path(H.__file__).with_name("cgm_golden.json")).read_text())
TX = 0x2A51F0C  # the paired transmitter of these tests
OPTIONAL = ("status", "cal_temp", "warning", "trend", "quality")


def decode(data: bytes):
    out = array("i", [0] * R.OUT_LEN)
    return R.decode(data, 0, len(data), out), list(out)


def half_away(x: Fraction) -> int:
    n = int(abs(x) + Fraction(1, 2))
    return n if x >= 0 else -n


def expect_scaled(raw: int, scale: int) -> int:
    """What the firmware must make of a raw SFLOAT, from exact arithmetic."""
    v = H.sfloat_value(raw)
    if v is None:
        return R.SPECIAL
    r = half_away(v * 10**scale)
    return max(-R.BIG, min(R.BIG, r))


def expect_out(fields, e2e: bool):
    """The decoder's out[] for raw fields (the oracle of the property tests)."""
    status = (fields.get("status") or 0) | (fields.get("cal_temp") or 0) << 8 | \
        (fields.get("warning") or 0) << 16
    trend = quality = R.NO_VALUE
    if fields.get("trend") is not None:
        t = expect_scaled(fields["trend"], 1)
        trend = R.NO_VALUE if t == R.SPECIAL else t
    if fields.get("quality") is not None:
        q = expect_scaled(fields["quality"], 0)
        quality = R.NO_VALUE if q == R.SPECIAL else q
    return [expect_scaled(fields["glucose"], 0), fields["time_offset"], status, trend, quality,
            fields["flags"], 1 if e2e else 0]


# ------------------------------------------------------------------------ fixed vectors
@pytest.mark.req("SNS-4")
def test_e2e_crc_is_crc_ccitt_lsb_first_with_seed_ffff():
    """The catalogue check value of CRC-16/MCRF4XX (poly 0x1021 reflected, init 0xFFFF)."""
    assert R.crc16_mcrf4xx(b"123456789", 0, 9) == 0x6F91
    assert R.crc16_mcrf4xx(b"", 0, 0) == 0xFFFF


@pytest.mark.req("SNS-4")
def test_e2e_crc_matches_the_cgms_specification_example_and_an_independent_collector():
    """The variant checked against outside sources (docs/boards.md, "E2E-CRC"):
    - CGMS 1.0.1 section 3.11's worked example, as NordicSemiconductor/
      Android-BLE-Common-Library ble-common/src/test/.../util/CRC16Test.java quotes it:
      3E 01 02 .. 09 gives 0x2F01 (the PDF prints the two octets the other way round);
    - that library's CGM Measurement tests (.../callback/cgm/
      ContinuousGlucoseMeasurementDataCallbackTest.java): a full 15-byte record (flags
      0xE3, 12.34 mg/dL, minute 5, annunciation 02 14 FF, trend 0.2, quality 99.7) whose
      E2E-CRC is 0x3F8E, and a 6-byte record (120 mg/dL, minute 6) whose CRC is 0x6F59.
    Our decoder accepts those records as sent; the CCITT-FALSE form (MSB first), which the
    spec's wording alone ("CRC-CCITT generator polynomial, seed 0xFFFF") would also allow,
    gives other values."""
    example = bytes([0x3E, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert R.crc16_mcrf4xx(example, 0, len(example)) == 0x2F01
    assert crc16(example, 0, len(example)) != 0x2F01  # CRC-16/CCITT-FALSE, the other reading
    full = bytes([15, 0xE3, 0xD2, 0xE4, 5, 0, 0x02, 0x14, 0xFF, 0x02, 0xF0, 0xE5, 0xF3,
                  0x8E, 0x3F])
    code, out = decode(full)
    assert code == R.OK and out[R.O_CRC] == 1
    assert out[R.O_OFFSET] == 5 and out[R.O_GLUCOSE] == 12  # 12.34 rounded
    assert out[R.O_TREND] == 2 and out[R.O_QUALITY] == 100  # 0.2 x 10, 99.7 rounded
    # status octet 02 (battery low), cal/temp 14 (temperature too high, calibration
    # recommended), warning FF: the bits their test asserts
    assert out[R.O_STATUS] == 0xFF << 16 | 0x14 << 8 | 0x02
    assert out[R.O_STATUS] & R.SS_BATTERY_LOW and out[R.O_STATUS] & R.SS_TEMP_HIGH
    small = bytes([8, 0, 0x0C, 0x10, 6, 0])  # 12 x 10^1 mg/dL at minute 6
    assert R.crc16_mcrf4xx(small, 0, 6) == 0x6F59
    assert decode(small + bytes([0x59, 0x6F]))[0] == R.OK
    assert decode(small + bytes([0x58, 0x6F]))[0] == R.R_CRC  # their "wrong CRC" case


@pytest.mark.req("SNS-4")
def test_a_record_spelled_out_byte_by_byte():
    """120 mg/dL at minute 35, battery low + lower than the device can process, trend
    -1.5 mg/dL/min, quality 97 %, E2E-CRC: the bytes by hand, then both ends."""
    body = bytes([
        14,  # size: 2 + 2 + 2 + 1 + 1 + 2 + 2 + 2
        0x80 | 0x20 | 0x01 | 0x02,  # status, warning, trend, quality
        120, 0x00,  # SFLOAT 120 x 10^0
        35, 0,  # minute 35
        0x02,  # status octet: device battery low
        0x40,  # warning octet: bit 22 - 16 = 6, lower than the device can process
        0x0F & -15 | 0xF0, 0xF0 | (-15 >> 8) & 0x0F,  # -15 x 10^-1, exponent nibble F
        97, 0x00,  # 97 %
    ])
    assert body[8:10] == bytes([0xF1, 0xFF])  # mantissa 0xFF1 = -15, exponent 0xF = -1
    crc = R.crc16_mcrf4xx(body, 0, len(body))
    record = body + bytes([crc & 0xFF, crc >> 8])
    assert H.build_record({"flags": 0xA3, "glucose": 120, "time_offset": 35, "status": 2,
                           "warning": 0x40, "trend": 0xFFF1, "quality": 97}) == record
    # from values the encoder takes the most precise exponent for -1.5: -1500 x 10^-3
    assert H.sfloat(Fraction(-3, 2)) == 0xDA24
    code, out = decode(record)
    assert code == R.OK
    assert out == [120, 35, R.SS_BATTERY_LOW | R.SS_BELOW_DEVICE, -15, 97, 0xA3, 1]


@pytest.mark.req("SNS-4")
@pytest.mark.parametrize("vec", GOLDEN, ids=[
    f"{v['fields']['flags']:02x}-{'crc' if v['e2e'] else 'nocrc'}" for v in GOLDEN])
def test_golden_vectors_every_flag_combination(vec):
    """Every combination of the optional fields, with and without E2E-CRC: the encoder
    builds the stored bytes, the firmware reads the stored values back, construct too."""
    data = bytes.fromhex(vec["hex"])
    assert H.build_record(vec["fields"], e2e=vec["e2e"]) == data
    code, out = decode(data)
    assert code == R.OK
    assert out == expect_out(vec["fields"], vec["e2e"])
    parsed = H.parse_record(data)
    assert parsed.e2e == vec["e2e"] and parsed.size == len(data)
    assert {k: parsed[k] for k in vec["fields"]} == vec["fields"]


def test_golden_covers_all_flag_combinations():
    flags = {(v["fields"]["flags"], v["e2e"]) for v in GOLDEN}
    assert len(flags) == 64 and all(f & R.F_RESERVED == 0 for f, _ in flags)


@pytest.mark.req("SNS-4")
@pytest.mark.parametrize("raw, mg", [
    (0x0078, 120), (0xF4B0, 120), (0xE2EE, 8), (0xE2EF, 8), (0xF005, 1), (0xF004, 0),
    (0xFFFB, -1), (0xFFFA, -1), (0xFFFC, 0), (0x1029, 410), (0x5001, 100000), (0x6001, R.BIG),
    (0x57FD, R.BIG), (0x5803, -R.BIG), (0x87FD, 0), (0x07FF, R.SPECIAL), (0x0800, R.SPECIAL),
    (0x07FE, R.SPECIAL), (0x0802, R.SPECIAL), (0x0801, R.SPECIAL), (0x0000, 0),
])
def test_sfloat_to_mg_dl(raw, mg):
    """Exponents, rounding half away from zero (0.5 -> 1, -0.5 -> -1), clamping, specials."""
    assert R.sfloat_scaled(raw, 0) == mg
    assert expect_scaled(raw, 0) == mg


@pytest.mark.req("SNS-4")
@pytest.mark.parametrize("mutate, reason", [
    (lambda b: b[:-1], R.R_SHORT),  # one byte missing
    (lambda b: bytes([5]) + b[1:], R.R_SHORT),  # size below the minimum
    (lambda b: bytes([b[0] + 1]) + b[1:] + b"\x00", R.R_SIZE),  # size fits neither form
    (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:], R.R_FLAGS),  # a reserved flag
    (lambda b: b[:2] + bytes([b[2] ^ 1]) + b[3:], R.R_CRC),  # glucose damaged
    (lambda b: b[:-1] + bytes([b[-1] ^ 0x80]), R.R_CRC),  # the CRC damaged
])
def test_bad_records_get_a_reason(mutate, reason):
    good = H.encode_record(143, 900, status=R.SS_CAL_REQUIRED, trend=2)
    assert decode(good)[0] == R.OK
    assert decode(mutate(good))[0] == reason
    with pytest.raises(H.RecordError):
        H.parse_record(mutate(good))


def test_host_encoder_refuses_what_the_format_cannot_say():
    with pytest.raises(H.RecordError, match="does not fit an SFLOAT"):
        H.sfloat(10**12)
    with pytest.raises(H.RecordError, match="trend, which is missing"):
        H.build_record({"flags": R.F_TREND, "glucose": 100, "time_offset": 0})
    with pytest.raises(H.RecordError, match="cannot build"):
        H.build_record({"flags": 0, "glucose": 100, "time_offset": 70000})


# ------------------------------------------------------------------------ properties
sfloats = st.integers(0, 0xFFFF)


@st.composite
def raw_fields(draw):
    flags = draw(st.sampled_from([f for f in range(256) if not f & R.F_RESERVED]))
    fields = {"flags": flags, "glucose": draw(sfloats), "time_offset": draw(st.integers(0, 0xFFFF))}
    for name, bit in (("status", R.F_STATUS), ("cal_temp", R.F_CAL_TEMP),
                      ("warning", R.F_WARNING)):
        fields[name] = draw(st.integers(0, 255)) if flags & bit else None
    fields["trend"] = draw(sfloats) if flags & R.F_TREND else None
    fields["quality"] = draw(sfloats) if flags & R.F_QUALITY else None
    return fields


@pytest.mark.req("SNS-4")
@settings(max_examples=400, deadline=None)
@given(raw_fields(), st.booleans())
def test_encoder_and_decoder_agree(fields, e2e):
    """Any record the host builds, the firmware decodes to exactly the exact-arithmetic
    values, and construct parses back to the same fields."""
    data = H.build_record(fields, e2e=e2e)
    code, out = decode(data)
    assert code == R.OK
    assert out == expect_out(fields, e2e)
    parsed = H.parse_record(data)
    assert {k: parsed[k] for k in fields} == fields


@pytest.mark.req("SNS-4")
@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=20))
def test_any_bytes_decoder_and_construct_accept_the_same(data):
    """On arbitrary bytes (one record, exactly its size) the decoder accepts what construct
    parses and checks, and then reads the same fields."""
    code, out = decode(data)
    try:
        parsed = H.parse_record(data)
    except H.RecordError:
        parsed = None
    exact = bool(data) and data[0] == len(data)
    if parsed is None:
        assert code != R.OK or not exact
    else:
        assert code == R.OK
        assert out == expect_out(dict(parsed), parsed.e2e)


@pytest.mark.req("SNS-4")
@settings(max_examples=200, deadline=None)
@given(st.fractions(min_value=-2000, max_value=2000, max_denominator=1000))
def test_sfloat_encoding_is_the_nearest(x):
    """The encoder's SFLOAT of a number is within half a unit of its last digit."""
    raw = H.sfloat(x)
    e = raw >> 12
    e = e - 16 if e & 8 else e
    assert abs(H.sfloat_value(raw) - x) <= Fraction(10) ** e / 2


# ------------------------------------------------------------------------ the link
def frame(glucose, offset, tx=TX, **kw):
    return H.encode_frame(tx, H.encode_record(glucose, offset, **kw))


def link(paired=TX, most=0):
    clock = Clock()
    port = BytePort(most=most)
    return L.CgmLink(port, clock, paired), port, clock


def stats(lk):
    return {name: lk.stats[i] for i, name in enumerate(L.STATS) if lk.stats[i]}


def poll_all(lk, limit=100):
    got = []
    for _ in range(limit):
        v = lk.read()
        if v:
            got.append(v)
        elif lk.port.head == lk.port.tail and lk.at >= lk.n:
            break
    return got


@pytest.mark.req("SNS-4")
def test_link_readings_warmup_expiry_low_high():
    lk, port, _ = link(most=5)  # five bytes per read: frames arrive in pieces
    port.feed(frame("NaN", 0) + frame("NaN", 5) + frame(110, 120) + frame(111, 125)
              + frame(30, 130, status=R.SS_BELOW_DEVICE) + frame(999, 135, status=R.SS_ABOVE_DEVICE)
              + frame(300, 140, trend=2.5, quality=88)
              + frame("NaN", 14400, status=R.SS_SESSION_STOPPED) + frame("NaN", 0))
    assert poll_all(lk) == [S.CGM_WARMUP, S.CGM_WARMUP, 110, 111, S.CGM_LOW, S.CGM_HIGH, 300,
                            S.CGM_EXPIRED, S.CGM_WARMUP]
    assert (lk.last_trend, lk.last_quality) == (-32768, -32768)  # the last one had none
    assert stats(lk) == {"frames": 9, "accepted": 9}


@pytest.mark.req("SNS-4")
def test_link_drops_and_counts_bad_records():
    """Corrupt, foreign, duplicated, out-of-order, impossible and faulty records are counted
    and dropped; the good ones around them get through."""
    good = frame(100, 10)
    bad_e2e = bytearray(H.encode_record(100, 15))
    bad_e2e[2] ^= 1
    bad_frame = bytearray(frame(100, 20))
    bad_frame[3] ^= 0x10
    lk, port, _ = link()
    port.feed(good + H.encode_frame(TX, bytes(bad_e2e)) + bytes(bad_frame) + b"\x00\x00"
              + frame(101, 25, tx=TX + 1) + frame(102, 10) + frame(103, 5)
              + frame(5, 30) + frame(700, 31) + frame(104, 32, status=R.SS_MALFUNCTION)
              + H.encode_frame(TX, bytes([6, 0x04, 100, 0, 40, 0])) + b"\x01\x02\x03\x00"
              + frame(105, 40))
    assert poll_all(lk) == [100, 105]
    assert stats(lk) == {"frames": 12, "accepted": 2, "bad_crc": 1, "bad_frame": 2,
                         "foreign": 1, "duplicate": 1, "out_of_order": 1, "impossible": 2,
                         "sensor_fault": 1, "malformed": 1}


@pytest.mark.req("SNS-4")
def test_unpaired_pump_accepts_nothing_and_repairing_restarts_the_order():
    lk, port, _ = link(paired=0)
    port.feed(frame(100, 50))
    assert poll_all(lk) == [] and lk.stats[L.ST_FOREIGN] == 1 and lk.foreign_id == TX
    lk.paired = TX
    port.feed(frame(100, 50) + frame(101, 40))
    assert poll_all(lk) == [100]
    lk.paired = TX + 7  # a new transmitter: its session's offsets start over
    port.feed(frame(120, 3, tx=TX + 7))
    assert poll_all(lk) == [120]


@pytest.mark.req("SNS-4")
def test_pairing_lost_when_only_another_transmitter_is_heard():
    lk, port, clock = link()
    port.feed(frame(100, 0))
    assert lk.read() == 100 and lk.pairing_lost == 0
    for minute in range(1, 25):
        clock.advance(60_000)
        port.feed(frame(100 + minute, minute, tx=0x155))
        assert lk.read() == 0
        assert lk.pairing_lost == (1 if minute >= 20 else 0), minute
    assert lk.foreign_id == 0x155
    port.feed(frame(130, 30))
    assert lk.read() == 130 and lk.pairing_lost == 0


# ------------------------------------------------------------------------ fuzzing
def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b))]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        else:
            tail = bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
            b[rng.randrange(len(b) + 1):] = tail
    return bytes(b)


def host_view(data: bytes) -> list[int]:
    """The glucose of each frame in `data` that the host's decoders (cobs, construct) take
    as a valid record of the paired transmitter: the oracle of the fuzzing."""
    seen = []
    for piece in data.split(b"\x00"):
        try:
            tx, rec = H.decode_frame(piece)
            fields = H.parse_record(rec)
        except H.RecordError:
            continue
        if tx == TX:
            seen.append(fields.glucose)
    return seen


def fuzz(seed: int, n: int):
    """n frames (valid ones, mutated ones, raw garbage) through one link; returns the link,
    the values of the unchanged valid frames, of every frame the host takes as valid, the
    readings out and the exception count."""
    rng = random.Random(seed)
    lk, port, clock = link()
    valid = []
    checked = set()
    escapes = 0
    out = []
    offset = 0
    for _ in range(n):
        offset += rng.randint(1, 6)
        g = rng.randint(40, 400)
        good = frame(g, offset, trend=rng.choice([None, rng.uniform(-5, 5)]))
        kind = rng.randrange(3)
        data = good if kind == 0 else mutate(rng, good) if kind == 1 else \
            bytes(rng.randrange(256) for _ in range(rng.randrange(30)))
        if data == good:
            valid.append(g)
        checked.update(host_view(data))
        port.feed(data + b"\x00")  # a delimiter after each: a damaged frame ends too
        clock.advance(1000)
        try:
            out.extend(poll_all(lk))
        except Exception:  # noqa: BLE001 - counted: any is an escape
            escapes += 1
    return lk, valid, checked, out, escapes


@pytest.mark.req("SNS-4")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_link_no_escapes(seed):
    """Seeded: about a third valid frames, a third mutated, a third garbage. Zero
    exceptions; every reading out is the glucose of a frame the host's decoders also take
    as valid (a mutation that keeps a frame valid, e.g. one that removes only its
    delimiter); every unchanged valid frame comes out (offsets ascend)."""
    lk, valid, checked, out, escapes = fuzz(seed, 600)
    assert escapes == 0
    assert set(out) <= checked
    assert len(out) >= len(valid) > 150
    counted = sum(lk.stats[i] for i in range(2, len(L.STATS)))
    assert lk.stats[L.ST_ACCEPTED] == len(out)
    assert lk.stats[L.ST_FRAMES] == lk.stats[L.ST_ACCEPTED] + counted
    assert counted > 300  # the bad ones were seen and counted


# ------------------------------------------------------------------------ unix port
UNIX_GUEST = """
import json
from array import array
from micropython import heap_lock, heap_unlock
from firmware import cgm_record as R
from firmware.cgm_link import CgmLink
from boards.fakes import BytePort, Clock


def decode_all(bufs, codes, outs, out):
    i = 0
    k = 0
    n = len(bufs)
    heap_lock()
    while i < n:
        b = bufs[i]
        codes[i] = R.decode(b, 0, len(b), out)
        k = 0
        while k < R.OUT_LEN:
            outs[i * R.OUT_LEN + k] = out[k]
            k += 1
        i += 1
    heap_unlock()


def run_link(lk, got):
    n = 0
    j = 0
    heap_lock()
    while j < 400:
        v = lk.read()
        if v:
            got[n] = v
            n += 1
        j += 1
    heap_unlock()
    return n


vectors = json.loads(%r)
bufs = [bytes.fromhex(h) for h in vectors]
codes = array("i", [0] * len(bufs))
outs = array("i", [0] * (len(bufs) * R.OUT_LEN))
decode_all(bufs, codes, outs, array("i", [0] * R.OUT_LEN))
port = BytePort(8192)
lk = CgmLink(port, Clock(), %d)
port.feed(bytes.fromhex(%r))
got = array("i", [0] * 64)
n = run_link(lk, got)
print(json.dumps({"codes": list(codes), "outs": list(outs), "got": list(got[:n]),
                  "stats": list(lk.stats)}))
"""


@pytest.mark.req("SNS-4")
def test_decoder_and_link_on_the_unix_port_allocation_free():
    """The golden vectors plus random and garbage records decoded on MicroPython under
    heap_lock() give what CPython's run of the same code gives; the link runs a fuzzed
    stream there allocation-free with the same readings and statistics."""
    rng = random.Random(7)
    vectors = [v["hex"] for v in GOLDEN]
    for _ in range(150):
        vectors.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))).hex())
        f = {"flags": rng.choice([0, 0x80, 0xE3, 0x03, 0x61]), "glucose": rng.randrange(65536),
             "time_offset": rng.randrange(65536), "status": 1, "cal_temp": 2, "warning": 3,
             "trend": rng.randrange(65536), "quality": rng.randrange(65536)}
        vectors.append(H.build_record(f, e2e=rng.random() < 0.5).hex())
    rng2 = random.Random(11)
    stream = b""
    for i in range(40):
        good = frame(rng2.randint(40, 400), 5 * i + 5)
        stream += (mutate(rng2, good) if rng2.random() < 0.4 else good) + b"\x00"
    guest = json.loads(run_unix(UNIX_GUEST % (json.dumps(vectors), TX, stream.hex())).strip())
    codes, outs = [], []
    for h in vectors:
        c, o = decode(bytes.fromhex(h))
        codes.append(c)
        outs.extend(o if c == R.OK else [0] * R.OUT_LEN)
    assert guest["codes"] == codes
    assert sum(c == R.OK for c in codes) > 100
    g_outs = [guest["outs"][i * R.OUT_LEN:(i + 1) * R.OUT_LEN] if codes[i] == R.OK
              else [0] * R.OUT_LEN for i in range(len(codes))]
    assert sum(g_outs, []) == outs
    lk2, port2, _ = link()
    port2.feed(stream)
    want = [v for v in (lk2.read() for _ in range(400)) if v]
    assert guest["got"] == want and len(want) >= 20
    assert guest["stats"] == list(lk2.stats)


# ------------------------------------------------------------------------ in the pump
def linked_pump(paired=TX):
    """make_pump with a CgmLink on a BytePort as its sensor link, paired to `paired`."""
    from tests.pumpkit import make_pump

    rig, pump = make_pump()
    port = BytePort()
    lk = L.CgmLink(port, rig.clock)
    pump.cgm.plug(lk)
    assert pump.settings.set(S.SET_SENSOR_ID, paired) == S.OK
    return rig, pump, port, lk


def active(pump):
    return {S.ALARMS[a][0] for a in range(S.ALARM_COUNT) if pump.alarms.active[a]}


@pytest.mark.req("SNS-4")
@pytest.mark.req("SNS-2")
def test_bad_records_never_raise_a_glucose_alarm():
    """Corrupt, foreign, replayed and impossible records carrying urgent-low values reach
    no alarm; the next good record is taken as usual."""
    from tests.pumpkit import run

    rig, pump, port, lk = linked_pump()
    port.feed(frame(120, 100))
    run(rig, pump, 2)
    assert pump.cgm.last == 120 and not active(pump)
    low = bytearray(H.encode_record(45, 105))
    low[2] ^= 0x02  # 47 with the old CRC
    bad = bytearray(frame(45, 106))
    bad[5] ^= 0x40
    for data in (H.encode_frame(TX, bytes(low)), bytes(bad), frame(45, 107, tx=TX ^ 1),
                 frame(45, 100), frame(45, 90), frame(5, 108), frame(1500, 109),
                 frame(45, 110, status=R.SS_DEVICE_FAULT)):
        port.feed(data)
        run(rig, pump, 2)
        assert pump.cgm.last == 120 and not active(pump), data.hex()
    assert stats(lk) == {"frames": 9, "accepted": 1, "bad_crc": 1, "bad_frame": 1,
                         "foreign": 1, "duplicate": 1, "out_of_order": 1, "impossible": 2,
                         "sensor_fault": 1}
    port.feed(frame(50, 115))
    run(rig, pump, 2)
    assert pump.cgm.last == 50 and "urgent_low" in active(pump)


@pytest.mark.req("SNS-4")
@pytest.mark.req("ALM-1")
def test_pairing_lost_alarm_through_the_pump():
    """Only another transmitter heard for 20 min: the pairing_lost alarm (medium) with that
    transmitter's id; pairing the pump to it (sensor_id) clears it at its next record."""
    from tests.pumpkit import run

    rig, pump, port, lk = linked_pump()
    port.feed(frame(110, 0))
    run(rig, pump, 60)
    for minute in range(5, 30, 5):
        port.feed(frame(110, minute, tx=0x3001))
        run(rig, pump, 300)
    assert pump.alarms.active[S.A_PAIRING_LOST]
    assert S.ALARMS[S.A_PAIRING_LOST][1] == S.PRIO_MEDIUM
    from tests.pumpkit import history

    assert [(r[3], r[5]) for r in history(pump)
            if r[2] == S.H_ALARM and r[4] == S.A_PAIRING_LOST] == [(S.ALARM_RAISED, 0x3001)]
    assert pump.settings.set(S.SET_SENSOR_ID, 0x3001) == S.OK
    port.feed(frame(112, 30, tx=0x3001))
    run(rig, pump, 2)
    assert pump.cgm.last == 112 and not pump.alarms.active[S.A_PAIRING_LOST]


@pytest.mark.req("SNS-4", "HIS-2")
def test_the_time_offset_order_survives_a_reboot():
    """The paired transmitter's last accepted time offset is saved with the pump's state:
    after a reboot a replayed or older record is still dropped, a later one is taken; a
    session stopped and a new pairing restart the order, across a reboot too. An image of
    the layout before (STATE_LEN_3) loads with no order: the first record is taken."""
    from firmware.layout import S_CGM_OFFSET, S_CGM_TX, STATE_LEN, STATE_LEN_3
    from firmware.pump import Pump
    from firmware.store import Slots
    from tests.pumpkit import run

    rig, pump, port, lk = linked_pump()

    def boot():
        hw = rig.hardware()
        hw.radio = L.CgmLink(port, rig.clock)
        p = Pump(hw)
        assert p.boot() == 0
        return p, hw.radio

    def send(pump, *frames):
        for data in frames:
            port.feed(data)
            run(rig, pump, 2)

    send(pump, frame(120, 100))
    assert pump.cgm.last == 120 and (pump.state[S_CGM_TX], pump.state[S_CGM_OFFSET]) == (TX, 101)
    pump, lk = boot()
    assert (lk.order_for, lk.last_offset) == (TX, 100)
    send(pump, frame(45, 100), frame(45, 95))
    assert pump.cgm.last == 120 and not active(pump)
    assert stats(lk) == {"frames": 2, "duplicate": 1, "out_of_order": 1}
    send(pump, frame(110, 105))
    assert pump.cgm.last == 110 and pump.state[S_CGM_OFFSET] == 106
    # the session stops: the next one starts over at minute 0, after a reboot as well
    send(pump, frame("NaN", 110, status=R.SS_SESSION_STOPPED))
    assert pump.state[S_CGM_OFFSET] == 0
    pump, lk = boot()
    send(pump, frame(130, 0))
    assert pump.cgm.last == 130 and stats(lk) == {"frames": 1, "accepted": 1}
    # another transmitter paired: its own order, saved with its id
    assert pump.settings.set(S.SET_SENSOR_ID, TX + 1) == S.OK
    send(pump, frame(131, 0, tx=TX + 1))
    assert pump.cgm.last == 131
    assert (pump.state[S_CGM_TX], pump.state[S_CGM_OFFSET]) == (TX + 1, 1)
    # an image saved by the firmware before this order existed
    old = array("i", pump.state[:STATE_LEN_3])
    slots = Slots(rig.storage, 2, 3, old)
    assert slots.save() and slots.save()
    pump, lk = boot()
    assert pump.state_slots.loaded_n == STATE_LEN_3 < STATE_LEN
    assert (pump.state[S_CGM_TX], pump.state[S_CGM_OFFSET]) == (0, 0)
    send(pump, frame(132, 0, tx=TX + 1))  # taken: nothing was known
    assert pump.cgm.last == 132 and stats(lk) == {"frames": 1, "accepted": 1}


@pytest.mark.req("SNS-4", "SNS-2")
def test_the_trend_is_timed_by_the_records_time_offsets():
    """SNS-2's rates are glucose over the time it was measured: a backlog of three records
    (minutes 0, 5, 10: -1 mg/dL/min) taken within 3 seconds makes a trend of -1.0, not one
    of -300 mg/dL/min with fall and urgent-low-soon alarms; records 10 sensor minutes apart
    that arrive 5 minutes apart fall at their sensor rate."""
    from tests.pumpkit import run

    rig, pump, port, lk = linked_pump()
    port.feed(frame(150, 0) + frame(145, 5) + frame(140, 10))
    run(rig, pump, 3)
    assert lk.stats[L.ST_ACCEPTED] == 3 and pump.cgm.last == 140
    assert pump.cgm.trend == -10 and pump.cgm.pred20 == 120
    assert not active(pump) & {"glucose_fall", "urgent_low_soon", "glucose_low"}
    for glucose, minute in ((130, 20), (120, 30)):
        run(rig, pump, 298)
        port.feed(frame(glucose, minute))
        run(rig, pump, 2)
    assert pump.cgm.last == 120 and pump.cgm.trend == -10  # 20 mg/dL in 20 sensor minutes
    assert pump.cgm.pred30 == 90


@pytest.mark.req("SNS-4")
def test_sensor_id_setting_range():
    from tests.pumpkit import make_pump

    _, pump = make_pump()
    assert pump.setting(S.SET_SENSOR_ID) == 0
    assert pump.settings.set(S.SET_SENSOR_ID, 1 << 29) == S.E_OUT_OF_RANGE
    assert pump.settings.set(S.SET_SENSOR_ID, -1) == S.E_OUT_OF_RANGE
    assert pump.settings.set(S.SET_SENSOR_ID, (1 << 29) - 1) == S.OK


PUMP_GUEST = """
import json
from micropython import heap_lock, heap_unlock
from boards.fakes import BytePort
from firmware.cgm_link import CgmLink
from protocol import spec as S
from tests.mp_scenarios import make


def run(rig, pump, seconds):
    i = 0
    clock = rig.clock
    heap_lock()
    while i < seconds:
        clock.advance(1000)
        pump.tick()
        i += 1
    heap_unlock()


rig, pump = make(settings=((S.SET_SENSOR_ID, %d),))
port = BytePort(8192)
pump.cgm.plug(CgmLink(port, rig.clock))
port.feed(bytes.fromhex(%r))
run(rig, pump, 3600)
lk = pump.cgm.radio
print(json.dumps({"readings": pump.cgm.readings, "last": pump.cgm.last,
                  "lost": pump.alarms.active[S.A_PAIRING_LOST],
                  "urgent": pump.alarms.active[S.A_URGENT_LOW], "stats": list(lk.stats)}))
"""


@pytest.mark.req("SNS-4", "THR-7")
def test_pump_tick_with_the_sensor_link_is_allocation_free_on_the_unix_port():
    """An hour of 1-s ticks under heap_lock() on MicroPython with a CgmLink whose port holds
    good, corrupt, foreign and replayed frames: no allocation, the readings taken, the bad
    ones counted."""
    stream = b""
    for i in range(6):  # 6 good ones (one per poll), then junk, then a foreign transmitter
        stream += frame(100 + i, 5 * i + 5)
    bad = bytearray(frame(50, 40))
    bad[6] ^= 0x20
    stream += bytes(bad) + frame(50, 10) + b"\x00\x07\x07\x00"
    stream += b"".join(frame(45, 100 + i, tx=0x99) for i in range(40))
    got = json.loads(run_unix(PUMP_GUEST % (TX, stream.hex())).strip().splitlines()[-1])
    # all frames are queued at once and taken one reading per poll
    assert got["readings"] == 6 and got["last"] == 105 and not got["urgent"]
    st = dict(zip(L.STATS, got["stats"], strict=True))
    assert st == {"frames": 49, "accepted": 6, "bad_frame": 2, "bad_crc": 0, "malformed": 0,
                  "foreign": 40, "duplicate": 0, "out_of_order": 1, "impossible": 0,
                  "sensor_fault": 0}
    assert not got["lost"]  # the foreign frames came and went within the first minute
