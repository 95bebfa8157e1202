"""Unix-port board: the firmware on the MicroPython unix port, on real time.

    micropython boards/unix.py --state DIR [--pulse 50]

Normally started by `python -m host_tools.launch --state DIR`, which exposes the serial
link on a pty. Drivers:
- clock: time.ticks_ms() masked to 2**30 (the Pico's tick period), real sleeps;
- serial: stdin (read without blocking, via select.poll) and stdout, raw bytes. Nothing
  else may write to stdout; diagnostics go to stderr. End of input ends the process;
- storage: the regions in RAM, written through to DIR/flash.bin, followed by a small
  board area holding the simulated motor position and odometer and the battery level
  (in millionths of a percent), so killing the process is a power cut and the next start
  boots from what was saved;
- key: DIR/key, the 256-bit pairing key as 64 hex digits (or 32 raw bytes), created by
  host_tools.launch. Never printed.
Motor, line, battery, annunciator, buttons and watchdog are the simulated parts of
boards/fakes.py. This board has no emulator hook: emulator-only messages are refused
(SEC-3). The emulator board (boards/emulator.py, started by host_tools/launch.py) builds on
these drivers and adds the virtual clock, the drain and occlusion models, fault injection
and the bench console.
"""

import sys

# the repository root, so `firmware`, `boards` and `protocol` import as packages
sys.path.insert(0, (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/..")

import select  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

from boards.fakes import REGION_SIZES, Annunciator, Battery, Buttons, Line, Motor, Watchdog  # noqa: E402
from firmware import main  # noqa: E402
from firmware.hal import REGIONS, Hardware  # noqa: E402
from protocol.spec import BOARD_UNIX  # noqa: E402

BOARD_AREA = 16  # after the regions: motor position, odometer, battery level, magic
BOARD_FMT = "<iiiI"
BOARD_MAGIC = 0x324D5550  # "PUM2": battery level in millionths of a percent
BATTERY_UNIT = 1000000  # millionths of a percent per percent


class Clock:
    def ticks_ms(self):
        return time.ticks_ms() & 0x3FFFFFFF

    def sleep_ms(self, ms):
        time.sleep_ms(ms)


def region_layout(sizes=REGION_SIZES):
    """(offset of each region, offset of the board area, total bytes) of a flash image."""
    offsets = []
    total = 0
    for i in range(REGIONS):
        offsets.append(total)
        total += sizes[i]
    return offsets, total, total + BOARD_AREA


class FileStorage:
    """Flash regions in RAM, written through to one file (a killed process keeps them)."""

    def __init__(self, path, sizes=REGION_SIZES):
        self.offsets, self.board_at, total = region_layout(sizes)
        self.data = bytearray(b"\xff" * total)
        try:
            f = open(path, "rb")
            got = f.read(total)
            f.close()
            self.data[0:len(got)] = got
        except OSError:
            got = b""
        if len(got) != total:
            f = open(path, "wb")
            f.write(self.data)
            f.close()
        self.file = open(path, "r+b")
        self.sizes = sizes

    def size(self, region):
        return self.sizes[region]

    def read(self, region, offset, buf):
        # a loop, not a slice: midnight reads a day's totals inside the tick (no allocation)
        at = self.offsets[region] + offset
        data = self.data
        for i in range(len(buf)):
            buf[i] = data[at + i]

    def write(self, region, offset, buf):
        self._put(self.offsets[region] + offset, buf)

    def _put(self, at, buf):
        self.data[at:at + len(buf)] = buf
        f = self.file
        f.seek(at)
        f.write(buf)
        f.flush()

    def self_test(self):
        return True

    def load_board(self):
        """(motor position, odometer, battery in millionths of a percent) saved by a
        previous run, or None."""
        pos, odo, level, magic = struct.unpack_from(BOARD_FMT, self.data, self.board_at)
        return (pos, odo, level) if magic == BOARD_MAGIC else None

    def save_board(self, pos, odo, level):
        buf = bytearray(BOARD_AREA)
        struct.pack_into(BOARD_FMT, buf, 0, pos, odo, level, BOARD_MAGIC)
        self._put(self.board_at, buf)


class SavedMotor(Motor):
    """The simulated plunger, its position saved with every move (an encoder keeps it)."""

    def __init__(self, line, storage, battery):
        Motor.__init__(self, line)
        self.storage = storage
        self.battery = battery
        saved = storage.load_board()
        if saved is not None:
            self.pos, self.odometer, level = saved
            battery.level = level // BATTERY_UNIT

    def _save(self):
        self.storage.save_board(self.pos, self.odometer, self.battery.level * BATTERY_UNIT)

    def step(self, n):
        Motor.step(self, n)
        self._save()

    def rewind(self):
        Motor.rewind(self)
        self._save()


class StdioSerial:
    """Protocol bytes on stdin/stdout (binary). readinto never blocks."""

    def __init__(self):
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer
        self.poller = select.poll()
        self.poller.register(self.inp, select.POLLIN)
        self.one = bytearray(1)

    def readinto(self, buf):
        # FileIO.readinto blocks until buf is full, so read one byte per ready poll
        n = 0
        size = len(buf)
        while n < size and self.poller.poll(0):
            if self.inp.readinto(self.one) != 1:
                sys.exit(0)  # the host end closed: power off
            buf[n] = self.one[0]
            n += 1
        return n

    def wait(self, ms):
        return bool(self.poller.poll(ms))

    def write(self, buf, n):
        self.out.write(buf, n)


def read_key(path):
    f = open(path, "rb")
    data = f.read()
    f.close()
    if len(data) == 32:
        return data
    text = data.decode().strip()
    if len(text) != 64:
        raise ValueError("key file: expected 64 hex digits or 32 raw bytes")
    return bytes(int(text[i:i + 2], 16) for i in range(0, 64, 2))


def make_hardware(state_dir, pulse_mu=50):
    storage = FileStorage(state_dir + "/flash.bin")
    line = Line()
    battery = Battery()
    motor = SavedMotor(line, storage, battery)
    return Hardware(Clock(), motor, line, battery, Annunciator(), Buttons(), storage,
                    Watchdog(), serial=StdioSerial(), pulse_mu=pulse_mu,
                    key=read_key(state_dir + "/key"), board=BOARD_UNIX)


def parse_options(argv, opts):
    """`--name value` arguments of a board on the unix port (this one and
    boards/emulator.py): opts maps each name to its default text (None: not given);
    --state DIR is required, --pulse is 10, 25 or 50. Returns (opts filled in, pulse)."""
    opts = dict(opts)
    i = 0
    while i < len(argv):
        if argv[i] in opts and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            raise ValueError("unknown argument " + argv[i])
    if opts["--state"] is None:
        raise ValueError("--state DIR is required")
    pulse = int(opts["--pulse"])
    if pulse not in (10, 25, 50):
        raise ValueError("--pulse must be 10, 25 or 50")
    return opts, pulse


def parse_args(argv):
    opts, pulse = parse_options(argv, {"--state": None, "--pulse": "50"})
    return opts["--state"], pulse


def start(argv):
    try:
        state, pulse = parse_args(argv)
        hw = make_hardware(state, pulse)
    except (ValueError, OSError) as exc:
        sys.stderr.write("boards/unix.py: {}\n".format(exc))
        sys.exit(2)
    main.run(hw)


if __name__ == "__main__":
    start(sys.argv[1:])
