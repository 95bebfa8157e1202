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
    _reset_cause[0] = PWRON_RESET
    resets[0] = 0
