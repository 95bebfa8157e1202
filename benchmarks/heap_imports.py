"""Heap after boot on the QEMU ARM board, module by module (issue 12): where the bytes go.

Usage, from the repo root (after `tools/arm/build.sh qemu-arm`):
    .venv/bin/python benchmarks/heap_imports.py [--json build/bench/heap.json]

The same boot as benchmarks/arm_bench.py's heap_firmware_only (boards/fakes.py drivers,
storage in the PSRAM), on the product image, frozen, from .mpy files on a file system and
from the same .mpy files in a ROMFS image (arm_bench's three), but importing the
modules the boot loads one at a time, dependencies first, with gc.collect() between: each
row is the bytes a module's import adds to the heap (its globals dict, the tables it builds
at import, its entry in sys.modules, and from .mpy its bytecode). "drivers" and "boot" are
the fakes' drivers and Runner(hw).boot() plus one loop period. The guest's own code, lists
and globals make its totals ~1.5 kB higher than arm_bench's, whose two figures of the targets
(heap_firmware_only, _mpy, _romfs: in use and largest free block after boot) it prints
last.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import arm_bench as A  # noqa: E402
from tools.arm import qemu as Q  # noqa: E402

# dependencies first, as the boot imports them (a module's row holds only what its own
# import adds); those of them the boot does not load (a plain boot first, BOOTED_GUEST)
# are left out and shown as "not loaded at boot"
MODULES = ("protocol.spec", "firmware.compat", "firmware.crc", "firmware.native",
           "firmware.layout", "firmware.hal", "firmware.store", "firmware.events",
           "firmware.alarms", "firmware.doses", "firmware.calc", "firmware.cgm",
           "firmware.settings", "firmware.pump", "firmware.status", "firmware.wire",
           "firmware.demux", "firmware.link", "firmware.main", "boards.fakes",
           "boards.qemu_layout")

BOOTED_GUEST = A.HEAP_MIN_GUEST + """
import sys
print("MODULES " + json.dumps(sorted(sys.modules)))
"""

STEPS = """
import sys
MODS = {mods!r}
res = [0] * (len(MODS) + 2)
k = a = 0
gc.collect()
while k < len(MODS):
    a = gc.mem_alloc()
    if MODS[k] not in sys.modules:
        __import__(MODS[k])
    gc.collect()
    res[k] = gc.mem_alloc() - a
    k += 1
"""

# HEAP_MIN_BOOT's driver construction and boot, measured in two steps
BOOT = A.HEAP_MIN_BOOT.replace(
    'gc.collect()\nr["firmware_imported"] = gc.mem_alloc()\n',
    'gc.collect()\nr["firmware_imported"] = gc.mem_alloc()\na = gc.mem_alloc()\n', 1).replace(
    'gc.collect()\nr["drivers_built"] = gc.mem_alloc()\n',
    'gc.collect()\nr["drivers_built"] = gc.mem_alloc()\nres[-2] = gc.mem_alloc() - a\n'
    'a = gc.mem_alloc()\n', 1).replace(
    'gc.collect()\nr["booted"] = gc.mem_alloc()\n',
    'gc.collect()\nr["booted"] = gc.mem_alloc()\nres[-1] = gc.mem_alloc() - a\n'
    'r["per_import"] = list(res)\n', 1)
assert BOOT.count("res[-") == 2, "arm_bench.HEAP_MIN_BOOT changed: update heap_imports.py"

FROZEN_START = """
import gc, json, micropython, uctypes
gc.collect()
r = {"empty": gc.mem_alloc()}
"""


def mpy_guest(tmp: Path, steps: str) -> tuple[str, Path]:
    """The .mpy archive of arm_bench.heap_from_mpy, and the guest importing from it."""
    guest, state, _ = A.mpy_flash(tmp, "imports-mpy", steps + BOOT)
    return guest, state


def romfs_guest(tmp: Path, steps: str) -> tuple[str, Path]:
    """The ROMFS image of arm_bench.heap_from_romfs, and the guest importing from it."""
    guest, state, _ = A.romfs_flash(tmp, "imports-romfs", steps + BOOT)
    return guest, state


def table(rec: dict) -> list[tuple[str, int | str]]:
    rows = []
    got = dict(zip(rec["modules"], rec["per_import"], strict=False))
    for name in MODULES:
        rows.append((name, got.get(name, "not loaded at boot")))
    rows.append(("drivers (boards/fakes.py)", rec["per_import"][-2]))
    rows.append(("Runner(hw).boot() + one period", rec["per_import"][-1]))
    return rows


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--frozen-only", action="store_true", help="skip the .mpy boots")
    args = p.parse_args(argv)
    figs = {}
    with tempfile.TemporaryDirectory(prefix="heap-imports-") as tmp:
        t = Path(tmp)
        booted = A.lines(Q.run_script(BOOTED_GUEST, state_dir=t / "booted", image=Q.IMAGE),
                         "MODULES")[0]
        mods = [m for m in MODULES if m in booted]
        steps = STEPS.format(mods=mods)
        figs["frozen"] = A.heap_figures_from(
            Q.run_script(FROZEN_START + steps + BOOT, state_dir=t / "frozen", image=Q.IMAGE))
        if not args.frozen_only:
            guest, state = mpy_guest(t, steps)
            figs["mpy"] = A.heap_figures_from(Q.run_script(guest, state_dir=state,
                                                           image=Q.IMAGE))
            guest, state = romfs_guest(t, steps)
            figs["romfs"] = A.heap_figures_from(Q.run_script(guest, state_dir=state,
                                                             image=Q.IMAGE))
        for rec in figs.values():
            rec["modules"] = mods
        # the figures of the targets, as benchmarks/arm_bench.py measures them
        figs["targets"] = {"frozen": A.heap_figures(t, A.HEAP_MIN_GUEST)}
        if not args.frozen_only:
            figs["targets"]["mpy"] = A.heap_from_mpy(t)
            figs["targets"]["romfs"] = A.heap_from_romfs(t)
    cols = [c for c in figs if c != "targets"]
    print(f"{'bytes':34}" + "".join(f"{c:>20}" for c in cols))
    rows = {c: table(figs[c]) for c in cols}
    for i, (name, _) in enumerate(rows[cols[0]]):
        print(f"{name:34}" + "".join(f"{rows[c][i][1]!s:>20}" for c in cols))
    for key in ("empty", "firmware_imported", "booted", "largest_free"):
        print(f"{key:34}" + "".join(f"{figs[c].get(key, '-')!s:>20}" for c in cols))
    for c, rec in figs["targets"].items():
        print(f"arm_bench heap_firmware_only{'' if c == 'frozen' else '_' + c}: in use "
              f"{rec['booted']}, largest free block {rec['largest_free']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
