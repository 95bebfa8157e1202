"""Persistence: append-only history, A/B slots with CRC and generation, daily totals.

Everything written goes through preallocated bytearrays and struct.pack_into, so a write
from inside the tick does not allocate (HIS-1, HIS-2).
"""

import struct
from struct import pack_into

from firmware.compat import const
from firmware.crc import NATIVE, stamp, stamped

copy = None  # the viper byte copy (firmware/native.py) where there is one
if NATIVE:
    from firmware.native import copy

REC_FMT = "<IIBBiiiH"  # seq, time, kind, arg, v1, v2, v3, crc
REC_SIZE = const(24)
_REC_CRC_AT = const(22)
SCAN_FEED = 256  # records read between two watchdog feeds during the boot scan


class History:
    """Fixed-size records in a circular region; sequence numbers only grow.

    A torn or never-written record fails its CRC; the head is the valid record with the
    highest sequence number, found by one scan at boot.
    """

    def __init__(self, storage, region):
        self.storage = storage
        self.region = region
        self.capacity = storage.size(region) // REC_SIZE
        self.rec = bytearray(REC_SIZE)
        self.next_seq = 1
        self.first_seq = 1  # oldest sequence number still stored
        self.head_time = 0  # time of the newest record (0: none)
        self.write_errors = 0

    def _valid(self, rec):
        return stamped(rec, _REC_CRC_AT)

    def scan(self, feed=None):
        """Find the head after boot. Returns the number of valid records. `feed` (the
        watchdog's) is called every SCAN_FEED records: a full region takes seconds on a
        board, longer than a watchdog period (ALM-5)."""
        rec = self.rec
        best = 0
        lowest = 0
        valid = 0
        for i in range(self.capacity):
            if feed is not None and not i % SCAN_FEED:
                feed()
            self.storage.read(self.region, i * REC_SIZE, rec)
            if not self._valid(rec):
                continue
            valid += 1
            seq = rec[0] | (rec[1] << 8) | (rec[2] << 16) | (rec[3] << 24)
            if seq > best:
                best = seq
                self.head_time = rec[4] | (rec[5] << 8) | (rec[6] << 16) | (rec[7] << 24)
            if lowest == 0 or seq < lowest:
                lowest = seq
        self.next_seq = best + 1
        # Records older than one full lap were overwritten.
        self.first_seq = max(lowest, self.next_seq - self.capacity) if valid else 1
        return valid

    def append(self, time_s, kind, arg, v1, v2, v3):
        """Write one record. Allocation-free. Returns its sequence number (0 if failed)."""
        seq = self.next_seq
        rec = self.rec
        pack_into(REC_FMT, rec, 0, seq, time_s, kind, arg, v1, v2, v3, 0)
        stamp(rec, _REC_CRC_AT)
        try:
            self.storage.write(self.region, ((seq - 1) % self.capacity) * REC_SIZE, rec)
        except OSError:
            self.write_errors += 1
            return 0
        self.next_seq = seq + 1
        self.head_time = time_s
        if seq - self.first_seq >= self.capacity:
            self.first_seq = seq - self.capacity + 1
        return seq

    def read(self, seq, out):
        """Copy record `seq` into `out` (bytearray(24)). True if it is stored and valid."""
        if seq < self.first_seq or seq >= self.next_seq:
            return False
        self.storage.read(self.region, ((seq - 1) % self.capacity) * REC_SIZE, out)
        if not self._valid(out):
            return False
        return (out[0] | (out[1] << 8) | (out[2] << 16) | (out[3] << 24)) == seq

    @staticmethod
    def decode(rec):
        """(seq, time, kind, arg, v1, v2, v3): for readers outside the tick (allocates)."""
        return struct.unpack_from(REC_FMT, rec, 0)[:7]


class Slots:
    """An int array persisted in two copies (A/B), each with generation and CRC.

    Element 0 is the generation. A write goes to the copy not holding the newest
    generation, so a power cut mid-write always leaves the previous copy intact.

    `legacy`: lengths of older layouts that are prefixes of this one (a firmware update
    appended values). A copy saved with such a length still loads: the values after it keep
    what the caller put there (its defaults), and the next save writes the full length.

    `scratch`: a bytearray of at least 4 * len(values) + 2 bytes that other Slots share
    (the image is only used inside load() and save(), which never overlap): one buffer
    for the pump's state, settings and dose rings instead of three (issue 12: heap).
    """

    def __init__(self, storage, region_a, region_b, values, legacy=(), scratch=None):
        self.storage = storage
        self.regions = (region_a, region_b)
        self.values = values  # array('i'); values[0] is the generation
        self.n = len(values)
        size = 4 * self.n + 2
        if scratch is None:
            self.image = bytearray(size)
        elif len(scratch) < size:  # a slice would just be shorter: the save would fail late
            raise ValueError("scratch smaller than the image")
        elif len(scratch) == size:
            self.image = scratch
        else:
            self.image = memoryview(scratch)[:size]
        self.newest = 1  # index of the copy holding the newest generation
        self.write_errors = 0
        self.legacy = legacy
        self.loaded_n = 0  # length of the layout the last load() found
        # None, or an array whose [0] counts save() calls, failed ones too: the tick's
        # cache key (firmware/pump.py; its state and settings slots share one)
        self.saves = None

    def _load_copy(self, which):
        """Read copy `which` into the image. Returns its generation, or -1 if invalid."""
        img = self.image
        self.storage.read(self.regions[which], 0, img)
        n4 = 4 * self.n
        if stamped(img, n4):
            self.loaded_n = self.n
        else:
            for n in self.legacy:
                n4 = 4 * n
                if n < self.n and stamped(img, n4):
                    self.loaded_n = n
                    break
            else:
                return -1
        gen = struct.unpack_from("<i", img, 0)[0]
        return gen if gen > 0 else -1

    def load(self):
        """Load the newest valid copy into values. Returns (copies valid 0..2, blank)."""
        gen_a = self._load_copy(0)
        gen_b = self._load_copy(1)
        if gen_a < 0 and gen_b < 0:
            blank = self._is_blank(0) and self._is_blank(1)
            return 0, blank
        self.newest = 0 if gen_a >= gen_b else 1
        self._load_copy(self.newest)
        img = self.image
        if copy is not None:
            copy(self.values, 0, img, 0, 4 * self.loaded_n)
        else:
            for i in range(self.loaded_n):
                self.values[i] = struct.unpack_from("<i", img, 4 * i)[0]
        return (gen_a >= 0) + (gen_b >= 0), False

    def _is_blank(self, which):
        img = self.image
        self.storage.read(self.regions[which], 0, img)
        for b in img:
            if b != 0xFF and b != 0:
                return False
        return True

    def save(self):
        """Write values with the next generation to the older copy. Allocation-free."""
        saves = self.saves
        if saves is not None:
            saves[0] += 1
        v = self.values
        v[0] = v[0] + 1
        img = self.image
        n4 = 4 * self.n
        if copy is not None:
            copy(img, 0, v, 0, n4)  # the array's bytes are "<i" each (little-endian)
        else:
            for i in range(self.n):
                struct.pack_into("<i", img, 4 * i, v[i])
        stamp(img, n4)
        target = 1 - self.newest
        try:
            self.storage.write(self.regions[target], 0, img)
        except OSError:
            self.write_errors += 1
            v[0] = v[0] - 1
            return False
        self.newest = target
        return True


TOT_FMT = "<iiiiH"  # day, basal mU, bolus mU, prime mU, crc
TOT_SIZE = 18
TOTAL_DAYS = 96  # >= 90 days of daily totals (THR-10)


def _i32(buf, at):
    """Signed little-endian 32-bit value at buf[at] (no tuple: allocation-free for the
    small values stored here)."""
    v = buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | ((buf[at + 3] & 0x7F) << 24)
    return v - (1 << 31) if buf[at + 3] & 0x80 else v


class Totals:
    """Daily totals in a ring indexed by day number; one record per local day."""

    def __init__(self, storage, region):
        self.storage = storage
        self.region = region
        self.rec = bytearray(TOT_SIZE)

    def save(self, day, basal, bolus, prime):
        rec = self.rec
        struct.pack_into(TOT_FMT, rec, 0, day, basal, bolus, prime, 0)
        stamp(rec, 16)
        try:
            self.storage.write(self.region, (day % TOTAL_DAYS) * TOT_SIZE, rec)
        except OSError:
            return False
        return True

    def load_into(self, day, out, at):
        """Copy basal, bolus, prime of `day` into out[at:at + 3]. False if not recorded.
        Allocation-free: midnight, inside the tick, continues a recorded day."""
        rec = self.rec
        self.storage.read(self.region, (day % TOTAL_DAYS) * TOT_SIZE, rec)
        if not stamped(rec, 16) or _i32(rec, 0) != day:
            return False
        out[at] = _i32(rec, 4)
        out[at + 1] = _i32(rec, 8)
        out[at + 2] = _i32(rec, 12)
        return True

    def load(self, day):
        """(basal, bolus, prime) recorded for `day`, or None. Outside the tick."""
        rec = self.rec
        self.storage.read(self.region, (day % TOTAL_DAYS) * TOT_SIZE, rec)
        if not stamped(rec, 16):
            return None
        d, basal, bolus, prime, _ = struct.unpack_from(TOT_FMT, rec, 0)
        return (basal, bolus, prime) if d == day else None
