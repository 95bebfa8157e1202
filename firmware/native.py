"""Viper versions of the firmware's byte loops (issue 12): machine code on boards with a
native emitter, selected at import by firmware/crc.py and firmware/wire.py.

Each function here computes exactly what its portable twin computes (firmware/portable.py's
crc16, cobs_encode, cobs_feed; for `copy`, store.Slots' struct loops
and the fake drivers' byte loops); tests/test_native.py proves that byte for byte on every
message of the table and on state images. Runtimes without a native emitter (the WebAssembly
build) reject this module at compile time (SyntaxError) and CPython has no `micropython`
module (ImportError): both keep the portable bytecode. mpy-cross needs -march to compile
this file (boards: armv6m for a Pico, xtensawin for an ESP32).

Viper ints are machine words: every value here stays below 2**16 (CRC) or is a byte index.
"""

import micropython

from firmware.crc import _TABLE


# ARMv6-M viper code keeps only its first three locals, the arguments first, in registers
# (the others live in the stack frame): the byte loops below run on their arguments
# (issue 12: the state save's CRC and copy were ~60 and ~45 instructions a byte). A viper
# function's ptr8 argument takes any buffer (its data address).
@micropython.viper
def crc16(p: ptr8, crc: int, n: int) -> int:  # noqa: F821 (viper built-ins)
    """CRC of buf[start:end] as crc16(buf, start, end): the arguments are reused as the
    loop's registers (p walks the bytes, crc starts as `start`, n counts down)."""
    t = ptr16(_TABLE)  # noqa: F821
    p = ptr8(uint(p) + uint(crc))  # noqa: F821
    n -= crc
    crc = 0xFFFF
    while n > 0:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ p[0]) & 0xFF]
        p = ptr8(uint(p) + 1)  # noqa: F821
        n -= 1
    return crc


@micropython.viper
def cobs_encode(src: ptr8, n: int, dst: ptr8) -> int:  # noqa: F821
    """portable.cobs_encode walking pointers (src, dst: the argument registers) with
    the code byte's address `c`: the block's code is dst - c (~55 M0+ instructions a byte
    with indexes, ~35 so)."""
    start = uint(dst)  # noqa: F821
    end = uint(src) + uint(n)  # noqa: F821
    c = uint(dst)  # noqa: F821
    dst = ptr8(uint(dst) + 1)  # noqa: F821
    while uint(src) < end:  # noqa: F821
        b = src[0]
        src = ptr8(uint(src) + 1)  # noqa: F821
        if b == 0:
            ptr8(c)[0] = uint(dst) - c  # noqa: F821
            c = uint(dst)  # noqa: F821
            dst = ptr8(uint(dst) + 1)  # noqa: F821
        else:
            dst[0] = b
            dst = ptr8(uint(dst) + 1)  # noqa: F821
            if uint(dst) - c == uint(0xFF):  # noqa: F821
                ptr8(c)[0] = 0xFF  # noqa: F821
                if uint(src) < end:  # noqa: F821
                    c = uint(dst)  # noqa: F821
                    dst = ptr8(uint(dst) + 1)  # noqa: F821
                else:
                    c = uint(0)  # closed: nothing follows  # noqa: F821
    if c != uint(0):  # noqa: F821
        ptr8(c)[0] = uint(dst) - c  # noqa: F821
    dst[0] = 0
    return int(uint(dst) + 1 - start)  # noqa: F821


@micropython.viper
def cobs_feed(chunk: ptr8, i: int, end: int, buf: ptr8, st: ptr32) -> int:  # noqa: F821
    """portable.cobs_feed: COBS-decode chunk[i:end] into buf up to one 0x00; the
    state in st (wire.D_*: n, code, left, bad, cap, size, done)."""
    n = st[0]
    code = st[1]
    left = st[2]
    bad = st[3]
    cap = st[4]
    while i < end:
        b = chunk[i]
        i += 1
        if b == 0:
            if bad or left:
                st[5] = -1
            else:
                st[5] = n
            st[6] = 1
            st[0] = 0
            st[1] = 0
            st[2] = 0
            st[3] = 0
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
    st[0] = n
    st[1] = code
    st[2] = left
    st[3] = bad
    return i


@micropython.viper
def copy(dst: ptr8, at: int, src: ptr8, start: int, n: int):  # noqa: F821
    """dst[at:at + n] = src[start:start + n] (distinct buffers), no slice objects. Any
    buffer: an array('i') is its little-endian bytes on every arch with a native emitter
    here (ARM, Xtensa, x86-64), which is what struct "<i" writes. Word by word when both
    ends and the length are 4-byte aligned (the slot images: a quarter of the loop)."""
    a = uint(dst) + uint(at)  # noqa: F821
    b = uint(src) + uint(start)  # noqa: F821
    dst = ptr8(a)  # noqa: F821
    src = ptr8(b)  # noqa: F821
    if ((a | b | uint(n)) & 3) == uint(0):  # noqa: F821
        at = n >> 2
        while at > 0:
            at -= 1
            ptr32(dst)[at] = ptr32(src)[at]  # noqa: F821
    else:
        at = n
        while at > 0:
            at -= 1
            dst[at] = src[at]


@micropython.viper
def same32(dst: ptr32, src: ptr32, n: int, skip: ptr8) -> int:  # noqa: F821
    """status.same_portable on word arrays (array('i')): 1 if dst[i] == src[i] for every
    i < n with skip[i] == 0; in any case dst[0:n] = src[0:n] after it (a word with
    skip[i] != 0 is copied, never compared). From the end down."""
    while n > 0:
        n -= 1
        if dst[n] != src[n]:
            if skip[n]:
                dst[n] = src[n]
                continue
            while n >= 0:  # the words above n are equal (or copied) already
                dst[n] = src[n]
                n -= 1
            return 0
    return 1


@micropython.viper
def same8(dst: ptr8, src: ptr8, n: int) -> int:  # noqa: F821
    """same32 on byte arrays."""
    while n > 0:
        n -= 1
        if dst[n] != src[n]:
            while n >= 0:
                dst[n] = src[n]
                n -= 1
            return 0
    return 1


@micropython.viper
def mac_diff(want: ptr8, buf: ptr8, mac_at: int) -> int:  # noqa: F821
    """hmac_portable.mac_diff_portable: 0 if buf[mac_at:mac_at + 8] == want[0:8], every byte
    compared (no early exit)."""
    buf = ptr8(uint(buf) + uint(mac_at))  # noqa: F821
    mac_at = 0
    diff = 0
    while mac_at < 8:  # protocol.spec.MAC_SIZE
        diff |= want[mac_at] ^ buf[mac_at]
        mac_at += 1
    return diff
