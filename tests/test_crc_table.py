"""firmware/crc.py's CRC-16/CCITT-FALSE table, a bytes literal (so a frozen image keeps it
in flash, issue 12), is the table the polynomial gives; the portable CRC reads it right."""

import struct

from firmware import crc, portable


def test_table_is_the_polynomials():
    want = []
    for n in range(256):
        c = n << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        want.append(c & 0xFFFF)
    assert isinstance(crc._TABLE, bytes)
    assert list(struct.unpack("<256H", crc._TABLE)) == want


def test_portable_crc_check_values():
    # the catalogue's check value of CRC-16/CCITT-FALSE, and a slice of a longer buffer
    assert portable.crc16(b"123456789", 0, 9) == 0x29B1
    assert portable.crc16(b"xx123456789yy", 2, 11) == 0x29B1
    assert portable.crc16(b"", 0, 0) == 0xFFFF
    assert portable.crc16(bytes(range(256)), 0, 256) == 0x3FBD
