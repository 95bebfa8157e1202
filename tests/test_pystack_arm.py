"""Python call frames on the ARM images' fixed frame stack, not the heap (HW-4).

Without MICROPY_ENABLE_PYSTACK, MicroPython gives a call whose frame is larger than 11 words
a heap block on every call (py/objfun.c) and falls back to the C stack only when that fails,
which it always does under heap_lock: the tick's allocation-free checks would pass while the
running pump still allocated (and could start a collection) inside a tick. Both ARM images
are built with a fixed 8 KiB frame stack (tools/arm/qemu/mpconfigboard.h,
tools/arm/pico/mpconfigboard-extra.h). Checked here: on the QEMU board a wide frame takes
no heap and sits on the frame stack; the Pico image links the frame stack too. The whole
HIL suite runs on the QEMU image with it (the firmware's deepest paths fit in 8 KiB);
benchmarks/arm_call_frames.py shows a tick costing the same on a fragmented heap as under
heap_lock. Skipped, saying so, without the images.
"""

import json
import subprocess
from pathlib import Path

import pytest

from tools.arm import qemu as Q

ROOT = Path(__file__).resolve().parents[1]
WIDE_LOCALS = 24  # words of locals, well above the 11 a frame keeps on the C stack

GUEST = """
import gc, json, micropython

def wide():
    {assign} = 0
    return gc.mem_alloc(), micropython.pystack_use()

def measure():  # locals only: a module-level name stored could grow the globals dict
    gc.collect()
    before = gc.mem_alloc()
    ps_before = micropython.pystack_use()
    inside, ps_inside = wide()
    return [before, inside, ps_before, ps_inside]

print("WIDE " + json.dumps(measure()))
"""


@pytest.fixture(scope="module")
def arm_out(tmp_path_factory):
    try:
        Q.find_image(Q.TEST_IMAGE)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    guest = GUEST.format(assign=" = ".join(f"v{i}" for i in range(WIDE_LOCALS)))
    return Q.run_script(guest, state_dir=tmp_path_factory.mktemp("arm-pystack"), icount=False)


@pytest.mark.req("HW-4")
def test_a_wide_frame_takes_no_heap_on_arm(arm_out):
    rows = [json.loads(ln[5:]) for ln in arm_out.splitlines() if ln.startswith("WIDE ")]
    assert rows, arm_out
    before, inside, ps_before, ps_inside = rows[0]
    assert inside == before  # without the frame stack: + one heap block of >= 96 bytes
    assert ps_inside - ps_before >= 4 * WIDE_LOCALS  # the frame is on the frame stack


@pytest.mark.req("HW-4")
def test_the_pico_image_links_the_frame_stack():
    elf = ROOT / "build/pico/micropump.elf"
    if not elf.exists():
        pytest.skip(f"{elf} not built (make firmware BOARD=pico)")
    syms = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    assert " mp_pystack_init" in syms
