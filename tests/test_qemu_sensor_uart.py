"""The QEMU ARM board's sensor UART driver (boards/qemu_arm.CmsdkUart, SNS-4, HW-4) on real
32-bit ARM MicroPython: frames written to the sensor pty before the board starts reach
CgmLink through UART1's polled registers, whole and in order, with every poll under
micropython.heap_lock() (the driver runs in the pump's tick).

Needs the QEMU test image (`make firmware BOARD=qemu-arm`) and qemu-system-arm; skipped,
saying so, without them.
"""

import json

import pytest

from protocol import cgm_record as H
from tools.arm import qemu as Q

TX = 0x5E4501
GUEST = """
import json
import time
from array import array
from micropython import heap_lock, heap_unlock
from boards.fakes import Clock
from boards.qemu_arm import CmsdkUart
from firmware.cgm_link import CgmLink, STATS

lk = CgmLink(CmsdkUart(), Clock(), {tx})
got = array("i", [0] * 8)
n = 0
polls = 0
t0 = time.ticks_ms()
while n < {want} and time.ticks_diff(time.ticks_ms(), t0) < 10000:
    heap_lock()
    v = lk.read()
    heap_unlock()
    polls += 1
    if v:
        got[n] = v
        n += 1
print("RESULT", json.dumps({{"got": list(got[:n]), "polls": polls,
                             "stats": dict(zip(STATS, lk.stats))}}))
"""


@pytest.mark.req("SNS-4", "HW-4")
def test_frames_on_the_sensor_pty_reach_the_link_through_uart1(tmp_path):
    try:
        Q.find_image(Q.TEST_IMAGE)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    frames = [H.encode_frame(TX, H.encode_record(g, m)) for g, m in
              ((120, 5), (118, 10), (45, 10), (116, 15))]  # the third replays minute 10
    bad = bytearray(H.encode_frame(TX, H.encode_record(50, 20)))
    bad[3] ^= 0x10  # a damaged byte: the frame CRC fails
    data = b"".join(frames) + bytes(bad) + H.encode_frame(TX, H.encode_record(114, 25))
    out = Q.run_script(GUEST.format(tx=TX, want=4), state_dir=tmp_path, icount=False,
                       sensor=data)
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["got"] == [120, 118, 116, 114]
    stats = {k: v for k, v in result["stats"].items() if v}
    assert stats == {"frames": 6, "accepted": 4, "duplicate": 1, "bad_frame": 1}
