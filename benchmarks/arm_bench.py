"""Firmware figures on real 32-bit ARM MicroPython (HW-4): the QEMU board's images under
qemu-system-arm with `-icount shift=0`, where one guest instruction is one ns of board
time, so every figure is an instruction count and repeats exactly.

Usage, from the repo root (after `make firmware BOARD=qemu-arm`):
    .venv/bin/python benchmarks/arm_bench.py            # everything, printed as tables
    .venv/bin/python benchmarks/arm_bench.py --json build/bench/arm.json
    .venv/bin/python benchmarks/arm_bench.py --ticks-only   # the tick figures alone (~5 s)

Figures:
- tick: instructions per Pump.tick in every steady delivery state of tests/mp_scenarios.py
  (STEADY, the states tests/test_alloc_free.py and benchmarks/tick_cost.py use), TICKS
  ticks of 100 ms under micropython.heap_lock(): median, mean, p99, max, and the median of
  the ticks that moved the motor (a pulse and a state save). Test image.
- request: instructions per Link.poll answering one request (tests/mp_link.py frames:
  status, hello, get_alarms, get_history, ...), median of REQUESTS; status_auth and
  bolus_auth: authenticated, a fresh counter for each (AUTH_GUEST), median of 21. Test image.
- heap: gc figures of the product image (build/qemu-arm/micropump.elf) booting the pump as
  in CI: from an empty heap, after importing the firmware, after importing the board
  (boards/qemu_arm.py with the emulator's simulated parts), and after boot and one loop
  period: in use, free, largest free block (micropython.mem_info's "max free sz", 16-byte
  blocks).
- heap_firmware_only (_mpy, _romfs): the firmware alone (boards/fakes.py drivers), frozen,
  from .mpy files on a file system (read into RAM by the import) and from the same .mpy
  files in a ROMFS image (run in place); heap_shared_console (_typed): the same with the
  bench console on the protocol port as the Pico and ESP32 build it, after boot (and after
  one typed line).
- boot: instructions from reset (the board clock starts in main.c) to the first watchdog
  feed, with an empty history and with a full one (every record of the history region
  written: bolus start/end pairs), product image.
- image: arm-none-eabi-size of both images and of the frozen modules.

Clock: time.ticks_cpu() counts the 25 MHz system clock (tools/arm/qemu/board_hal.c), so a
count is 40 instructions under shift=0; per-tick figures subtract the cost of the two
ticks_cpu() calls around the tick (measured the same way). The SysTick interrupt (1 kHz of
board time = once per 10**6 instructions, ~30 instructions each) is included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from host_tools.flash import MPY_OPT  # noqa: E402 (pumpctl flash's mpy-cross level)
from tools.arm import qemu as Q  # noqa: E402

INSN_PER_COUNT = 40  # 25 MHz SysTick counts at 1 instruction per ns (-icount shift=0)
TICKS = 2000
STEP_MS = 100
REQUESTS = 50
GC_BLOCK = 16  # bytes per GC block on a 32-bit port

TICK_GUEST = """
import gc, json, time, micropython
from array import array
from tests import mp_scenarios as M
cpu = time.ticks_cpu
diff = time.ticks_diff
N = {ticks}
empty = array("i", [0] * 200)
for i in range(200):
    t0 = cpu()
    t1 = cpu()
    empty[i] = diff(t1, t0)
print("EMPTY " + json.dumps(sorted(empty)[100]))
for name in M.STEADY:
    c = M.setup_state(name, N)
    rig = c["rig"]
    pump = c["pump"]
    clock = rig.clock
    motor = rig.motor
    samples = array("i", [0] * N)
    moved = array("b", [0] * N)
    k = odo = t0 = t1 = 0  # globals made before the lock: a new one grows the dict
    micropython.heap_lock()
    try:
        while k < N:
            clock.advance({step})
            odo = motor.odometer
            t0 = cpu()
            pump.tick()
            t1 = cpu()
            samples[k] = diff(t1, t0)
            moved[k] = 1 if motor.odometer != odo else 0
            k += 1
    finally:
        micropython.heap_unlock()
    moving = sorted([samples[i] for i in range(N) if moved[i]])
    # in pieces: one JSON text of N samples does not fit the heap beside the rigs
    for i in range(0, N, 250):
        print("TICKS " + json.dumps({{"state": name, "samples": list(samples[i:i + 250])}}))
    print("TICK " + json.dumps({{"state": name, "moving": moving}}))
    c = rig = pump = clock = motor = samples = moved = moving = None
    gc.collect()
"""

REQUEST_GUEST = """
import json, time
from tests import mp_link as L
cpu = time.ticks_cpu
diff = time.ticks_diff
rig, pump, link = L.bench()
serial = rig.serial
for label, data, answer in L.request_frames():
    if label == "bolus_auth":
        continue  # a replayed counter after the first: refused, not a request path
    L.xfer(rig, link, data)
    serial.take()
    samples = []
    for i in range({n}):
        serial.out_count = 0
        serial.send(data)
        t0 = cpu()
        link.poll()
        t1 = cpu()
        samples.append(diff(t1, t0))
    out = serial.take()
    print("REQ " + json.dumps({{"label": label, "samples": samples, "reply_bytes": len(out)}}))
"""

# Authenticated requests: a fresh counter for every request (a replayed one is refused),
# on the bench pump without a bolus running; the bolus started is cancelled between two
# requests, outside the measurement.
AUTH_GUEST = """
import json, time
from firmware import wire
from tests import mp_link as L
cpu = time.ticks_cpu
diff = time.ticks_diff
ID = wire.INDEX
def run(label, make, n):
    rig, pump, link = L.bench(bolus=False)
    serial = rig.serial
    frames = [make(i) for i in range(n)]
    samples = []
    for i in range(n):
        serial.out_count = 0
        serial.send(frames[i])
        t0 = cpu()
        link.poll()
        t1 = cpu()
        samples.append(diff(t1, t0))
        if label == "bolus_auth":
            pump.cancel_bolus()
    print("REQ " + json.dumps({{"label": label, "samples": samples,
                               "reply_bytes": serial.out_count}}))
run("status_auth", lambda i: wire.encode_frame(ID["status"], 23 + i, 0, [], key=L.KEY,
                                               counter=900 + i), {n})
run("bolus_auth", lambda i: wire.encode_frame(ID["bolus"], 23 + i, 0, [77 + i, 1, 100, 0, 0],
                                              key=L.KEY, counter=500 + i), {n})
"""

HEAP_GUEST = """
import gc, json, micropython
gc.collect()
r = {"empty": gc.mem_alloc()}
import firmware.main as fm
gc.collect()
r["firmware_imported"] = gc.mem_alloc()
from boards import qemu_arm
gc.collect()
r["board_imported"] = gc.mem_alloc()
hw = qemu_arm.make_hardware()
runner = fm.Runner(hw)
r["selftest"] = runner.boot()
runner.step()
runner.service()
gc.collect()
r["booted"] = gc.mem_alloc()
r["free"] = gc.mem_free()
print("HEAP " + json.dumps(r))
micropython.mem_info()
"""

# The firmware alone: boards/fakes.py drivers (a 256-byte serial buffer like a board's
# UART driver) and storage regions in the PSRAM (flash on a board: not heap), without the
# emulator's simulated parts and its 16 KB link buffers.
# The same boot with the firmware loaded from .mpy files (mpy-cross of the same MicroPython,
# -march=armv6m, pumpctl flash's MPY_OPT) on a filesystem, as on a Pico after the .mpy
# deploy (host_tools/flash.py): a read-only user VFS
# over an archive the host wrote into the board's PSRAM; import reads each file into RAM
# (io.BytesIO), as it would from LittleFS. The frozen copies are shadowed (sys.path[0]).
MPY_FS_GUEST = """
import gc, io, json, micropython, sys, uctypes, vfs
IDX = {index}
DIRS = {dirs}
class MpyFS:
    def mount(self, readonly, mkfs):
        pass
    def umount(self):
        pass
    def stat(self, path):
        if path in IDX:
            return (0x8000, 0, 0, 0, 0, 0, IDX[path][1], 0, 0, 0)
        if path in DIRS:
            return (0x4000, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        raise OSError(2)
    def open(self, path, mode):
        at, n = IDX[path]
        return io.BytesIO(bytes(uctypes.bytearray_at({base} + at, n)))
vfs.mount(MpyFS(), "/mpy")
sys.path.insert(0, "/mpy")
gc.collect()
r = {{"empty": gc.mem_alloc()}}
"""

HEAP_MIN_BOOT = """
import firmware.main as fm
from boards import fakes, qemu_layout
from firmware.hal import Hardware
gc.collect()
r["firmware_imported"] = gc.mem_alloc()
class Flash(fakes.Storage):
    def __init__(self):
        self.regions = []
        at = qemu_layout.FLASH_AT
        for size in fakes.REGION_SIZES:
            self.regions.append(uctypes.bytearray_at(at, size))
            at += size
        self.writes = 0
        self.cut_at = -1
        self.cut_mode = 0
        self.fail = False
        self.ok = True
line = fakes.Line()
hw = Hardware(fakes.Clock(), fakes.Motor(line), line, fakes.Battery(), fakes.Annunciator(),
              fakes.Buttons(), Flash(), fakes.Watchdog(), serial=fakes.Serial(256),
              key=bytes(32))
gc.collect()
r["drivers_built"] = gc.mem_alloc()
runner = fm.Runner(hw)
r["selftest"] = runner.boot()
runner.step()
runner.service()
gc.collect()
r["booted"] = gc.mem_alloc()
r["free"] = gc.mem_free()
print("HEAP " + json.dumps(r))
micropython.mem_info()
"""

HEAP_MIN_GUEST = """
import gc, json, micropython, uctypes
gc.collect()
r = {"empty": gc.mem_alloc()}
""" + HEAP_MIN_BOOT

# The same with the bench console on the protocol port (hw.shared_console), as the Pico
# and ESP32 boards build it (boards/drivers.py assemble): the port's Demux at boot; the
# Console itself only once a line is typed (issue 12). "typed": after one typed line.
HEAP_SHARED_GUEST = HEAP_MIN_GUEST.replace("key=bytes(32))", "key=bytes(32),\n"
                                           "              shared_console=True)")
HEAP_TYPED_GUEST = HEAP_SHARED_GUEST.replace(
    "runner.service()\n", "runner.service()\nhw.serial.send(b'\\x00status\\r')\n"
    "for i in range(3):\n    hw.clock.advance(100)\n    runner.step()\n    runner.service()\n")

FILL_GUEST = """
from boards import qemu_arm
from firmware.main import Runner
from protocol import spec as S
runner = Runner(qemu_arm.make_hardware())
runner.boot()
pump = runner.pump
h = pump.history
n = h.capacity + 2
bid = 1
while h.next_seq <= n:
    pump._log(S.H_BOLUS_START, S.BOLUS_NORMAL, bid, 1000, 0)
    pump._log(S.H_BOLUS_END, 0, bid, 1000, 1000)
    bid += 1
print("FILLED", h.capacity, h.next_seq - 1)
"""

BOOT_GUEST = """
import json, time
cpu = time.ticks_cpu
diff = time.ticks_diff
t_script = cpu()
from boards import qemu_arm
from firmware.main import Runner
t_imported = cpu()
hw = qemu_arm.make_hardware()
t_hardware = cpu()
feed = hw.watchdog.feed
# feeds: [first, last, longest gap between two feeds, count, first after Runner.boot]
feeds = [0, 0, 0, 0, 0]
booted = [False]
def timed_feed():
    t = cpu()
    if not feeds[3]:
        feeds[0] = t
    elif diff(t, feeds[1]) > feeds[2]:
        feeds[2] = diff(t, feeds[1])
    if booted[0] and not feeds[4]:
        feeds[4] = t
    feeds[1] = t
    feeds[3] += 1
    feed()
hw.watchdog.feed = timed_feed
runner = Runner(hw)
t_boot = cpu()
runner.boot()
t_booted = cpu()
booted[0] = True
runner.step()
print("BOOT " + json.dumps({"counts": feeds[0], "script": t_script,
                            "imported": t_imported, "hardware": t_hardware, "boot": t_boot,
                            "booted": t_booted, "first_tick_feed": feeds[4],
                            "max_gap": feeds[2], "feeds_in_boot": feeds[3] - 1,
                            "history_next": runner.pump.history.next_seq,
                            "history_first": runner.pump.history.first_seq}))
"""


def lines(out: str, tag: str) -> list:
    return [json.loads(ln[len(tag) + 1:]) for ln in out.splitlines() if ln.startswith(tag + " ")]


MS_COUNTS = 25000  # SysTick counts in 1 ms (25 MHz)


def stats(counts: list[int], overhead: int = 0) -> dict:
    s = sorted(c - overhead for c in counts)
    if not s:
        return {}
    n = len(s)
    rec = {"n": n, "median": s[n // 2] * INSN_PER_COUNT,
           "mean": round(sum(s) / n * INSN_PER_COUNT),
           "p99": s[n * 99 // 100] * INSN_PER_COUNT, "max": s[-1] * INSN_PER_COUNT}
    # The QEMU board's clock now and then reads exactly 1 ms off (tools/arm/qemu/
    # board_hal.c: qemu runs its timers between translation blocks), which turns a
    # ~20,000-instruction tick into ~1,020,000. No steady-state tick comes near 1 ms
    # (the longest, a tick raising alarms, is ~300,000), so such samples are counted and
    # the mean is also given with the 1 ms taken off them; "mean" keeps them as read.
    off = sum(1 for c in s if c >= MS_COUNTS)
    rec["clock_1ms_off"] = off
    rec["mean_clock_fixed"] = round((sum(s) - off * MS_COUNTS) / n * INSN_PER_COUNT)
    return rec


def tick_figures(tmp: Path) -> dict:
    out = Q.run_script(TICK_GUEST.format(ticks=TICKS, step=STEP_MS), state_dir=tmp / "tick")
    empty = lines(out, "EMPTY")[0]
    res = {"overhead_counts": empty, "step_ms": STEP_MS, "states": {}}
    samples: dict[str, list] = {}
    for rec in lines(out, "TICKS"):
        samples.setdefault(rec["state"], []).extend(rec["samples"])
    for rec in lines(out, "TICK"):
        res["states"][rec["state"]] = {"all": stats(samples[rec["state"]], empty),
                                       "moving": stats(rec["moving"], empty)}
    return res


def request_figures(tmp: Path, empty: int) -> dict:
    out = Q.run_script(REQUEST_GUEST.format(n=REQUESTS), state_dir=tmp / "req")
    return {rec["label"]: dict(stats(rec["samples"], empty), reply_bytes=rec["reply_bytes"])
            for rec in lines(out, "REQ")}


def auth_request_figures(tmp: Path, empty: int) -> dict:
    out = Q.run_script(AUTH_GUEST.format(n=21), state_dir=tmp / "auth")
    return {rec["label"]: dict(stats(rec["samples"], empty), reply_bytes=rec["reply_bytes"])
            for rec in lines(out, "REQ")}


def heap_figures(tmp: Path, guest: str = HEAP_GUEST) -> dict:
    return heap_figures_from(Q.run_script(guest, state_dir=tmp / "heap", image=Q.IMAGE))


def heap_figures_from(out: str) -> dict:
    rec = lines(out, "HEAP")[0]
    for ln in out.splitlines():
        if "max free sz:" in ln:
            rec["largest_free"] = int(ln.rsplit(":", 1)[1]) * GC_BLOCK
        if ln.startswith("GC: total:"):
            rec["heap_total"] = int(ln.split("total:")[1].split(",")[0])
    return rec


MPY_AT = 0x200000  # PSRAM offset of the .mpy archive (after the script area)
MPY_MODULES = [*sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "firmware").glob("*.py")),
               "protocol/__init__.py", "protocol/spec.py", "boards/__init__.py",
               "boards/fakes.py", "boards/qemu_layout.py"]


def mpy_flash(tmp: Path, name: str, steps: str) -> tuple[str, Path, int]:
    """The firmware's modules as ARMv6-M .mpy files in the board's flash (at MPY_AT) and
    the guest that imports them from there (MPY_FS_GUEST) before `steps`: (guest, state
    dir, archive bytes)."""
    mpy_cross = ROOT / "build/arm/mp/mpy-cross/build/mpy-cross"
    state = tmp / name
    state.mkdir()
    index, blob = {}, b""
    for src in MPY_MODULES:
        out = tmp / (name + "-files") / src.replace(".py", ".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), MPY_OPT, "-march=armv6m", "-o", str(out), src],
                       cwd=ROOT, check=True, capture_output=True)
        data = out.read_bytes()
        index["/" + src.replace(".py", ".mpy")] = (len(blob), len(data))
        blob += data + bytes(-len(data) % 4)
    flash = state / "flash.bin"
    Q.prepare_flash(flash, {"speed": 0, "jitter": 0, "seed": 1, "rng": 0})
    with open(flash, "r+b") as f:
        f.seek(MPY_AT)
        f.write(blob)
    dirs = sorted({"/" + src.split("/")[0] for src in MPY_MODULES})
    guest = MPY_FS_GUEST.format(index=repr(index), dirs=repr(dirs),
                                base=Q.L.PSRAM + MPY_AT) + steps
    return guest, state, len(blob)


# The same .mpy files in a ROMFS image (tools/arm/romfs.py, mpremote's format) in the
# board's PSRAM at ROMFS_AT, mounted as MicroPython's VfsRom at /rom: the import runs the
# bytecode and reads the strings in place (memory-mapped, like a ROMFS partition in a
# board's flash), so only the code objects, the qstr entries and the modules' own objects
# are in the heap.
ROMFS_GUEST = """
import gc, json, micropython, sys, uctypes, vfs
vfs.mount(vfs.VfsRom(uctypes.bytearray_at({base}, {size})), "/rom")
sys.path.insert(0, "/rom")
gc.collect()
r = {{"empty": gc.mem_alloc()}}
"""


def romfs_flash(tmp: Path, name: str, steps: str) -> tuple[str, Path, int]:
    """MPY_MODULES as ARMv6-M .mpy files (the same as mpy_flash's) in a ROMFS image at
    the board's ROMFS_AT, and the guest that imports them from there before `steps`:
    (guest, state dir, image bytes)."""
    from tools.arm import romfs

    state = tmp / name
    state.mkdir()
    data = romfs.image(romfs.compile_mpy(MPY_MODULES, tmp / (name + "-files")))
    flash = state / "flash.bin"
    Q.prepare_flash(flash, {"speed": 0, "jitter": 0, "seed": 1, "rng": 0})
    Q.write_romfs(flash, data)
    guest = ROMFS_GUEST.format(base=Q.L.ROMFS_AT, size=len(data)) + steps
    return guest, state, len(data)


def heap_from_romfs(tmp: Path) -> dict:
    """HEAP_MIN_BOOT with the modules imported from a ROMFS image (ROMFS_GUEST)."""
    guest, state, size = romfs_flash(tmp, "heap-romfs", HEAP_MIN_BOOT + """
print("FROM " + fm.__file__ + " " + sys.modules["firmware.pump"].__file__)
""")
    out = Q.run_script(guest, state_dir=state, image=Q.IMAGE)
    rec = heap_figures_from(out)
    rec["romfs_bytes"] = size
    rec["loaded_from"] = [ln[5:] for ln in out.splitlines() if ln.startswith("FROM ")]
    return rec


def heap_from_mpy(tmp: Path) -> dict:
    """HEAP_MIN_BOOT with the modules loaded from .mpy files (MPY_FS_GUEST)."""
    guest, state, size = mpy_flash(tmp, "heap-mpy", HEAP_MIN_BOOT + """
print("FROM " + fm.__file__ + " " + sys.modules["firmware.pump"].__file__)
""")
    out = Q.run_script(guest, state_dir=state, image=Q.IMAGE)
    rec = heap_figures_from(out)
    rec["mpy_bytes"] = size
    rec["loaded_from"] = [ln[5:] for ln in out.splitlines() if ln.startswith("FROM ")]
    return rec


def boot_figures(tmp: Path) -> dict:
    state = tmp / "boot"
    empty = lines(Q.run_script(BOOT_GUEST, state_dir=state, image=Q.IMAGE), "BOOT")[0]
    filled = Q.run_script(FILL_GUEST, state_dir=state, image=Q.IMAGE, timeout=1800)
    full = lines(Q.run_script(BOOT_GUEST, state_dir=state, image=Q.IMAGE), "BOOT")[0]
    for rec in (empty, full):
        # the first watchdog feed (the boot scans feed every SCAN_FEED records, so it can
        # come inside Runner.boot) and the longest time between two feeds up to the
        # first tick's: what a watchdog period must cover
        rec["insn"] = rec["counts"] * INSN_PER_COUNT
        rec["max_gap_insn"] = max(rec["max_gap"], rec["counts"]) * INSN_PER_COUNT
        # phases, instructions: reset to main.py's script, imports, drivers, Runner(),
        # Runner.boot (Pump.boot and the link), then to the first tick's feed
        marks = [0, rec["script"], rec["imported"], rec["hardware"], rec["boot"],
                 rec["booted"], rec["first_tick_feed"]]
        names = ("reset_to_main", "imports", "make_hardware", "runner", "boot", "first_tick")
        rec["phases"] = {names[i]: (marks[i + 1] - marks[i]) * INSN_PER_COUNT
                         for i in range(len(names))}
    return {"empty_history": empty, "full_history": full,
            "filled": [ln for ln in filled.splitlines() if ln.startswith("FILLED")]}


def image_figures() -> dict:
    out = {}
    for name, path in (("product", Q.IMAGE), ("test", Q.TEST_IMAGE),
                       ("frozen_modules", ROOT / "build/arm/build-qemu/frozen_content.o")):
        r = subprocess.run(["arm-none-eabi-size", str(path)], capture_output=True, text=True,
                           check=True)
        text, data, bss = (int(x) for x in r.stdout.splitlines()[1].split()[:3])
        out[name] = {"text": text, "data": data, "bss": bss}
    return out


def print_ticks(figs: dict) -> None:
    print("\ninstructions per tick (100 ms steps, heap locked)")
    print(f"{'state':16} {'median':>8} {'mean':>8} {'p99':>8} {'max':>8} {'moving med':>11}"
          f" {'1ms-off':>8} {'mean, fixed':>12}")
    for name, rec in figs["tick"]["states"].items():
        a, m = rec["all"], rec["moving"]
        print(f"{name:16} {a['median']:8} {a['mean']:8} {a['p99']:8} {a['max']:8} "
              f"{m.get('median', '-'):>11} {a['clock_1ms_off']:8} {a['mean_clock_fixed']:12}")


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--ticks-only", action="store_true", help="measure the ticks alone")
    args = p.parse_args(argv)
    figs = {}
    with tempfile.TemporaryDirectory(prefix="arm-bench-") as tmp:
        t = Path(tmp)
        print("tick costs ...", flush=True)
        figs["tick"] = tick_figures(t)
        if args.ticks_only:
            print_ticks(figs)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(figs, indent=1))
            return 0
        print("request costs ...", flush=True)
        figs["request"] = request_figures(t, figs["tick"]["overhead_counts"])
        figs["request"].update(auth_request_figures(t, figs["tick"]["overhead_counts"]))
        print("heap after boot ...", flush=True)
        figs["heap"] = heap_figures(t)
        figs["heap_firmware_only"] = heap_figures(t, HEAP_MIN_GUEST)
        figs["heap_firmware_only_mpy"] = heap_from_mpy(t)
        figs["heap_firmware_only_romfs"] = heap_from_romfs(t)
        figs["heap_shared_console"] = heap_figures(t, HEAP_SHARED_GUEST)
        figs["heap_shared_console_typed"] = heap_figures(t, HEAP_TYPED_GUEST)
        print("boot time ...", flush=True)
        figs["boot"] = boot_figures(t)
    figs["image"] = image_figures()
    print_ticks(figs)
    print("\ninstructions per request (Link.poll)")
    for label, rec in figs["request"].items():
        print(f"{label:16} {rec['median']:8} (reply {rec['reply_bytes']} bytes)")
    print("\nheap (bytes):", json.dumps(figs["heap"]))
    print("heap, firmware only (bytes):", json.dumps(figs["heap_firmware_only"]))
    print("heap, firmware only, from .mpy on a file system (bytes):",
          json.dumps(figs["heap_firmware_only_mpy"]))
    print("heap, firmware only, from .mpy in a ROMFS image (bytes):",
          json.dumps(figs["heap_firmware_only_romfs"]))
    print("heap, console on the protocol port (bytes):", json.dumps(figs["heap_shared_console"]))
    print("heap, ... after a typed line (bytes):", json.dumps(figs["heap_shared_console_typed"]))
    print("boot:", json.dumps(figs["boot"]))
    print("image:", json.dumps(figs["image"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
