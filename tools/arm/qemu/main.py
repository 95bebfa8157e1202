# The QEMU board's main (frozen; ports/qemu's main.c runs it at boot, see
# micropython-qemu.patch): the pump on boards/qemu_arm.py, never a REPL.
from boards import qemu_arm

qemu_arm.main()
