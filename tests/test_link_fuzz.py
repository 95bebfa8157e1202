"""Seeded fuzz of the firmware link (LNK-5, LNK-4, SEC-2): random bytes, truncated frames,
frames with changed bytes (with and without a CRC made right again), other versions,
flags and ids, wrong lengths, oversized frames, replayed and forged commands, arriving in
pieces of random size.

After every bad input the host sends a good query, which must be answered; no exception
may escape the link (its fault counter stays 0), every byte the pump writes must decode
as a frame, and the pump state (state array, settings, history head, alarms, event queue,
auth counter and command-id ring) must be exactly what it was before the fuzz.

The fuzz itself is tests/mp_link.py: the same code and PRNG run under CPython and on the
MicroPython unix port, so both must also count exactly the same link statistics.
"""

import functools
import json
from pathlib import Path

import pytest

from tests import mp_link as M
from tests.runtimes import run_unix

CPYTHON_FRAMES = 20_000
UNIX_FRAMES = 5_000


def check(got, n):
    assert got["frames"] == n
    assert got["faults"] == 0  # nothing escaped from a handler
    assert got["answered"] == n  # the good query after every bad input was answered
    assert got["unchanged"] is True, got["diff"]
    assert got["overflow"] == 0
    frames_in, bad_crc, bad_frame, unknown, bad_auth, replayed, duplicates, _ = got["stats"]
    assert duplicates == 0
    # each kind of malformed input was really produced and recognised
    assert min(bad_crc, bad_frame, unknown, bad_auth, replayed) > n // 50, got["stats"]
    assert frames_in >= 2 * n


@functools.cache
def unix_fuzz(seed, n):
    src = Path(M.__file__).read_text() + f"\nmain_fuzz({seed}, {n})\n"
    for line in run_unix(src, timeout=300).splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise AssertionError("no RESULT from the guest")


@pytest.mark.req("LNK-5", "LNK-4", "SEC-2")
def test_fuzz_on_cpython():
    check(M.fuzz(1, CPYTHON_FRAMES), CPYTHON_FRAMES)


@pytest.mark.req("LNK-5", "LNK-4", "SEC-2", "HW-3")
def test_fuzz_on_the_unix_port_matches_cpython():
    got = unix_fuzz(2, UNIX_FRAMES)
    check(got, UNIX_FRAMES)
    assert got == json.loads(json.dumps(M.fuzz(2, UNIX_FRAMES)))
