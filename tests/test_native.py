"""The viper byte loops (firmware/native.py: CRC-16, COBS encoder and decoder) agree byte for
byte with their portable bytecode twins on every message of the table (issue 12), on the
unix port (x64 machine code) and on the QEMU ARM board (ARMv6-M machine code, as on a Pico).
The guest code is tests/mp_native.py. CPython and the WebAssembly build have no native
emitter: they run the portable code, which tests/test_codec.py checks against the host
codec."""

import json

import pytest

from tests.runtimes import run_unix, run_wasm
from tools.arm import qemu as Q

ROUNDS = 10
CALL = f"from tests.mp_native import main_native\nmain_native({ROUNDS})\n"


def parse(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("NATIVE ")]
    assert len(lines) == 1, out
    return json.loads(lines[0][len("NATIVE "):])


def check(got):
    assert got["native"] is True  # the firmware selected the viper versions
    assert got["sensitive"] is True
    assert got["messages"] >= 40
    assert got["nbad"] == 0, got["bad"]
    assert got["checked"] == got["messages"] * 2 * ROUNDS + got["length_cases"]
    assert got["feed_cases"] == got["messages"] * ROUNDS  # the COBS decoder loops
    assert got["feed_sensitive"] is True
    assert got["mac_cases"] == ROUNDS * 8  # the MAC comparison, equal and one bit off
    assert got["same_cases"] == ROUNDS * 8  # the status key comparison (same32, same8)


@pytest.mark.req("HW-2")
def test_native_loops_match_portable_on_the_unix_port():
    check(parse(run_unix(CALL)))


@pytest.mark.req("HW-4")
def test_native_loops_match_portable_on_arm(tmp_path):
    try:
        Q.find_image(Q.TEST_IMAGE)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    check(parse(Q.run_script(CALL, state_dir=tmp_path, icount=False)))


def test_wasm_keeps_the_portable_code():
    """No native emitter: firmware.native does not compile there, crc16 stays portable."""
    out = run_wasm("from firmware import crc, portable, wire\n"
                   "print('NATIVE', crc.NATIVE, wire.cobs_encode is portable.cobs_encode,"
                   " crc.crc16(b'123456789', 0, 9))\n").stdout
    assert out.split() == ["NATIVE", "False", "True", str(0x29B1)]
