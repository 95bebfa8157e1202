"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), table driven and allocation-free.

`crc16` is the C version where the image has it (the ARM images' crc16c module,
tools/arm/cmod/crc16c: ~10 M0+ instructions a byte instead of ~52), else the viper version
(firmware/native.py) where the runtime has a native emitter, else the portable bytecode
below; all give the same result for every input. NATIVE says whether the viper functions
(firmware/native.py) exist, whichever crc16 is used.
"""

from array import array

_TABLE = array("H", [0] * 256)


def _fill_table():
    for n in range(256):
        c = n << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        _TABLE[n] = c & 0xFFFF


_fill_table()


def crc16_portable(buf, start, end):
    """CRC of buf[start:end] (bytes-like); no slicing, no allocation."""
    t = _TABLE
    crc = 0xFFFF
    i = start
    while i < end:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ buf[i]) & 0xFF]
        i += 1
    return crc


crc16 = crc16_portable
NATIVE = False  # True where the viper functions (firmware/native.py) load
try:
    from firmware.native import crc16  # noqa: F811, F401
    NATIVE = True
except (ImportError, SyntaxError, ValueError):
    # CPython; a MicroPython without a native emitter; a .mpy built for another arch
    pass
try:
    from crc16c import crc16  # noqa: F811, F401
except ImportError:  # every runtime but the ARM images
    pass
