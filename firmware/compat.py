"""The one compatibility shim between MicroPython and CPython.

Firmware time arithmetic uses a tick period of 2**30 ms on every runtime, the period of
the Pico and ESP32 ports. The 64-bit unix port and CPython would otherwise hide the wrap.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


TICKS_PERIOD = const(1 << 30)
_TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)

try:
    import time as _time

    _native = _time.ticks_add(0, -1) == _TICKS_MAX
except AttributeError:  # CPython has no ticks_* functions
    _native = False

if _native:
    ticks_diff = _time.ticks_diff
    ticks_add = _time.ticks_add
else:

    def ticks_diff(end, start):
        """Signed difference end - start on the 2**30 ring (valid within +-2**29)."""
        return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    def ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MAX


IS_MICROPYTHON = False
try:
    import sys as _sys

    IS_MICROPYTHON = _sys.implementation.name == "micropython"
except AttributeError:
    pass


# The 32-bit WASI build crashes when a collection runs inside a function (tests/
# mp_scenarios.py): collect() leaves it alone.
_COLLECT = IS_MICROPYTHON and getattr(_sys.implementation, "_build", "") != "wasi"


def collect():
    """gc.collect() on MicroPython (heap layout and boot time, issue 12); nothing on
    CPython, where a full collection in a big test process costs more than it saves, nor
    on the WASI build."""
    if _COLLECT:
        import gc

        gc.collect()


def unimport(name):
    """Forget firmware/`name`.py, just imported for code that runs once (firmware/
    pump_boot.py, link_boot.py): loaded from a .mpy file its code is in the heap, which the
    next collection takes back (heap, issue 12). A later import loads it again."""
    del _sys.modules["firmware." + name]
    delattr(_sys.modules["firmware"], name)


# The modules imported at their first use (firmware/link_cold.py imports the other three
# with itself): a MemoryError in their import can leave a name in sys.modules without its
# module (MicroPython 1.25), which the next import would take for the module. Link._on_cold
# and the console forget such names (forget_half_imported).
COLD = ("firmware.link_cold", "firmware.pump_cold", "firmware.settings_cold", "firmware.calc")


def forget_half_imported():
    modules = _sys.modules
    for name in COLD:
        if modules.get(name) is None:
            modules.pop(name, None)
