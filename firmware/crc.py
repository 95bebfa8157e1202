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


def crc16_ints(arr, start, end, crc=0xFFFF):
    """CRC over the little-endian 32-bit bytes of ints arr[start:end] (any sign)."""
    t = _TABLE
    i = start
    while i < end:
        v = arr[i]
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ v) & 0xFF]
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ (v >> 8)) & 0xFF]
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ (v >> 16)) & 0xFF]
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ (v >> 24)) & 0xFF]
        i += 1
    return crc
