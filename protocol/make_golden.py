"""Regenerate protocol/golden.json: fixed frames for every message, made by the host codec.

    .venv/bin/python -m protocol.make_golden          # rewrite golden.json
    .venv/bin/python -m protocol.make_golden --check  # exit 1 if golden.json is stale

The vectors are checked in; tests prove that the host codec (construct) and the firmware
codec (firmware/wire.py, on CPython and on MicroPython) both reproduce them byte for byte.
Regenerate only when the message table changes on purpose (the schema hash changes too).

Per message: a "plain" vector with fixed, seeded field values (queries without flags,
pump-to-host messages with F_RESPONSE, events with F_EVENT and sequence 0), an "auth"
vector for every command (the fixed TEST_KEY below, a fixed counter), and "min"/"max"
vectors with every field at the bottom / top of its range.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

from protocol import codec, spec

GOLDEN_PATH = Path(__file__).with_name("golden.json")

# Fixed test key: never a real pump's key.
TEST_KEY = hashlib.sha256(b"micropump golden vectors test key").digest()


def _int_value(rng: random.Random, f) -> int:
    pick = rng.random()
    if pick < 0.15:
        return 0
    if pick < 0.45:
        return rng.randint(max(f.lo, -300), min(f.hi, 300))
    return rng.randint(f.lo, f.hi)


def _bytes_value(rng: random.Random, f) -> bytes:
    # printable text for names, otherwise bytes with some zero runs (COBS must cope)
    if f.name == "name":
        text = rng.choice([b"weekday", b"sick", b"sport", b"ABCDEFGH"])
        return text.ljust(f.size, b"\0")
    out = bytearray(rng.getrandbits(8) for _ in range(f.size))
    for _ in range(f.size // 8):
        out[rng.randrange(f.size)] = 0
    return bytes(out)


def _values(m, how: str, rng: random.Random) -> dict:
    out = {}
    for f in m.fields:
        if f.is_bytes:
            out[f.name] = {"min": b"\0" * f.size, "max": b"\xff" * f.size}.get(
                how) or _bytes_value(rng, f)
        else:
            out[f.name] = {"min": f.lo, "max": f.hi}.get(how, None)
            if out[f.name] is None:
                out[f.name] = _int_value(rng, f)
    return out


def _flags_for(mid: int) -> tuple[int, int | None]:
    """(flags, fixed sequence or None) for a message in its normal direction."""
    if mid == 0xC0:
        return spec.F_EVENT, 0
    if mid >= 0x80:
        return spec.F_RESPONSE, None
    return 0, None


def _json_fields(fields: dict) -> dict:
    return {k: ({"hex": v.hex()} if isinstance(v, bytes) else v) for k, v in fields.items()}


def fields_from_json(fields: dict) -> dict:
    return {k: (bytes.fromhex(v["hex"]) if isinstance(v, dict) else v)
            for k, v in fields.items()}


def build() -> dict:
    vectors = []
    for mid, m in sorted(codec.MESSAGES.items()):
        rng = random.Random(f"micropump golden {mid}")
        flags, fixed_seq = _flags_for(mid)
        is_command = mid >= spec.CMD_FIRST and mid < 0x80
        hows = ["plain"] + (["auth"] if is_command else []) + ["min", "max"]
        for how in hows:
            fields = _values(m, how, rng)
            seq = fixed_seq if fixed_seq is not None else rng.randint(0, 0xFFFF)
            if how == "min" and fixed_seq is None:
                seq = 0
            if how == "max" and fixed_seq is None:
                seq = 0xFFFF
            key = counter = None
            if how == "auth":
                key, counter = TEST_KEY, rng.randint(1, 0xFFFFFFFF)
            frame = codec.encode_frame(mid, seq, fields, key=key, counter=counter, flags=flags)
            vectors.append({
                "name": m.name,
                "id": mid,
                "case": how,
                "seq": seq,
                "flags": frame[1],
                "counter": counter,
                "fields": _json_fields(fields),
                "frame": frame.hex(),
                "wire": codec.stuff(frame).hex(),
            })
    return {
        "about": "Golden frames of the micropump wire protocol; regenerate with "
                 "`python -m protocol.make_golden` only when protocol/spec.py changes.",
        "protocol_version": spec.PROTOCOL_VERSION,
        "schema": spec.schema_hash(),
        "key": TEST_KEY.hex(),
        "vectors": vectors,
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        current = GOLDEN_PATH.read_text() if GOLDEN_PATH.exists() else ""
        if current != text:
            print(f"{GOLDEN_PATH} is stale: run python -m protocol.make_golden")
            return 1
        return 0
    GOLDEN_PATH.write_text(text)
    print(f"wrote {GOLDEN_PATH} ({len(build()['vectors'])} vectors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
