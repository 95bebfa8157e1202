"""The allocation-free tick on real 32-bit ARM MicroPython (HW-4): tests/mp_scenarios.py,
frozen into the QEMU board's test image (build/qemu-arm/micropump-test.elf), runs every
delivery state's ticks under micropython.heap_lock() on qemu-system-arm, exactly as
tests/test_alloc_free.py does on the unix port and on wasm, with the same checks: no tick
raised MemoryError, the in-guest checks passed, progress equals CPython's numbers.

Needs the image (`make firmware BOARD=qemu-arm`, which `make test` runs first) and
qemu-system-arm; skipped, saying so, without them.
"""

import functools

import pytest

from tests import mp_scenarios as M
from tests.test_alloc_free import FIXED, SELFTEST_REQS, STATE_REQS, cpython, parse
from tools.arm import qemu as Q

ARM_TICKS = 2000  # like the unix port: ~34 min of board time per state


def _image_or_skip():
    try:
        Q.find_image(Q.TEST_IMAGE)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@functools.cache
def arm_results(tmp):
    out = Q.run_script(f"from tests.mp_scenarios import main_alloc\nmain_alloc({ARM_TICKS})\n",
                       state_dir=tmp, icount=False)
    return parse(out)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    _image_or_skip()
    return arm_results(str(tmp_path_factory.mktemp("arm-alloc")))


@pytest.mark.parametrize("state", [pytest.param(s, marks=pytest.mark.req(*STATE_REQS[s], "HW-4"))
                                   for s in STATE_REQS])
def test_tick_allocates_nothing_on_arm(results, state):
    got = results[state]
    assert got["locked"] is True
    assert got["status"] == "ok", got
    assert got["fails"] == 0, f"MemoryError in locked tick {got['first']}: {got}"
    assert got["ticks"] == ARM_TICKS
    assert got["values"] == cpython(state, ARM_TICKS)["values"]
    for key, value in FIXED.get(state, {}).items():
        assert got["values"][key] == value, key


@pytest.mark.parametrize("state", [pytest.param(s, marks=pytest.mark.req(*SELFTEST_REQS, "HW-4"))
                                   for s in M.SELFTESTS])
def test_checker_reports_an_added_allocation_on_arm(results, state):
    """The checker's self-test on ARM: a patched tick that allocates (a list, a float, a
    bound method, an int above 2**30: 32-bit, so a big int) fails every locked tick."""
    got = results[state]
    assert got["locked"] is True
    assert got["status"] == "ok", got
    assert got["fails"] == got["ticks"] == ARM_TICKS
    assert got["first"] == 0
