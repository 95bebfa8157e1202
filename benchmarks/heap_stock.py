"""Heap after boot from .mpy files on a file system, as on a stock MicroPython: the QEMU ARM
test image with its C modules (hmac256, crc16c; tools/arm/cmod) and the same image with
both hidden, so the firmware takes its portable paths (firmware/hmac_portable.py, the viper
CRC and COBS) as a stock Pico or ESP32 build would.

    .venv/bin/python benchmarks/heap_stock.py

The guest is arm_bench.py's .mpy deployment (MPY_FS_GUEST + HEAP_MIN_BOOT) with one line
more, so both rows run the same script text (the script's own bytecode is in the figure:
compare rows of one run, not with other scripts' figures).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import arm_bench as B  # noqa: E402
from tools.arm import qemu as Q  # noqa: E402

# a loaded module wins over a built-in one: `from crc16c import seal` then raises ImportError
HIDE = 'sys.modules["crc16c"] = sys.modules["hmac256"] = json\n'
KEEP = 'sys.modules["crc16c_"] = sys.modules["hmac256_"] = json\n'  # near the same text, no effect
REPORT = '\nprint("PORTABLE", "firmware.hmac_portable" in sys.modules)\n'


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="heap-stock-") as t:
        tmp = Path(t)
        print(f"{'image':36}{'in use':>8}{'largest free':>14}  HMAC in Python")
        for label, pre in (("QEMU test image, C modules", KEEP),
                           ("the same, C modules hidden (stock)", HIDE)):
            guest, state, _ = B.mpy_flash(tmp, "h" + str(len(label)),
                                          pre + B.HEAP_MIN_BOOT + REPORT)
            out = Q.run_script(guest, state_dir=state, image=Q.IMAGE)
            rec = B.heap_figures_from(out)
            portable = any(ln == "PORTABLE True" for ln in out.splitlines())
            print(f"{label:36}{rec['booted']:>8,}{rec['largest_free']:>14,}  {portable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
