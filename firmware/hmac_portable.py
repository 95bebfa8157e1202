"""HMAC-SHA256 in Python (SEC-2): the link's MAC where the image has no hmac256 C module
(the unix port, wasm, CPython; tools/arm/cmod/hmac256 on the ARM images). firmware/wire.py
Auth() picks one; both have the same interface.
"""

import hashlib

from firmware.crc import NATIVE
from protocol.spec import MAC_SIZE


def mac_diff_portable(want, buf, mac_at, size=MAC_SIZE):
    """0 if buf[mac_at:mac_at + size] == want[0:size]; every byte is compared, whatever
    differs (no early exit: the time tells nothing). `mac_diff` is the viper version
    (firmware/native.py, MAC_SIZE bytes) where the runtime has a native emitter."""
    diff = 0
    for i in range(size):
        diff |= want[i] ^ buf[mac_at + i]
    return diff


mac_diff = mac_diff_portable
if NATIVE:
    from firmware.native import mac_diff  # noqa: F811


class HmacPortable:
    """HMAC-SHA256 of `prefix` + a message with one key (RFC 2104), written out with
    hashlib (MicroPython has no hmac module and its sha256 objects cannot be copied, so
    each MAC hashes both key pads again: four blocks and a few small objects per MAC).

    The interface of the hmac256 C module's HMAC (tools/arm/cmod/hmac256), which the ARM
    images have (no allocation, two blocks for a short message): `sign(msg, n, out, at,
    size)` writes the first `size` bytes of the MAC of msg[:n] into out[at:at + size],
    `verify(msg, n, mac, at, size)` says whether mac[at:at + size] is that (every byte
    compared); for a frame's auth trailer at buf[at] (counter <I, then the MAC of
    buf[:at + 4]) `seal(buf, at, counter, size, wire)` writes it, then the CRC and the COBS
    frame into wire (wire.seal_portable), and returns the wire length; `check(buf, at,
    size)` returns the counter if the MAC is good, else None.
    """

    def __init__(self, key, prefix=b""):
        key = bytes(key)
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key + bytes(64 - len(key))
        self.ipad = bytes([b ^ 0x36 for b in key])
        self.opad = bytes([b ^ 0x5C for b in key])
        self.prefix = bytes(prefix)

    def digest(self, msg, n):
        h = hashlib.sha256(self.ipad)
        h.update(self.prefix)
        h.update(memoryview(msg)[:n])
        inner = h.digest()
        h = hashlib.sha256(self.opad)
        h.update(inner)
        return h.digest()

    def sign(self, msg, n, out, at, size):
        mac = self.digest(msg, n)
        for i in range(size):
            out[at + i] = mac[i]

    def verify(self, msg, n, mac, at, size):
        if size == MAC_SIZE:
            return mac_diff(self.digest(msg, n), mac, at) == 0
        return mac_diff_portable(self.digest(msg, n), mac, at, size) == 0

    def seal(self, buf, at, counter, size, wire):
        from firmware.wire import seal_portable

        for i in range(4):
            buf[at + i] = (counter >> (8 * i)) & 0xFF
        self.sign(buf, at + 4, buf, at + 4, size)
        return seal_portable(buf, at + 4 + size, wire)

    def check(self, buf, at, size):
        if not self.verify(buf, at + 4, buf, at + 4, size):
            return None
        return buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)
