"""The pump's status snapshot (issue 16): the one place that reads the pump for a status.

`snapshot(pump)` is the pump's single `Status`. `pack_into(buf, at)` reads the pump and
packs status_info's payload (protocol/spec.py field order) with one struct call straight
from the pump's state: no intermediate array, no allocation. The link packs into its frame
buffer; the bench console and Pump.status() call `refresh()` (the payload into the
snapshot's own buffer, and the EXTRA fields the host-side readers also show) and read
fields by name (`get`, allocates).

    snap = snapshot(pump)
    snap.refresh()
    snap.get("iob"), snap.get("prime_today")

Cost (issue 12): a status request is dominated by the interpreter's calls and array reads,
so this reads each input once, calls the pump only for what it computes (rates, reservoir,
IOB, UTC) and scans the alarms only up to the last active one. Where the runtime has a
native emitter, the packed payload is kept with a copy of everything it was computed from
(the state array, the active alarms, the profile rate, UTC offset and DIA settings, the
dose rings' generation, history head, self-test bits, motor position and CGM readings):
when none of it changed, a status is the kept payload (on the QEMU ARM board ~29,000
Cortex-M0+ instructions instead of ~80,000 for the pack). The state words every tick moves
(the clocks, the pulse accumulators) are not compared as words but through what the
status makes of them: the minute the IOB reads, the CGM reading's age and the temp
basal's minutes left among the keys, the profile rate (its slot), and the utc field,
written into every answer. So the status after a tick that moved only the clock is the
kept payload too; one after a pulse, a minute boundary or a command is packed and kept.
Compared by content, not by a change counter: nothing that writes the pump's state has
to remember to say so (tests/test_status_cache.py: every state word changed alone).
"""

import struct
from array import array
from struct import pack_into

from firmware.compat import const
from firmware.crc import NATIVE
from firmware.pump import minutes_left
from protocol.spec import ALARM_COUNT, MESSAGES, SET_UTC_OFFSET

# The state indexes this module reads (firmware/layout.py): private consts, inlined by
# mpy-cross (no globals lookup per read; tests/test_tick_consts.py checks each).
_S_EXT_ELAPSED = const(16)
_S_BOLUS_ID = const(9)
_S_BOLUS_KIND = const(10)
_S_NOW_REQ = const(11)
_S_EXT_REQ = const(12)
_S_NOW_DONE = const(13)
_S_EXT_DONE = const(14)
_S_TEMP_KIND = const(17)
_S_TEMP_VALUE = const(18)
_S_TEMP_LEFT = const(19)
_S_STOP = const(20)
_S_LOCAL_DAY = const(21)
_S_LOCAL_MS = const(22)
_S_SET_AGE = const(25)
_S_BATTERY = const(28)
_S_BASAL_ACC = const(29)
_S_BOLUS_ACC = const(30)
_S_EXT_ACC = const(31)
_S_TIME_SET = const(32)
_S_LAST_CMD = const(33)
_S_LAST_CODE = const(34)
_S_LAST_DETAIL = const(35)
_S_MONO_S = const(36)
_S_BASAL_TODAY = const(6)
_S_BOLUS_TODAY = const(7)
_S_PRIME_TODAY = const(8)
_STATE_LEN = const(53)
_BUCKET_S = const(300)  # firmware.doses BUCKET_S
_AT_OFFSET = const(13)  # firmware.settings at(SET_UTC_OFFSET), at(SET_DIA)
_AT_DIA = const(12)
_V_RATES = const(21)  # firmware.layout
_V_SCHEDULE = const(14)
_SLOTS = const(48)  # protocol.spec SLOTS, SLOT_MS
_SLOT_MS = const(1800000)
_EPOCH_WEEKDAY = const(2)  # firmware.settings
_F_UTC = const(17)  # status_info's utc field and its offset in the payload (checked below)
_AT_UTC = const(54)
_KEY_INTS = const(14)  # the inputs held outside the arrays compared (Status.pack_into)

M_STATUS_INFO = 0x82
_FIELDS = MESSAGES[M_STATUS_INFO][1]
EXTRA = ("prime_today", "day", "local_ms")  # not on the wire: for the console and the host
NAMES = tuple(name for name, _ in _FIELDS) + EXTRA
WIRE_COUNT = len(_FIELDS)
# one struct format for the whole payload; last_cmd_id packed as "i" (the same bytes: it
# is kept signed, as in the pump state)
_CODES = tuple("i" if name == "last_cmd_id" else code for name, code in _FIELDS)
FORMAT = "<" + "".join(_CODES)
SIZE = struct.calcsize(FORMAT)
INDEX = {name: i for i, name in enumerate(NAMES)}
# for get(): each payload field's struct format (one string per code, shared) and offset
_one = {}
_FMT = tuple(_one.setdefault(code, "<" + code) for code in _CODES)
_OFF = bytearray(WIRE_COUNT)
for _i in range(1, WIRE_COUNT):
    _OFF[_i] = _OFF[_i - 1] + struct.calcsize(_FMT[_i - 1])
del _i, _one, _CODES


def same_portable(dst, src, n, skip=None):
    """1 if dst[i] == src[i] for every i < n with no `skip[i]`; either way dst[0:n] =
    src[0:n] after it (a skipped element is copied, never compared). Allocation-free.
    native.same32 (with `skip`) / same8 (without) are the viper versions."""
    while n > 0:
        n -= 1
        if dst[n] != src[n]:
            if skip is not None and skip[n]:
                dst[n] = src[n]
                continue
            while n >= 0:
                dst[n] = src[n]
                n -= 1
            return 0
    return 1


def copy_portable(dst, at, src, start, n):
    """dst[at:at + n] = src[start:start + n] without a slice (native.copy's twin)."""
    i = 0
    while i < n:
        dst[at + i] = src[start + i]
        i += 1


same32 = same8 = same_portable
copy = copy_portable
if NATIVE:
    from firmware.native import copy, same8, same32  # noqa: F811


if (WIRE_COUNT != 29 or NAMES[_F_UTC] != "utc" or _FIELDS[_F_UTC][1] != "I"
        or _OFF[_F_UTC] != _AT_UTC):
    # pack_into names every field (a new status_info field goes there too) and writes utc
    raise ImportError("status_info changed: firmware/status.py packs 29 fields, utc as <I at 54")


class Status:
    def __init__(self, pump):
        self.pump = pump
        self.state = pump.state
        self.buf = bytearray(SIZE)  # refresh(): the last snapshot for get()
        self.extra = array("i", [0] * len(EXTRA))
        # the kept payload and what it was computed from (pack_into); on runtimes without
        # a native emitter comparing costs more than computing: off (tests turn it on)
        self.cache = NATIVE
        self.valid = False  # payload holds the status of the inputs below
        self.payload = bytearray(SIZE)
        self.utc = 0  # the payload's utc field
        self.k_state = array("i", pump.state)
        # The state words every tick moves (the clocks, the pulse accumulators) are not
        # compared: the status reads them only through the utc field (written into every
        # answer) and the values among the key ints that it makes of them (pack_into).
        self.skip = bytearray(_STATE_LEN)
        for i in (_S_LOCAL_MS, _S_MONO_S, _S_TEMP_LEFT, _S_SET_AGE, _S_EXT_ELAPSED,
                  _S_BASAL_ACC, _S_BOLUS_ACC, _S_EXT_ACC):
            self.skip[i] = 1
        self.k_alarms = bytearray(pump.alarms.active)
        self.k_ints = array("i", [0] * _KEY_INTS)
        self.now_ints = array("i", [0] * _KEY_INTS)
        self.no_skip = bytearray(_KEY_INTS)

    def pack_into(self, buf, at):
        """status_info's payload (SIZE bytes) at buf[at:], allocation-free: the kept one
        (its utc field written again) if no input changed since it was packed, else read
        from the pump (one struct call) and kept."""
        if not self.cache:
            self.pack_fresh(buf, at)
            return
        # Every input, every time (the next call compares with these). The settings enter
        # through the three values the status reads (comparing the 327-word settings array
        # costs ~13,000 M0+ instructions, more than these); the skipped state words
        # through what the status makes of them, at its resolution: a tick that moved
        # only the clock keeps the payload.
        pump = self.pump
        st = self.state
        cgm = pump.cgm
        values = pump.settings.values
        now = self.now_ints
        mono = st[_S_MONO_S]
        if st[_S_TIME_SET]:  # Settings.profile_rate() inline: the slot's rate
            profile = values[_V_SCHEDULE + (st[_S_LOCAL_DAY] + _EPOCH_WEEKDAY) % 7]
            rate = values[_V_RATES + _SLOTS * profile + st[_S_LOCAL_MS] // _SLOT_MS]
        else:
            rate = pump.settings.profile_rate()
        now[0] = rate
        now[1] = offset = values[_AT_OFFSET]  # the UTC offset
        now[2] = values[_AT_DIA]  # with the dose rings and the state: IOB
        now[3] = pump.doses.gen  # counts every change of the dose rings
        now[4] = pump.history.next_seq
        now[5] = pump.selftest_bits
        now[6] = pump.motor.position()  # the reservoir
        now[7] = cgm.last
        now[8] = (mono - cgm.last_s) // 60  # Cgm.age_min() moves only with it
        now[9] = cgm.readings
        now[10] = cgm.sensor
        now[11] = cgm.trend
        now[12] = mono % _BUCKET_S // 60  # the minute Pump.iob() reads
        now[13] = st[_S_TEMP_LEFT] // 60000  # temp_left_min
        same = same32(self.k_state, st, _STATE_LEN, self.skip)
        same &= same32(self.k_ints, now, _KEY_INTS, self.no_skip)
        same &= same8(self.k_alarms, pump.alarms.active, ALARM_COUNT)
        # the one field that moves with the clock's seconds: Pump.utc_seconds() inline
        utc = st[_S_LOCAL_DAY] * 86400 + st[_S_LOCAL_MS] // 1000 - offset * 60
        if utc < 0:
            utc = 0
        if same and self.valid:
            if utc != self.utc:  # the kept payload's utc field, written when it moved
                pack_into("<I", self.payload, _AT_UTC, utc)
                self.utc = utc
            copy(buf, at, self.payload, 0, SIZE)
            return
        self.valid = False  # the inputs were taken: only a complete pack is kept
        self._pack(buf, at, rate, offset, utc)
        copy(self.payload, 0, buf, at, SIZE)
        self.utc = utc
        self.valid = True

    def pack_fresh(self, buf, at):
        """The payload read from the pump, never the kept one (what pack_into does without
        the cache; tests compare the two). Allocation-free."""
        pump = self.pump
        self._pack(buf, at, pump.settings.profile_rate(), pump.setting(SET_UTC_OFFSET),
                   pump.utc_seconds())

    def _pack(self, buf, at, profile_rate, offset, utc):
        """Read the pump; the payload at buf[at:]. One struct call, allocation-free. The
        profile rate, the UTC offset and utc come from the caller (pack_into has just read
        them as keys: not read twice)."""
        pump = self.pump
        st = self.state
        p = pump.pulse
        rate = pump.basal_rate()
        reservoir = pump.reservoir_pulses() * p
        cgm = pump.cgm
        alarms = pump.alarms
        # the active alarms as a bit mask: scan only up to the last active one
        mask = 0
        left = alarms.count
        if left:
            active = alarms.active
            i = 0
            n = ALARM_COUNT
            while left and i < n:
                if active[i]:
                    mask |= 1 << i
                    left -= 1
                i += 1
        struct.pack_into(
            FORMAT, buf, at,
            st[_S_STOP], rate, profile_rate, st[_S_TEMP_KIND], st[_S_TEMP_VALUE],
            st[_S_TEMP_LEFT] // 60000, st[_S_BOLUS_ID], st[_S_BOLUS_KIND],
            (st[_S_NOW_DONE] + st[_S_EXT_DONE]) * p, (st[_S_NOW_REQ] + st[_S_EXT_REQ]) * p,
            reservoir, minutes_left(reservoir, rate), st[_S_BATTERY], pump.iob(),
            st[_S_BASAL_TODAY], st[_S_BOLUS_TODAY], mask, utc,
            offset, st[_S_TIME_SET], st[_S_LAST_CMD], st[_S_LAST_CODE],
            st[_S_LAST_DETAIL], pump.history.next_seq, pump.selftest_bits,
            cgm.last, cgm.age_min(), cgm.trend, cgm.flags())

    def refresh(self):
        """Read the pump into the snapshot's own buffer, for get(). Allocation-free."""
        self.pack_into(self.buf, 0)
        st = self.state
        x = self.extra
        x[0] = st[_S_PRIME_TODAY]
        x[1] = st[_S_LOCAL_DAY]
        x[2] = st[_S_LOCAL_MS]

    def get(self, name):
        """A field of the last refresh by name (status_info's names, then EXTRA)."""
        i = INDEX[name]
        if i >= WIRE_COUNT:
            return self.extra[i - WIRE_COUNT]
        return struct.unpack_from(_FMT[i], self.buf, _OFF[i])[0]


def snapshot(pump):
    """The pump's one Status (made on first use, then shared by link, console, host)."""
    s = getattr(pump, "status_snapshot", None)
    if s is None:
        s = Status(pump)
        pump.status_snapshot = s
    return s
