"""Host codec against pymavlink, in the same run (issue 6, item 3): target >= 2x pymavlink.

Comparable messages, each encoded (field values -> wire bytes) and decoded (wire bytes ->
a message object with its fields):

  HEARTBEAT (pymavlink, 9-byte payload)   vs  status_info (the pump's status report)
  COMMAND_LONG (33-byte payload)          vs  bolus (a delivery command), both unsigned
  COMMAND_LONG signed (MAVLink 2 signing: SHA-256, 48-bit timestamp)
                                          vs  bolus with its HMAC-SHA256 (SEC-2); decode
                                              checks the signature / MAC

Ours twice: protocol/codec.py (construct, the definition) and protocol/fastcodec.py (struct
formats derived from the same table). pymavlink packs with precompiled struct formats and
computes its CRC with fastcrc (Rust) when installed, as it is here. Encode includes COBS
and the 0x00 delimiter; decode includes unstuffing, the CRC check and the message object.

    .venv/bin/pytest benchmarks/test_codec_speed.py --benchmark-only

Medians (pytest-benchmark) go to the figures registry; the summary prints the ratios.
Tests run one after the other, so load that comes and goes on a shared machine moves one
codec's median and not the other's: test_codec_ratios_interleaved measures the three
codecs in alternating rounds instead and quotes the median of the per-round ratios (the
headline figure).
"""

import statistics
import timeit

import pytest
from pymavlink.dialects.v20 import common as mavlink

from protocol import codec, fastcodec, spec

KEY = bytes(range(1, 33))
IMPLS = {"construct": codec, "fast": fastcodec}

STATUS = {name: (i * 97) % 200 for i, name in enumerate(codec.field_names("status_info"))}
STATUS.update(reservoir=187_450, basal_rate=1200, utc=215_000_000, offset=60,
              last_cmd_id=4711)
BOLUS = {"cmd_id": 4712, "kind": spec.BOLUS_NORMAL, "now": 2500, "ext": 0, "ext_minutes": 0}


def _mav(signed: bool):
    mav = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
    if signed:
        mav.signing.secret_key = KEY
        mav.signing.link_id = 1
        mav.signing.timestamp = 1_000_000
        mav.signing.sign_outgoing = True
    return mav


def pml_heartbeat(mav):
    return mavlink.MAVLink_heartbeat_message(
        mavlink.MAV_TYPE_GCS, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE,
        3).pack(mav)


def pml_command_long(mav):
    return mavlink.MAVLink_command_long_message(
        1, 1, mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 1.0, 0, 0, 0, 0, 0, 0).pack(mav)


def pymavlink_cases():
    plain, signed = _mav(False), _mav(True)
    rx_plain, rx_signed = _mav(False), _mav(True)
    hb = bytearray(pml_heartbeat(plain))
    cl = bytearray(pml_command_long(plain))
    cl_signed = bytearray(pml_command_long(signed))
    streams = rx_signed.signing.stream_timestamps

    def decode_signed():
        streams.clear()  # the same frame again: no replay refusal, like our decode
        return rx_signed.decode(cl_signed)  # checks the signature (secret_key is set)

    return {
        ("encode", "heartbeat_vs_status_info"): lambda: pml_heartbeat(plain),
        ("decode", "heartbeat_vs_status_info"): lambda: rx_plain.decode(hb),
        ("encode", "command_long_vs_bolus"): lambda: pml_command_long(plain),
        ("decode", "command_long_vs_bolus"): lambda: rx_plain.decode(cl),
        ("encode", "signed_command_long_vs_bolus_mac"): lambda: pml_command_long(signed),
        ("decode", "signed_command_long_vs_bolus_mac"): decode_signed,
    }


def our_cases(c):
    status = c.encode("status_info", 77, STATUS, flags=spec.F_RESPONSE)
    bolus = c.encode("bolus", 78, BOLUS)
    signed = c.encode("bolus", 79, BOLUS, key=KEY, counter=4712)
    return {
        ("encode", "heartbeat_vs_status_info"):
            lambda: c.encode("status_info", 77, STATUS, flags=spec.F_RESPONSE),
        ("decode", "heartbeat_vs_status_info"): lambda: c.decode(status),
        ("encode", "command_long_vs_bolus"): lambda: c.encode("bolus", 78, BOLUS),
        ("decode", "command_long_vs_bolus"): lambda: c.decode(bolus),
        ("encode", "signed_command_long_vs_bolus_mac"):
            lambda: c.encode("bolus", 79, BOLUS, key=KEY, counter=4712),
        ("decode", "signed_command_long_vs_bolus_mac"): lambda: c.decode(signed, key=KEY),
    }


CASES = list(pymavlink_cases())


def _check(impl, op, pair, got):
    """What was timed did the job (checked once, outside the timing)."""
    if impl == "pymavlink":
        if op == "encode":
            assert isinstance(got, bytes | bytearray) and got[0] == mavlink.PROTOCOL_MARKER_V2
        else:
            assert got.get_type() in ("HEARTBEAT", "COMMAND_LONG")
        return
    if op == "encode":
        assert got.endswith(b"\0") and codec.decode(got)
    else:
        want = "status_info" if pair.startswith("heartbeat") else "bolus"
        assert got.name == want
        assert got.fields == (STATUS if want == "status_info" else BOLUS)


@pytest.mark.req("LNK-1")
@pytest.mark.parametrize("impl", ["pymavlink", "construct", "fast"])
@pytest.mark.parametrize("op,pair", CASES, ids=[f"{op}-{pair}" for op, pair in CASES])
def test_codec_speed(benchmark, figures, impl, op, pair):
    cases = pymavlink_cases() if impl == "pymavlink" else our_cases(IMPLS[impl])
    fn = cases[(op, pair)]
    _check(impl, op, pair, fn())
    benchmark.group = f"{op} {pair}"
    benchmark(fn)
    median_us = benchmark.stats.stats.median * 1e6
    figures.setdefault("medians_us", {}).setdefault(f"{op} {pair}", {})[impl] = median_us
    benchmark.extra_info["median_us"] = median_us
    if op == "encode":
        figures.setdefault("wire_bytes", {})[f"{impl} {pair}"] = len(cases[(op, pair)]())


INTERLEAVED_ROUNDS = 15
NUMBER = {"pymavlink": 1000, "construct": 50, "fast": 1000}  # calls per timed round


def interleaved_ratios() -> dict:
    """{"op pair": {"median_us": {impl: us}, "ratio": {impl: pymavlink time / impl time}}},
    from INTERLEAVED_ROUNDS rounds, each timing pymavlink, construct and fast in turn."""
    cases = {"pymavlink": pymavlink_cases()}
    cases.update({impl: our_cases(mod) for impl, mod in IMPLS.items()})
    out = {}
    for key in CASES:
        times: dict = {impl: [] for impl in cases}
        for _ in range(INTERLEAVED_ROUNDS):
            for impl, table in cases.items():
                n = NUMBER[impl]
                times[impl].append(timeit.timeit(table[key], number=n) / n)
        out[" ".join(key)] = {
            "median_us": {impl: statistics.median(t) * 1e6 for impl, t in times.items()},
            "ratio": {impl: statistics.median(p / o for p, o in zip(times["pymavlink"],
                                                                    times[impl], strict=True))
                      for impl in IMPLS},
        }
    return out


def test_codec_ratios_interleaved(benchmark, figures):
    figures["interleaved"] = benchmark.pedantic(interleaved_ratios, rounds=1, iterations=1)
