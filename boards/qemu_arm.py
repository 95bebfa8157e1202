"""QEMU ARM board (HW-4): the firmware, frozen into MicroPython's bare-metal QEMU port
built for ARMv6-M (tools/arm/qemu), on qemu-system-arm's mps2-an385 machine.

It carries the emulator board's simulated parts (boards/emulator.py and its emu_*.py
modules: plunger and
reservoir, battery drain, line pressure and occlusion, buttons, sensor link, buzzer/LED,
virtual clock with lockstep, fault injection, power cuts, watchdog) and differs only where
a bare-metal board must:
- serial: the protocol on UART0 (sys.stdin.buffer / sys.stdout.buffer, polled with
  select), which qemu puts on the launcher's pipe (tools/arm/qemu.py gives it a pty);
- storage and world: no files, but the PSRAM that qemu maps onto DIR/flash.bin
  (boards/qemu_layout.py), so flash, the plunger position and the world survive a power
  cut like on the emulator board;
- key, reset cause, pulse size: provisioned in the control area by the launcher;
- power cut and watchdog: the exit status goes into the control area, the firmware ends,
  qemu exits with that status, the launcher starts it again;
- sensor link (SNS-4): when the launcher connects the second UART (UART1) to a pty
  (tools/arm/qemu.py --sensor; control word C_SENSOR), CGM Measurement records arrive
  there and go through the same CgmLink as on the emulator and the boards
  (boards/sensor_link.py), read by `CmsdkUart` (polled registers, no interrupts);
- no second console port and no telemetry (UART0 is the only protocol port; it carries the
  bench console beside the frames, firmware/demux.py).
"""

import time

import machine
import uctypes

from boards import emulator
from boards import qemu_layout as L
from boards.emu_parts import EmuStorage
from boards.emu_world import Board, World
from boards.fakes import REGION_SIZES
from boards.unix import region_layout
from firmware import main as fw_main
from protocol import spec as S


class MemWorld(World):
    """The emulator's world, its JSON in the board's persistent memory."""

    def __init__(self):
        World.__init__(self, "qemu")

    def load(self):
        n = machine.mem32[L.WORLD_AT]
        if not 0 < n <= L.WORLD_MAX:
            raise ValueError("no world")
        return bytes(uctypes.bytearray_at(L.WORLD_AT + 4, n))

    def store(self, text):
        data = text.encode()
        n = len(data)
        if n > L.WORLD_MAX:
            raise OSError(28)  # ENOSPC
        uctypes.bytearray_at(L.WORLD_AT + 4, n)[:] = data
        machine.mem32[L.WORLD_AT] = n


class MemBoard(Board):
    def die(self, code):
        machine.mem32[L.CONTROL_AT + L.C_EXIT] = code
        Board.die(self, code)  # persists, then SystemExit ends main.py and qemu


class MemStorage(EmuStorage):
    """The flash regions in persistent memory, with the emulator's injected failures."""

    def __init__(self, world):
        self.offsets, self.board_at, total = region_layout(REGION_SIZES)
        self.sizes = REGION_SIZES
        self.data = uctypes.bytearray_at(L.FLASH_AT, total)
        self.world = world
        self.fail = world.get("storage_fail")

    def put(self, at, buf):
        data = self.data
        for i in range(len(buf)):
            data[at + i] = buf[i]


class CmsdkUart:
    """Receive side of a CMSDK APB UART (mps2-an385's UART1, the sensor link), polled:
    readinto(buf) -> bytes read, 0 when none waits; never blocks for long, allocates
    nothing (the register addresses are ints made once, here). A burst is read whole:
    after a byte, it waits up to GAP_US for the next one, so a frame that is arriving is
    taken at one poll (the UART holds one byte; qemu hands over the next one a few
    hundred microseconds after the last was read). The pump never transmits here."""

    GAP_US = 5000  # silence that ends a burst (a byte lasts 87 us at 115200 baud)

    def __init__(self, base=L.UART1):
        self.data = base
        self.state = base + 4
        machine.mem32[base + 0x10] = L.UART_BAUDDIV_115200
        machine.mem32[base + 8] = L.UART_CTRL_RX_EN

    def readinto(self, buf):
        mem = machine.mem32
        state = self.state
        if not mem[state] & L.UART_STATE_RXFULL:
            return 0
        data = self.data
        size = len(buf)
        n = 0
        last = time.ticks_us()
        while n < size:
            if mem[state] & L.UART_STATE_RXFULL:
                buf[n] = mem[data] & 0xFF
                n += 1
                last = time.ticks_us()
            elif time.ticks_diff(time.ticks_us(), last) > self.GAP_US:
                break
        return n


def control(offset):
    return machine.mem32[L.CONTROL_AT + offset]


def make_hardware():
    if control(L.C_MAGIC) != L.CONTROL_MAGIC:
        raise ValueError("not provisioned: start the board with tools/arm/qemu.py")
    world = MemWorld()
    return emulator.make_hardware(
        "qemu", pulse_mu=control(L.C_PULSE), reset_cause=control(L.C_RESET), world=world,
        board=MemBoard("qemu", world), storage=MemStorage(world),
        key=bytes(uctypes.bytearray_at(L.CONTROL_AT + L.C_KEY, 32)), board_id=S.BOARD_QEMU_ARM,
        sensor_port=CmsdkUart() if control(L.C_SENSOR) == 1 else None)


def main():
    machine.mem32[L.CONTROL_AT + L.C_EXIT] = L.EXIT_CRASH  # until a power cut says otherwise
    try:
        hw = make_hardware()
    except ValueError as exc:
        print("boards/qemu_arm.py:", exc)
        return
    fw_main.run(hw)
