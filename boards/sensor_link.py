"""The emulator's sensor link on a pty (SNS-4): the same bytes a board's sensor UART gets.

`pumpctl emulate --sensor` (host_tools/launch.py) opens a third pty and hands its master
side to boards/emulator.py (--sensor-in FD). Whatever a host writes to the pty's path
(`pumpctl sensor --port /dev/pts/N`, the HIL fixture `sensor`) is CGM Measurement records
framed as in firmware/cgm_link.py, read by the same CgmLink the boards use (pairing with
the sensor_id setting, statistics, pairing lost). The emulator's own trace and virtual
patient are then off; FAULT_GLUCOSE and FAULT_SENSOR_LOSS still act (boards/fakes.SensorLink).
Bytes written while the emulator is off (a power cut) wait in the pty.
"""

import select

from firmware.cgm_link import CgmLink

_POLLIN = select.POLLIN
_BAD = select.POLLHUP | select.POLLERR


class FdPort:
    """readinto(buf) on a non-blocking fd: what is there, 0 when nothing; allocation-free
    (ipoll, a preopened file)."""

    def __init__(self, fd):
        self.f = open(fd, "rb")  # the fd itself: /dev/fd/N of a pty master is a new pty
        self.poller = select.poll()
        self.poller.register(self.f, _POLLIN)

    def readinto(self, buf):
        for _obj, flags in self.poller.ipoll(0):
            if flags & _BAD or not flags & _POLLIN:
                return 0  # nobody holds the other side: nothing to read
            try:
                got = self.f.readinto(buf)
            except OSError:
                return 0
            return got if got else 0
        return 0


def sensor_radio_class(base, fd):
    """A subclass of the emulator's radio class `base` (boards/emulator.EmuRadio) whose
    readings come from the pty `fd` through CgmLink; the rest of the emulator (faults,
    telemetry, power cuts) sees the radio it knows."""

    class PtyRadio(base):
        def __init__(self, world, clock=None, trace=None, patient=None, pulse_mu=50):
            base.__init__(self, world, clock, None, None, pulse_mu)
            self.link = CgmLink(FdPort(fd), clock)
            self.paired = 0  # set by firmware/cgm.py at each poll (sensor_id)
            self.pairing_lost = 0
            self.foreign_id = 0
            self.stats = self.link.stats

        def read(self):
            link = self.link
            link.paired = self.paired
            v = link.read()
            self.pairing_lost = link.pairing_lost
            self.foreign_id = link.foreign_id
            return self.deliver(v)

    return PtyRadio
