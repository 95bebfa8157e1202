"""The link's boot (SEC-4): the link region loaded, lost state and a new pairing key
detected. `Link.__init__` runs `load(link, key_id(key))` once, then drops this module
(firmware/compat.py unimport): loaded from .mpy files on a file system, a module's
bytecode lives in RAM, and this code never runs again until the next boot (heap, issue
12). `load` is the Link method it was, `self` the link.
"""

from firmware.link import L_COUNTER, L_KEY, L_LOCKED, LINK_LEN
from protocol.spec import H_LINK, LINK_CORRUPT, LINK_PAIRED, ST_LINK


def key_id(key):
    """A 30-bit id of the pairing key (never 0), kept in the link region to notice a new
    pairing: a hash, so the region never holds the key itself (SEC-1)."""
    if not key:
        return 0
    import hashlib

    d = hashlib.sha256(b"micropump key id" + bytes(key)).digest()
    return ((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) & 0x3FFFFFFF) | 1


def load(self, kid):
    """Load the link region; detect lost state and a new pairing (SEC-4)."""
    v = self.values
    valid, blank = self.slots.load()
    if not valid:
        for i in range(LINK_LEN):
            v[i] = 0
        v[L_KEY] = kid
        if blank or self.slots._is_blank(0) or self.slots._is_blank(1):
            return  # a new pump (or its first save torn): saved with the next command
        # Lost: nothing here can be trusted. Commands stay refused until a new key; the
        # counter starts above the pump state's last command id, so ids stay unique.
        last = self.last
        self.pump.last_command(last)
        v[L_COUNTER] = last[0]
        v[L_LOCKED] = 1
        self.slots.save()
        self.pump.fail_safe(ST_LINK, H_LINK, LINK_CORRUPT)
        self.locked = True
        return
    if self.slots.loaded_n < LINK_LEN:
        v[L_KEY] = kid  # an older layout: adopt the key it was used with
        v[L_LOCKED] = 0
    elif v[L_KEY] != kid:
        # Paired again (a new key): frames made with the old key no longer pass.
        v[L_KEY] = kid
        was = v[L_LOCKED]
        v[L_LOCKED] = 0
        self.slots.save()
        if was:
            self.pump.history.append(self.pump.utc_seconds(), H_LINK, LINK_PAIRED,
                                     self.pump.selftest_bits, 0, 0)
    if v[L_LOCKED]:
        self.locked = True
        self.pump.fail_safe(ST_LINK, H_LINK, LINK_CORRUPT)
