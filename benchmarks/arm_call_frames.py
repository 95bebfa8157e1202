"""What a Python call's frame costs on the QEMU ARM test image: the same Pump.tick and
Link.poll measured under micropython.heap_lock() (how arm_bench.py measures ticks) and
without it, on a heap just collected and on one holding many small live objects.

    .venv/bin/python benchmarks/arm_call_frames.py

Why they can differ: MicroPython without a frame stack puts the state of a call whose
locals and stack take more than 11 words on the heap (py/objfun.c, m_new_obj_var_maybe,
freed on return) and on the C stack only when that fails - as it does under heap_lock. So
a firmware that allocates nothing still runs the allocator twice per such call, and the
allocator's search grows with the heap's fragmentation. The ARM images now have a fixed
frame stack (MICROPY_ENABLE_PYSTACK, tools/arm/qemu/mpconfigboard.h): the rows should
agree. Instruction counts, medians.

Then the frame stack's high-water mark: the guest paints the unused part of it
(machine.mem32; its address from the image's symbol table), runs every request of
tests/mp_link.py's set, a signed bolus and ticks until it is delivered, and reads back how
far the paint was overwritten: the deepest call chain of that work, against the 8 KiB.
Then once more through main.py's Runner (its loop, the link, the bench console's session
of a console bolus, an occlusion, history), as a board runs them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.arm import qemu as Q  # noqa: E402

GUEST = """
import time, gc, micropython
from firmware import wire
from tests import mp_link as L
cpu = time.ticks_cpu
diff = time.ticks_diff
ID = wire.INDEX
N = 101
rig, pump, link = L.bench(bolus=False)
serial = rig.serial
plain = wire.encode_frame(ID["status"], 5, 0, [])
signed = wire.encode_frame(ID["status"], 6, 0, [], key=L.KEY, counter=900)  # a query:
# its counter is a nonce, the same frame is answered every time
keep = None


def heap(junk):
    global keep
    keep = [bytearray(i % 50 + 1) for i in range(junk)]  # live small objects...
    for i in range(0, junk, 2):
        keep[i] = None  # ...with holes between them
    gc.collect()


def run(what, lock, junk):
    heap(junk)
    s = [0] * N
    for i in range(N):
        if what == "tick":
            rig.clock.advance(100)
        else:
            serial.out_count = 0
            serial.send(plain if what == "status" else signed)
        if lock:
            micropython.heap_lock()
        t0 = cpu()
        if what == "tick":
            pump.tick()
        else:
            link.poll()
        t1 = cpu()
        if lock:
            micropython.heap_unlock()
        s[i] = diff(t1, t0) * 40
    s.sort()
    print("ROW", what, "locked" if lock else "unlocked", junk, s[N // 2])


for what in ("tick", "status", "signed"):
    run(what, True, 0)
    run(what, False, 0)
    run(what, False, 2000)
"""

PAINT = 0x2A5A5A5A  # a small int on 32 bits: reading it back allocates nothing

PEAK_GUEST = """
import machine, micropython
from tests import mp_link as L
BASE, END, PAINT = {base}, {end}, {paint}
mem = machine.mem32


def paint():
    a = BASE + micropython.pystack_use() + 256  # above this call's own frame
    while a < END:
        mem[a] = PAINT
        a += 4


def peak():
    a = END - 4
    while a >= BASE and mem[a] == PAINT:
        a -= 4
    return a + 4 - BASE


paint()
rig, pump, link = L.bench()
for label, data, answer in L.request_frames():
    L.xfer(rig, link, data)
for i in range(600):  # a minute of ticks: the bolus's pulses, its end, the 1-Hz work
    rig.clock.advance(100)
    pump.tick()
    link.poll()
print("PEAK", "direct", peak(), END - BASE)

# the same work and a bench-console session through main.py's Runner, as a board runs it
# (its loop, service and console frames sit below the link's and the console's)
from boards.fakes import Rig, Serial
from firmware.main import Runner
# tests/mp_console.py's session (that module is not in the test image)
STEPS = (("line", "status"), ("line", "bolus 1.5"), ("line", "yes"), ("run", 40),
         ("line", "temp pct 55 60"), ("line", "set max_bolus 30"), ("line", "frobnicate"),
         ("occlude", 1), ("line", "bolus 3"), ("line", "yes"), ("run", 150),
         ("line", "alarms"), ("line", "ack"), ("line", "history 4"), ("line", "totals 2"),
         ("line", "time"), ("line", "settings"), ("line", "help"))
paint()
rig = Rig(50, storage_sizes=L.SIZES)
rig.serial = Serial()
rig.key = L.KEY
hw = rig.hardware()
hw.console = port = Serial()
runner = Runner(hw)
runner.boot()
port.take()
L.make_ready(runner.pump)  # delivering, a temp basal, as tests/mp_link.py's bench
answered = expected = typed = 0
for label, data, answer in L.request_frames():
    rig.serial.send(data)
    runner.run(ticks=1)
    got = L.frames(rig.serial.take())
    if answer:  # the bad-CRC and garbage frames get none; events may come out beside
        expected += 1
        if any(f[0] == answer for f in got):
            answered += 1
for kind, arg in STEPS:
    if kind == "line":
        port.send(arg.encode() + b"\\r")
    elif kind == "feed":
        port.send(arg)
    elif kind == "run":
        runner.run(ticks=arg * 10)
    else:
        rig.line.occluded = bool(arg)
    runner.run(ticks=1)
    typed += port.take().count(b"pump> ")
runner.run(ticks=600)
print("PEAK", "runner", peak(), END - BASE)
print("WORK", answered, expected, typed, runner.pump.history.next_seq)
"""


def frame_stack(image: Path) -> tuple[int, int]:
    """(address, size) of the image's frame stack (main.c's static `pystack`)."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(image)], capture_output=True,
                         text=True, check=True).stdout
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) == 4 and parts[3].startswith("pystack."):
            return int(parts[0], 16), int(parts[1], 16)
    raise SystemExit(f"{image}: no frame stack (built without MICROPY_ENABLE_PYSTACK?)")


def main() -> int:
    base, size = frame_stack(Q.find_image(Q.TEST_IMAGE))
    with tempfile.TemporaryDirectory(prefix="arm-frames-") as tmp:
        out = Q.run_script(GUEST, state_dir=Path(tmp) / "g")
        peak_out = Q.run_script(PEAK_GUEST.format(base=base, end=base + size, paint=PAINT),
                                state_dir=Path(tmp) / "peak")
    print(f"{'what':8} {'heap_lock':10} {'live objects':>12} {'median':>8}  (instructions)")
    for ln in out.splitlines():
        if ln.startswith("ROW "):
            _, what, lock, junk, median = ln.split()
            print(f"{what:8} {lock:10} {int(junk) // 2:12} {int(median):8}")
    work = {"direct": "every request of tests/mp_link.py, a signed bolus, 600 ticks",
            "runner": "the same requests, a bench-console session (a bolus, an occlusion, "
                      "history) and "
                      "600 ticks through main.py's Runner"}
    for ln in peak_out.splitlines():
        if ln.startswith("WORK "):  # the Runner's run did the work (not just looped)
            _, answered, sent, prompts, records = ln.split()
            print(f"  (Runner: {answered} of {sent} requests answered by their answer id, "
                  f"{prompts} console prompts, {records} history records)")
        if ln.startswith("PEAK "):
            _, how, used, total = ln.split()
            print(f"frame stack: deepest use {int(used)} of {int(total)} bytes "
                  f"({100 * int(used) // int(total)} %): {work[how]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
