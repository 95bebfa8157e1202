"""A fake `machine` module for tests of boards/ on CPython and the MicroPython unix port.

Install it as `machine` before importing a board (`sys.modules["machine"] = fake_machine`)
and call reset_all() between tests. Pin levels, ADC readings and step counts live in
class-level dicts keyed by pin id, so a test can set an input (Pin.levels[14] = 0) or
read what the driver did (Pin.rises[2]) without holding the driver's Pin objects.
"""

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_reset_cause = [PWRON_RESET]
resets = [0]  # machine.reset() calls


def reset_cause():
    return _reset_cause[0]


def set_reset_cause(cause):
    _reset_cause[0] = cause


def reset():
    resets[0] += 1


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    levels = {}  # id -> level seen by value() (inputs set by tests, outputs by drivers)
    rises = {}  # id -> rising edges written (STEP pulses)
    writes = {}  # id -> list of levels written, for pins listed in `traced`
    traced = set()
    hooks = {}  # id -> function(level) called on every write (e.g. a home switch model)

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        if id not in Pin.levels:
            Pin.levels[id] = 1 if pull == Pin.PULL_UP else 0
        if id not in Pin.rises:
            Pin.rises[id] = 0  # created now: counting later does not grow the dict
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return Pin.levels[self.id]
        v = 1 if v else 0
        if v and not Pin.levels.get(self.id, 0):
            Pin.rises[self.id] = Pin.rises.get(self.id, 0) + 1
        Pin.levels[self.id] = v
        if self.id in Pin.traced:
            Pin.writes.setdefault(self.id, []).append(v)
        hook = Pin.hooks.get(self.id)
        if hook is not None:
            hook(v)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


def _pin_id(pin):
    return pin.id if isinstance(pin, Pin) else pin


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3

    u16 = {}  # pin id -> read_u16() value
    uv = {}  # pin id -> read_uv() value

    def __init__(self, pin, atten=None):
        self.id = _pin_id(pin)
        self.atten = atten

    def read_u16(self):
        return ADC.u16.get(self.id, 0)

    def read_uv(self):
        return ADC.uv.get(self.id, 0)


class PWM:
    instances = []

    def __init__(self, pin, freq=0, duty_u16=0):
        self.id = _pin_id(pin)
        self._freq = freq
        self._duty = duty_u16
        PWM.instances.append(self)

    def freq(self, hz=None):
        if hz is None:
            return self._freq
        self._freq = hz
        return None

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d
        return None

    def deinit(self):
        self._duty = 0


class WDT:
    instances = []

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDT.instances.append(self)

    def feed(self):
        self.feeds += 1


class Timer:
    PERIODIC = 1
    ONE_SHOT = 0
    instances = []

    def __init__(self, id=-1, mode=PERIODIC, period=-1, callback=None):
        self.id = id
        self.mode = mode
        self.period = period
        self.callback = callback
        Timer.instances.append(self)

    def init(self, mode=PERIODIC, period=-1, callback=None):
        self.mode = mode
        self.period = period
        self.callback = callback

    def fire(self, times=1):
        for _ in range(times):
            self.callback(self)

    def deinit(self):
        self.callback = None


class UART:
    instances = []

    def __init__(self, id, baudrate=115200, tx=None, rx=None, rxbuf=256, timeout=0):
        self.id = id
        self.baudrate = baudrate
        self.rx = bytearray()  # bytes waiting to be read by the driver
        self.tx = bytearray()  # bytes the driver wrote
        UART.instances.append(self)

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
        n = min(n, len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, buf):
        self.tx.extend(buf)
        return len(buf)


class Ds3231Chip:
    """The registers of a DS3231 real-time clock as a device on the fake I2C bus.

    At power-up (a new chip, or power_lost() without a backup cell) the time registers are
    0, control is 0x1C and status 0x88: OSF set. The time does not run by itself: a test
    writes the registers or sets them with put(). Registers behave as on the chip: unused
    bits read 0, OSF and the alarm flags can only be cleared, BSY is read-only.
    `fail` transfers raise OSError (EIO) before any byte moves (-1: every one), and
    `fail_after` bytes into a write the transfer breaks off (a glitch mid-write)."""

    MASKS = b"\x7f\x7f\x7f\x07\x3f\x9f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

    def __init__(self):
        self.regs = bytearray(19)  # 0x00-0x12
        self.fail = 0
        self.fail_after = -1
        self.transfers = 0
        self.power_up()

    def power_up(self):
        for i in range(len(self.regs)):
            self.regs[i] = 0
        self.regs[0x0E] = 0x1C
        self.regs[0x0F] = 0x88

    def power_lost(self, backup=True):
        """The board's supply went off: with a good backup cell the chip keeps its time."""
        if not backup:
            self.power_up()

    def put(self, regs7, osf=False):
        """Set the time registers 0x00-0x06 directly (as if the chip had counted to them)."""
        for i in range(7):
            self.regs[i] = regs7[i]
        self.regs[0x0F] = (self.regs[0x0F] | 0x80) if osf else (self.regs[0x0F] & 0x7F)

    def begin(self):
        self.transfers += 1
        if self.fail:
            if self.fail > 0:
                self.fail -= 1
            raise OSError(5)  # EIO: the transfer was not acknowledged

    def read(self, reg):
        return self.regs[reg % len(self.regs)]  # the register pointer wraps

    def write(self, reg, value):
        reg %= len(self.regs)
        if reg == 0x0F:  # OSF, A2F, A1F: clear only; BSY: read-only
            old = self.regs[reg]
            value = (old & value & 0x83) | (value & 0x08) | (old & 0x04)
        self.regs[reg] = value & Ds3231Chip.MASKS[reg]


class I2C:
    """machine.I2C (and SoftI2C) on a bus with the devices in I2C.devices (address ->
    device with begin(), read(reg) and write(reg, value), such as Ds3231Chip). An absent
    address raises OSError (ENODEV), as the ports do when nothing acknowledges.
    Allocation-free on success, so drivers can be run under micropython.heap_lock()."""

    devices = {}
    instances = []

    def __init__(self, id=-1, scl=None, sda=None, freq=400000, timeout=50000):
        self.id = id
        self.scl = _pin_id(scl)
        self.sda = _pin_id(sda)
        self.freq = freq
        I2C.instances.append(self)

    def scan(self):
        return sorted(I2C.devices)

    def _device(self, addr):
        dev = I2C.devices.get(addr)
        if dev is None:
            raise OSError(19)  # ENODEV
        dev.begin()
        return dev

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        dev = self._device(addr)
        i = 0
        n = len(buf)
        while i < n:
            buf[i] = dev.read(memaddr + i)
            i += 1

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        dev = self._device(addr)
        stop = getattr(dev, "fail_after", -1)
        i = 0
        n = len(buf)
        while i < n:
            if i == stop:
                raise OSError(5)
            dev.write(memaddr + i, buf[i])
            i += 1


def reset_all():
    Pin.levels.clear()
    Pin.rises.clear()
    Pin.writes.clear()
    Pin.traced.clear()
    Pin.hooks.clear()
    ADC.u16.clear()
    ADC.uv.clear()
    PWM.instances.clear()
    WDT.instances.clear()
    Timer.instances.clear()
    UART.instances.clear()
    I2C.devices.clear()
    I2C.instances.clear()
    _reset_cause[0] = PWRON_RESET
    resets[0] = 0
