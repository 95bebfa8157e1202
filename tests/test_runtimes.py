"""The MicroPython runners that other tests use work, and show the facts tests rely on."""

import pytest

from tests.runtimes import REPO_ROOT, GuestError, run_unix, run_wasm

pytestmark = pytest.mark.req("HW-3")


def test_unix_port_runs_code():
    out = run_unix("import sys\nprint(sys.implementation.name)\n")
    assert out.strip() == "micropython"


def test_unix_port_has_repo_root_on_path():
    out = run_unix("import sys\nprint(sys.path)\n")
    assert str(REPO_ROOT) in out


# In a function: storing a new module global could itself need an allocation under the lock.
HEAP_LOCK_PROBE = """
import micropython

def probe():
    micropython.heap_lock()
    try:
        bytearray(64)
        return "allocated"
    except MemoryError:
        return "MemoryError"
    finally:
        micropython.heap_unlock()

print(probe())
"""


def test_unix_port_heap_lock_raises_memory_error():
    assert run_unix(HEAP_LOCK_PROBE).strip() == "MemoryError"


def test_unix_port_guest_exception_surfaces():
    with pytest.raises(GuestError, match="ValueError: unix guest boom"):
        run_unix("def f():\n    raise ValueError('unix guest boom')\nf()\n")


def test_wasm_runs_code_and_reports_fuel():
    result = run_wasm("print(6 * 7)\n")
    assert result.stdout.strip() == "42"
    assert result.fuel_used > 0


def test_wasm_fuel_is_deterministic():
    code = "total = 0\nfor i in range(1000):\n    total += i\nprint(total)\n"
    first, second = run_wasm(code), run_wasm(code)
    assert first.stdout.strip() == "499500"
    assert first.fuel_used == second.fuel_used


def test_wasm_is_32_bit_like_the_boards():
    code = "import sys, time\nprint(sys.maxsize)\nprint(time.ticks_add(0, -1))\n"
    maxsize, ticks_max = run_wasm(code).stdout.split()
    assert int(maxsize) == 2**31 - 1
    assert int(ticks_max) == 2**30 - 1


def test_wasm_heap_lock_raises_memory_error():
    assert run_wasm(HEAP_LOCK_PROBE).stdout.strip() == "MemoryError"


def test_wasm_mounts_repo_packages():
    code = "import os\nprint(sorted(os.listdir('/input')))\nimport protocol\nprint('ok')\n"
    out = run_wasm(code).stdout
    assert "'protocol'" in out
    assert out.rstrip().endswith("ok")


def test_wasm_guest_exception_surfaces_with_traceback():
    code = "print('before')\ndef f():\n    raise ValueError('wasm guest boom')\nf()\n"
    with pytest.raises(GuestError) as info:
        run_wasm(code)
    text = str(info.value)
    assert "ValueError: wasm guest boom" in text
    assert "line 3, in f" in text  # line numbers are those of the guest code
    assert "before" in text


def test_wasm_guest_failing_under_heap_lock_still_surfaces():
    code = "import micropython\nmicropython.heap_lock()\nx = [1, 2, 3]\n"
    with pytest.raises(GuestError, match="MemoryError: memory allocation failed, heap is locked"):
        run_wasm(code)


def test_unix_port_guest_failing_under_heap_lock_still_surfaces():
    code = "import micropython\nmicropython.heap_lock()\nx = [1, 2, 3]\n"
    with pytest.raises(GuestError, match="heap is locked"):
        run_unix(code)


def test_wasm_running_out_of_fuel_is_an_error():
    with pytest.raises(GuestError, match="fuel"):
        run_wasm("while True:\n    pass\n", fuel=5_000_000)
