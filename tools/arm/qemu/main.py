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
    if machine.mem32[L.ROMFS_AT] & 0xFFFFFF == 0x31CDD2:  # b"\xd2\xcd\x31": a ROMFS image
        # the .mpy deployment (tools/arm/romfs.py): its modules come before the frozen
        # ones and run in place; `boards` (imported above, frozen) is imported again from
        # there, so its submodules are looked up in the image too
        import sys

        import uctypes
        import vfs

        vfs.mount(vfs.VfsRom(uctypes.bytearray_at(L.ROMFS_AT, L.ROMFS_MAX)), "/rom")
        sys.path.insert(0, "/rom")
        del sys.modules["boards.qemu_layout"]
        del sys.modules["boards"]
    from boards import qemu_arm

    qemu_arm.main()
