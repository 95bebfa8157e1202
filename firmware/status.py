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
IOB, UTC) and scans the alarms only up to the last active one.
"""

import struct
from array import array

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
from protocol.spec import ALARM_COUNT, MESSAGES, SET_UTC_OFFSET

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
if WIRE_COUNT != 29:  # pack_into names every field: a new status_info field goes there too
    raise ImportError("status_info has %d fields; firmware/status.py packs 29" % WIRE_COUNT)


class Status:
    def __init__(self, pump):
        self.pump = pump
        self.state = pump.state
        self.buf = bytearray(SIZE)  # refresh(): the last snapshot for get()
        self.extra = array("i", [0] * len(EXTRA))

    def pack_into(self, buf, at):
        """Read the pump; status_info's payload (SIZE bytes) at buf[at:]. One struct call,
        allocation-free."""
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
