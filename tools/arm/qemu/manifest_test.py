# ruff: noqa: F821  (include/package come from MicroPython's manifest runner)
# The QEMU board's test image: the product image (manifest.py) plus the in-guest test
# scenarios (tests/mp_scenarios.py, tests/mp_link.py), so the allocation-free tick check
# and the cost measurements run on ARM without compiling their source on a 192 KiB heap.
include("$(BOARD_DIR)/manifest.py")
package("tests", files=("__init__.py", "mp_scenarios.py", "mp_link.py", "mp_native.py"),
        base_path="$(BOARD_DIR)/../../..")
