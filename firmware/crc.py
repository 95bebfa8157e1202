"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), table driven and allocation-free."""

from array import array

_TABLE = array("H", [0] * 256)


def _fill_table():
    for n in range(256):
        c = n << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        _TABLE[n] = c & 0xFFFF


_fill_table()


def crc16(buf, start, end, crc=0xFFFF):
    """CRC of buf[start:end] (bytes-like), continuing from `crc`; no slicing, no allocation."""
    t = _TABLE
    i = start
    while i < end:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ buf[i]) & 0xFF]
        i += 1
    return crc
