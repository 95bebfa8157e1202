# The QEMU board's main (frozen; ports/qemu's main.c runs it at boot, see
# micropython-qemu.patch): the pump on boards/qemu_arm.py, never a REPL. In MODE_SCRIPT
# (tools/arm/qemu.py run_script, for measurements) it runs the launcher's script instead,
# before anything else is imported, so heap figures start from an empty heap.
import machine

from boards import qemu_layout as L

if machine.mem32[L.CONTROL_AT + L.C_MODE] == L.MODE_SCRIPT:
    import sys

    import uctypes

    machine.mem32[L.CONTROL_AT + L.C_EXIT] = L.EXIT_CRASH
    try:
        exec(bytes(uctypes.bytearray_at(L.SCRIPT_AT + 4, machine.mem32[L.SCRIPT_AT])),
             {"__name__": "__main__"})
        machine.mem32[L.CONTROL_AT + L.C_EXIT] = 0
    except Exception as exc:
        sys.print_exception(exc)
else:
    from boards import qemu_arm

    qemu_arm.main()
