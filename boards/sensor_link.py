"""The simulated boards' sensor link (SNS-4): the same bytes a board's sensor UART gets.

`pumpctl emulate --sensor` (host_tools/launch.py) opens a third pty and hands its master
side to boards/emulator.py (--sensor-in FD, read through `FdPort`); the QEMU ARM board
reads the same kind of pty through its second UART (boards/qemu_arm.py `CmsdkUart`,
tools/arm/qemu.py --sensor). Whatever a host writes to the pty's path (`pumpctl sensor
--port /dev/pts/N`, the HIL fixture `sensor`) is CGM Measurement records framed as in
firmware/cgm_link.py, read by the same CgmLink the boards use (pairing with the sensor_id
setting, statistics, pairing lost). The emulator's own trace and virtual patient are then
off; FAULT_GLUCOSE and FAULT_SENSOR_LOSS still act (boards/fakes.SensorLink). Bytes
written while the board is off (a power cut) wait in the pty.
"""

from firmware.cgm_link import CgmLink


class FdPort:
    """readinto(buf) on a non-blocking fd (the launcher made the pty master non-blocking):
    what is there, 0 when nothing. Allocation-free: MicroPython's readinto answers None
    for EAGAIN instead of raising, and no poll object (whose ipoll allocates a tuple per
    call) is involved. The launcher keeps the pty's other side open, so reads never fail
    with EIO; should one fail anyway, the link just hears nothing."""

    def __init__(self, fd):
        self.f = open(fd, "rb")  # the fd itself: /dev/fd/N of a pty master is a new pty

    def readinto(self, buf):
        try:
            got = self.f.readinto(buf)
        except OSError:
            return 0
        return got if got else 0


def sensor_radio_class(base, port):
    """A subclass of the emulator's radio class `base` (boards/emu_parts.EmuRadio) whose
    readings come from `port` (readinto(buf) -> count, never blocks: `FdPort` on a pty, a
    board's UART) through CgmLink; the rest of the emulator (faults, telemetry, power cuts)
    sees the radio it knows."""

    class PtyRadio(base):
        def __init__(self, world, clock=None, trace=None, patient=None, pulse_mu=50):
            base.__init__(self, world, clock, None, None, pulse_mu)
            self.link = CgmLink(port, clock)
            self.paired = 0  # set by firmware/cgm.py at each poll (sensor_id)
            self.pairing_lost = 0
            self.foreign_id = 0
            self.stats = self.link.stats
            self.order_for = 0
            self.last_offset = -1
            self.sensor_min = -1  # an injected reading (FAULT_GLUCOSE) has no sensor time

        def read(self):
            link = self.link
            link.paired = self.paired
            injected = self.pending
            v = link.read()
            self.pairing_lost = link.pairing_lost
            self.foreign_id = link.foreign_id
            self.order_for = link.order_for
            self.last_offset = link.last_offset
            self.sensor_min = -1 if injected else link.sensor_min
            return self.deliver(v)

        def restore_order(self, tx, offset):
            self.link.restore_order(tx, offset)
            self.order_for = tx
            self.last_offset = offset

    return PtyRadio
