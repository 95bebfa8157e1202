"""The firmware's byte loops as portable bytecode: CRC-16, COBS encoding and decoding.

They are the reference that the viper versions (firmware/native.py) and the ARM images' C
versions (tools/arm/cmod/crc16c) equal byte for byte (tests/test_native.py,
tests/test_cmod_arm.py), and the code itself where neither exists (the WebAssembly build,
CPython). firmware/crc.py and firmware/wire.py import this module only then, so on a board
its bytecode never reaches the heap (issue 12: loaded from .mpy files, bytecode is in RAM).
"""

from firmware.compat import const

# firmware/wire.py's decoder state indexes D_* (tests/test_tick_consts.py)
_D_N = const(0)
_D_CODE = const(1)
_D_LEFT = const(2)
_D_BAD = const(3)
_D_CAP = const(4)
_D_SIZE = const(5)
_D_DONE = const(6)


def crc16(buf, start, end):
    """CRC of buf[start:end] (bytes-like); no slicing, no allocation."""
    t = _TABLE
    crc = 0xFFFF
    i = start
    while i < end:
        k = (((crc >> 8) ^ buf[i]) & 0xFF) << 1
        crc = ((crc << 8) & 0xFFFF) ^ t[k] ^ (t[k + 1] << 8)
        i += 1
    return crc


def cobs_encode(src, n, dst):
    """COBS-encode src[0:n] into dst and append the 0x00 delimiter; returns the length.

    Byte for byte what the `cobs` package produces (no empty block after a final 0xFF
    block). dst needs n + n // 254 + 2 bytes. Allocation-free. firmware/native.py has the
    viper version, which wire.cobs_encode is where the runtime has a native emitter.
    """
    code_at = 0
    m = 1
    code = 1
    i = 0
    while i < n:
        b = src[i]
        i += 1
        if b == 0:
            dst[code_at] = code
            code_at = m
            m += 1
            code = 1
        else:
            dst[m] = b
            m += 1
            code += 1
            if code == 0xFF:
                dst[code_at] = code
                if i < n:
                    code_at = m
                    m += 1
                    code = 1
                else:
                    code = 0  # closed: nothing follows
    if code:
        dst[code_at] = code
    dst[m] = 0
    return m + 1


def cobs_feed(chunk, i, end, buf, st):
    """Decode chunk[i:end] into buf up to and including one 0x00 (state in `st`, see D_*);
    returns the index after the last byte consumed. wire.cobs_feed is the C version on the
    ARM images (crc16c.cobs_feed), else the viper version (firmware/native.py) where the
    runtime has a native emitter."""
    n = st[_D_N]
    code = st[_D_CODE]
    left = st[_D_LEFT]
    bad = st[_D_BAD]
    cap = st[_D_CAP]
    while i < end:
        b = chunk[i]
        i += 1
        if b == 0:
            st[_D_SIZE] = -1 if bad or left else n
            st[_D_DONE] = 1
            st[_D_N] = 0
            st[_D_CODE] = 0
            st[_D_LEFT] = 0
            st[_D_BAD] = 0
            return i
        if bad:
            continue
        if left == 0:
            if code and code != 0xFF:  # the previous block ended with a zero
                if n >= cap:
                    bad = 1
                    continue
                buf[n] = 0
                n += 1
            code = b
            left = b - 1
        else:
            if n >= cap:
                bad = 1
                continue
            buf[n] = b
            n += 1
            left -= 1
    st[_D_N] = n
    st[_D_CODE] = code
    st[_D_LEFT] = left
    st[_D_BAD] = bad
    return i


# last: firmware/crc.py imports this module while it runs (crc16 above reads _TABLE when
# called), and this module may be the first of the two imported
from firmware.crc import _TABLE  # noqa: E402
