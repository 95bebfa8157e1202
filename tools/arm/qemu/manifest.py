# ruff: noqa: F821  (freeze/package/module come from MicroPython's manifest runner)
# micropump's QEMU board: what is frozen into the image (bytecode in flash, HW-4).
# $(BOARD_DIR) is tools/arm/qemu; the repository root is three levels up.
ROOT = "$(BOARD_DIR)/../../.."

package("firmware", base_path=ROOT)
package("protocol", files=("__init__.py", "spec.py", "refusals.py"), base_path=ROOT)
# the board and the emulator's simulated parts it reuses
package("boards", files=("__init__.py", "fakes.py", "unix.py", "emulator.py", "emu_world.py",
                         "emu_clock.py", "emu_parts.py", "emu_faults.py", "emu_transport.py",
                         "emu_control.py", "sensor_link.py", "qemu_layout.py", "qemu_arm.py"),
        base_path=ROOT)
module("main.py", base_path="$(BOARD_DIR)")
