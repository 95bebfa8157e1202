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
when none of it changed, a status is the kept payload (on the QEMU ARM board ~27,000
Cortex-M0+ instructions instead of ~80,000 for the pack). Every tick moves the state
array, so a host polling faster than the tick gets the kept payload and a slower one a
fresh pack (plus ~9,000 for the comparison). Compared by content, not by a change counter:
nothing that writes the pump's state has to remember to say so
(tests/test_status_cache.py).
"""

import struct
from array import array

from firmware.crc import NATIVE
from firmware.layout import (
    S_BASAL_TODAY,
    S_BATTERY,
    S_BOLUS_ID,
    S_BOLUS_KIND,
    S_BOLUS_TODAY,
    S_EXT_DONE,
    S_EXT_REQ,
    S_LAST_CMD,
    S_LAST_CODE,
    S_LAST_DETAIL,
    S_LOCAL_DAY,
    S_LOCAL_MS,
    S_NOW_DONE,
    S_NOW_REQ,
    S_PRIME_TODAY,
    S_STOP,
    S_TEMP_KIND,
    S_TEMP_LEFT,
    S_TEMP_VALUE,
    S_TIME_SET,
)
from firmware.pump import minutes_left
from firmware.settings import at
from protocol.spec import ALARM_COUNT, MESSAGES, SET_DIA, SET_UTC_OFFSET

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
_KEY_INTS = 12  # the inputs held outside the arrays compared (Status._unchanged)


def same_portable(dst, src, n):
    """1 if dst[0:n] == src[0:n] (element by element); otherwise dst[0:n] = src[0:n] and
    0. Allocation-free. native.same32 / same8 are the viper versions."""
    while n > 0:
        n -= 1
        if dst[n] != src[n]:
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


if WIRE_COUNT != 29:  # pack_into names every field: a new status_info field goes there too
    raise ImportError("status_info has %d fields; firmware/status.py packs 29" % WIRE_COUNT)


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
        self.k_state = array("i", pump.state)
        self.n_state = len(pump.state)
        self.k_alarms = bytearray(pump.alarms.active)
        self.at_offset = at(SET_UTC_OFFSET)  # where the two settings read are held
        self.at_dia = at(SET_DIA)
        self.k_ints = array("i", [0] * _KEY_INTS)
        self.now_ints = array("i", [0] * _KEY_INTS)

    def pack_into(self, buf, at):
        """status_info's payload (SIZE bytes) at buf[at:], allocation-free: the kept one if
        no input changed since it was packed, else read from the pump (one struct call)."""
        if not self.cache:
            self._pack(buf, at)
            return
        # The state array first: every tick moves it (the clock), and then the status
        # after a tick costs one comparison more than without a cache. The keys of the
        # other inputs are not taken then, so the payload packed is not kept: the next
        # status takes them all and packs again, the ones after it are the kept payload.
        if not same32(self.k_state, self.state, self.n_state):
            self.valid = False
            self._pack(buf, at)
            return
        # The other inputs, all of them (the next call compares with these). The
        # settings enter through the three values the status reads (comparing the
        # 327-word settings array costs ~13,000 M0+ instructions, more than these).
        pump = self.pump
        cgm = pump.cgm
        settings = pump.settings
        values = settings.values
        now = self.now_ints
        now[0] = settings.profile_rate()  # with the state: the basal rate
        now[1] = values[self.at_offset]  # the UTC offset
        now[2] = values[self.at_dia]  # with the dose rings and the state: IOB
        now[3] = pump.doses.gen  # counts every change of the dose rings
        now[4] = pump.history.next_seq
        now[5] = pump.selftest_bits
        now[6] = pump.motor.position()  # the reservoir
        now[7] = cgm.last
        now[8] = cgm.last_s
        now[9] = cgm.readings
        now[10] = cgm.sensor
        now[11] = cgm.trend
        same = same32(self.k_ints, now, _KEY_INTS)
        same &= same8(self.k_alarms, pump.alarms.active, ALARM_COUNT)
        payload = self.payload
        if same and self.valid:
            copy(buf, at, payload, 0, SIZE)
            return
        self.valid = False  # the inputs were taken: only a complete pack is kept
        self._pack(buf, at)
        copy(payload, 0, buf, at, SIZE)
        self.valid = True

    def _pack(self, buf, at):
        """Read the pump; the payload at buf[at:]. One struct call, allocation-free."""
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
            st[S_STOP], rate, pump.settings.profile_rate(), st[S_TEMP_KIND], st[S_TEMP_VALUE],
            st[S_TEMP_LEFT] // 60000, st[S_BOLUS_ID], st[S_BOLUS_KIND],
            (st[S_NOW_DONE] + st[S_EXT_DONE]) * p, (st[S_NOW_REQ] + st[S_EXT_REQ]) * p,
            reservoir, minutes_left(reservoir, rate), st[S_BATTERY], pump.iob(),
            st[S_BASAL_TODAY], st[S_BOLUS_TODAY], mask, pump.utc_seconds(),
            pump.setting(SET_UTC_OFFSET), st[S_TIME_SET], st[S_LAST_CMD], st[S_LAST_CODE],
            st[S_LAST_DETAIL], pump.history.next_seq, pump.selftest_bits,
            cgm.last, cgm.age_min(), cgm.trend, cgm.flags())

    def refresh(self):
        """Read the pump into the snapshot's own buffer, for get(). Allocation-free."""
        self.pack_into(self.buf, 0)
        st = self.state
        x = self.extra
        x[0] = st[S_PRIME_TODAY]
        x[1] = st[S_LOCAL_DAY]
        x[2] = st[S_LOCAL_MS]

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
