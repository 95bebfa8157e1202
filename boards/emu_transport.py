"""Emulator board, part 5: the transport, every byte stream between this process and the
launcher (host_tools/launch.py puts them on ptys and pipes):
- EmuSerial: the protocol link on stdin/stdout, with dropped and corrupted frames;
- QueryView: what the link reads during an ADVANCE (query frames only);
- ConsolePort: the bench console's text (two pipe fds, the launcher's second pty);
- PatientPipe: the virtual patient's exchange (two pipe fds, host_tools/patient.py);
- TelemetryPort: one JSON line a second for `pumpctl emulate`.
A new port (fd) belongs here."""

import select
import sys

from firmware.crc import crc16
from firmware.wire import COBS_MAX, Decoder
from protocol import spec as S

RX_SIZE = 16384
HOLD_SIZE = COBS_MAX + 16


class EmuSerial:
    """The protocol link on stdin/stdout, with dropped and corrupted frames (per mille, from
    the seeded random numbers) in both directions. readinto never blocks."""

    def __init__(self, board, world, clock, console_in=None, read_chunk=1):
        self.board = board
        self.world = world
        self.clock = clock
        self.rng = world.rng
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer
        self.in_poll = select.poll()
        self.in_poll.register(self.inp, select.POLLIN)
        self.all_poll = select.poll()
        self.all_poll.register(self.inp, select.POLLIN)
        if console_in is not None:
            self.all_poll.register(console_in, select.POLLIN)
        # bytes per read: 1 on a blocking stdin (the QEMU board's UART); up to READ_CHUNK
        # where the launcher made stdin a non-blocking pipe (host_tools/launch.py READ_CHUNK)
        self.chunk = bytearray(read_chunk)
        self.rx = bytearray(RX_SIZE)  # bytes ready for the firmware
        self.rx_at = 0
        self.rx_n = 0
        self.hold = bytearray(HOLD_SIZE)  # a frame held back while RX faults are on
        self.hold_n = 0
        self.tx = bytearray(HOLD_SIZE)
        self.lost = 0  # bytes lost to a full buffer
        self.dropped_rx = 0
        self.dropped_tx = 0
        self.corrupted_rx = 0
        self.corrupted_tx = 0
        self.load_faults()
        self.dec = Decoder()
        self.work = bytearray(RX_SIZE)

    def load_faults(self):
        w = self.world
        self.drop_rx = w.get("drop_rx")
        self.drop_tx = w.get("drop_tx")
        self.corrupt_rx = w.get("corrupt_rx")
        self.corrupt_tx = w.get("corrupt_tx")

    # ------------------------------------------------------------------ receive
    def _pull(self):
        """Move what stdin has into rx, through the RX faults."""
        poll = self.in_poll.poll
        chunk = self.chunk
        inp = self.inp
        while poll(0):
            n = inp.readinto(chunk)  # what is there, up to len(chunk); None: nothing yet
            if n is None:
                return
            if not n:
                sys.exit(0)  # the host end closed: power off
            if self.hold_n or self.drop_rx or self.corrupt_rx:
                for i in range(n):
                    self._hold(chunk[i])
            else:
                self._rx_add(chunk, 0, n)

    def _rx_add1(self, b):
        if self.rx_n == RX_SIZE:
            self._compact()
            if self.rx_n == RX_SIZE:
                self.lost += 1
                return
        self.rx[self.rx_n] = b
        self.rx_n += 1

    def _rx_add(self, buf, start, end):
        for i in range(start, end):
            self._rx_add1(buf[i])

    def _compact(self):
        at = self.rx_at
        if not at:
            return
        rx = self.rx
        n = self.rx_n - at
        for i in range(n):
            rx[i] = rx[at + i]
        self.rx_at = 0
        self.rx_n = n

    def _hold(self, b):
        hold = self.hold
        if self.hold_n == HOLD_SIZE:  # too long for a frame: let it through as it is
            self._rx_add(hold, 0, self.hold_n)
            self.hold_n = 0
        hold[self.hold_n] = b
        self.hold_n += 1
        if b:
            return
        n = self.hold_n
        self.hold_n = 0
        if n > 1:
            rng = self.rng
            if rng.below(1000) < self.drop_rx:
                self.dropped_rx += 1
                return
            if rng.below(1000) < self.corrupt_rx:
                self.corrupted_rx += 1
                self._flip(hold, n)
        self._rx_add(hold, 0, n)

    def _flip(self, buf, n):
        """Change one byte before the delimiter (never into 0x00: framing stays intact)."""
        rng = self.rng
        i = rng.below(n - 1)
        mask = 1 + rng.below(255)
        v = buf[i] ^ mask
        if v == 0:
            v = buf[i] ^ (mask ^ 0x80)
        buf[i] = v

    def readinto(self, buf):
        clock = self.clock
        if clock.cut_at >= 0 and clock.elapsed >= clock.cut_at:
            return 0  # the power is going: nothing more is read (the answer went out)
        self._pull()
        n = self.rx_n - self.rx_at
        if n <= 0:
            return 0
        size = len(buf)
        if n > size:
            n = size
        rx = self.rx
        at = self.rx_at
        for i in range(n):
            buf[i] = rx[at + i]
        at += n
        if at == self.rx_n:
            self.rx_at = 0
            self.rx_n = 0
        else:
            self.rx_at = at
        return n

    def wait(self, ms):
        """Block up to `ms` of virtual time for input (at most WAIT_CAP_MS of real time)."""
        if self.rx_n > self.rx_at:
            return True
        self.board.emulator.idle()
        return bool(self.all_poll.poll(self.clock.real_ms(ms)))

    # ------------------------------------------------------------------ send
    def write(self, buf, n):
        if n > 1 and (self.drop_tx or self.corrupt_tx):
            rng = self.rng
            if rng.below(1000) < self.drop_tx:
                self.dropped_tx += 1
                return n
            if rng.below(1000) < self.corrupt_tx:
                self.corrupted_tx += 1
                tx = self.tx
                for i in range(n):
                    tx[i] = buf[i]
                self._flip(tx, n)
                buf = tx
        self.out.write(buf, n)
        return n

    # ------------------------------------------------------------------ during an ADVANCE
    def split_queries(self, view):
        """Move the complete query frames waiting in rx into `view`; everything else
        (commands, partial or bad frames) stays in rx, in order, for after the ADVANCE."""
        self._pull()
        n = self.rx_n - self.rx_at
        view.at = 0
        view.n = 0
        if n <= 0:
            return
        work = self.work
        rx = self.rx
        at = self.rx_at
        for i in range(n):
            work[i] = rx[at + i]
        self.rx_at = 0
        self.rx_n = 0
        dec = self.dec
        dec.reset()
        start = 0
        i = 0
        while i < n:
            i = dec.feed(work, i, n)
            if not dec.done:
                break
            dec.done = False
            size = dec.size
            buf = dec.buf
            if (size >= S.HEADER_SIZE + S.CRC_SIZE and buf[4] < S.CMD_FIRST
                    and crc16(buf, 0, size - 2) == buf[size - 2] | (buf[size - 1] << 8)):
                view.add(work, start, i)
            else:
                self._rx_add(work, start, i)
            start = i
        self._rx_add(work, start, n)  # a partial frame: it completes later


class QueryView:
    """What the link reads during an ADVANCE: complete query frames only. Answers go out
    through the real serial driver."""

    def __init__(self, serial):
        self.serial = serial
        self.data = bytearray(RX_SIZE)
        self.at = 0
        self.n = 0

    def add(self, src, start, end):
        data = self.data
        for i in range(start, end):
            if self.n < RX_SIZE:
                data[self.n] = src[i]
                self.n += 1

    def readinto(self, buf):
        n = self.n - self.at
        if n > len(buf):
            n = len(buf)
        data = self.data
        at = self.at
        for i in range(n):
            buf[i] = data[at + i]
        self.at = at + n
        return n

    def write(self, buf, n):
        return self.serial.write(buf, n)


class ConsolePort:
    """The bench console: text in on one pipe, out on another (the launcher's pty)."""

    def __init__(self, fd_in, fd_out):
        self.inp = open("/dev/fd/%d" % fd_in, "rb")
        self.out = open("/dev/fd/%d" % fd_out, "wb")
        self.poll = select.poll()
        self.poll.register(self.inp, select.POLLIN)
        self.one = bytearray(1)
        self.closed = False

    def readinto(self, buf):
        n = 0
        size = len(buf)
        while n < size and not self.closed and self.poll.poll(0):
            if self.inp.readinto(self.one) != 1:
                self.closed = True  # the launcher went away
                self.poll.unregister(self.inp)
                break
            buf[n] = self.one[0]
            n += 1
        return n

    def write(self, buf, n):
        try:
            self.out.write(buf, n)
        except OSError:
            pass


class PatientPipe:
    """The virtual patient (host_tools/patient.py, hosted by the launcher) on two pipes:
    (minute, insulin mU) out as struct "<ii", the CGM value in mg/dL (0: none) back as
    "<i". Allocation-free (preallocated buffers), so heap-checked ticks may run it."""

    def __init__(self, fd_out, fd_in):
        self.out = open("/dev/fd/%d" % fd_out, "wb")
        self.inp = open("/dev/fd/%d" % fd_in, "rb")
        self.req = bytearray(8)
        self.ans = bytearray(4)
        self.ans_mv = memoryview(self.ans)

    def exchange(self, minute, mu):
        """Send (minute, mu), block until the launcher answers; 0 if it went away."""
        req = self.req
        for i in range(4):
            req[i] = (minute >> (8 * i)) & 0xFF
            req[4 + i] = (mu >> (8 * i)) & 0xFF
        ans = self.ans
        try:
            self.out.write(req)
            got = self.inp.readinto(ans)
            while got and got < 4:  # a short read (never seen with 4 bytes on a pipe)
                n = self.inp.readinto(self.ans_mv[got:])
                got = got + n if n else 0
        except OSError:
            return 0
        if got != 4:
            return 0  # the launcher went away: no reading
        v = ans[0] | ans[1] << 8 | ans[2] << 16 | ans[3] << 24
        return v - (1 << 32) if v & 0x80000000 else v


class TelemetryPort:
    """Telemetry lines (JSON, one a second) on a pipe the launcher reads."""

    def __init__(self, fd):
        self.out = open("/dev/fd/%d" % fd, "w")

    def send(self, line):
        """Write one line; False when the reader has gone (stop sending)."""
        try:
            self.out.write(line + "\n")
        except OSError:
            return False
        return True
