# ruff: noqa: F821  (include/freeze/package/module come from MicroPython's manifest runner)
# The Pico image (HW-4): MicroPython's own rp2 modules, then the pump firmware, the wire
# protocol table, the board and its drivers, and the board's main (pump_main), frozen.
# $(BOARD_DIR) is build/arm/pico-board (tools/arm/build.sh); the repository root is
# three levels up.
ROOT = "$(BOARD_DIR)/../../.."

# rp2's own modules (_boot.py mounts the flash filesystem) and asyncio, as the port's
# boards/manifest.py has them; its require()d drivers (onewire, dht, neopixel) are left out:
# Debian's source ships micropython-lib without them, and the pump does not use them.
freeze("$(PORT_DIR)/modules")
include("$(MPY_DIR)/extmod/asyncio")
package("firmware", base_path=ROOT)
package("protocol", files=("__init__.py", "spec.py", "refusals.py"), base_path=ROOT)
package("boards", files=("__init__.py", "drivers.py", "pico.py"), base_path=ROOT)
module("pump_main.py", base_path="$(BOARD_DIR)")
