"""The pump's status snapshot (issue 16): the one place that reads the pump for a status.

`snapshot(pump)` is the pump's single `Status`. `refresh()` reads the pump into
`values`, an int array in status_info's field order (protocol/spec.py) followed by the
EXTRA fields the host-side readers also show; it allocates nothing (values below 2**30 on
32-bit ports). The link packs the status_info part into its frame with one struct call
(`pack_into`); the bench console and Pump.status() read fields by name (`get`).

    snap = snapshot(pump)
    snap.refresh()
    snap.get("iob"), snap.get("prime_today")
"""

import struct
from array import array

from firmware.pump import (
    MIN_MS,
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
    minutes_left,
)
from protocol.spec import ALARM_COUNT, MESSAGES, SET_UTC_OFFSET

M_STATUS_INFO = 0x82
_FIELDS = MESSAGES[M_STATUS_INFO][1]
EXTRA = ("prime_today", "day", "local_ms")  # not on the wire: for the console and the host
NAMES = tuple(name for name, _ in _FIELDS) + EXTRA
WIRE_COUNT = len(_FIELDS)
INDEX = {name: i for i, name in enumerate(NAMES)}
# one struct format for the whole payload; "I" packed as "i": the same bytes for every
# value the int array holds (last_cmd_id is kept signed, as in the pump state)
FORMAT = "<" + "".join("i" if code == "I" else code for _, code in _FIELDS)
PAYLOAD_SIZE = struct.calcsize(FORMAT)
if WIRE_COUNT != 29:  # pack_into names every field: a new status_info field goes there too
    raise ImportError("status_info has %d fields; firmware/status.py packs 29" % WIRE_COUNT)


def signed32(v):
    """u32 -> the same bits as a signed 32-bit int (for array('i') storage)."""
    return v - 0x100000000 if v >= 0x80000000 else v


class Status:
    def __init__(self, pump):
        self.pump = pump
        self.values = array("i", [0] * len(NAMES))

    def refresh(self):
        """Read the pump into `values`. Allocation-free."""
        pump = self.pump
        st = pump.state
        v = self.values
        p = pump.pulse
        rate = pump.basal_rate()
        reservoir = pump.reservoir_mu()
        v[0] = st[S_STOP]
        v[1] = rate
        v[2] = pump.profile_rate()
        v[3] = st[S_TEMP_KIND]
        v[4] = st[S_TEMP_VALUE]
        v[5] = st[S_TEMP_LEFT] // MIN_MS
        v[6] = st[S_BOLUS_ID]
        v[7] = st[S_BOLUS_KIND]
        v[8] = (st[S_NOW_DONE] + st[S_EXT_DONE]) * p
        v[9] = (st[S_NOW_REQ] + st[S_EXT_REQ]) * p
        v[10] = reservoir
        v[11] = minutes_left(reservoir, rate)
        v[12] = st[S_BATTERY]
        v[13] = pump.iob()
        v[14] = st[S_BASAL_TODAY]
        v[15] = st[S_BOLUS_TODAY]
        alarms = pump.alarms
        mask = 0
        if alarms.count:
            active = alarms.active
            for i in range(ALARM_COUNT):
                if active[i]:
                    mask |= 1 << i
        v[16] = signed32(mask)
        v[17] = signed32(pump.utc_seconds())
        v[18] = pump.setting(SET_UTC_OFFSET)
        v[19] = st[S_TIME_SET]
        v[20] = st[S_LAST_CMD]
        v[21] = st[S_LAST_CODE]
        v[22] = st[S_LAST_DETAIL]
        v[23] = pump.history.next_seq
        v[24] = pump.selftest_bits
        cgm = pump.cgm
        v[25] = cgm.last
        v[26] = cgm.age_min()
        v[27] = cgm.trend
        v[28] = cgm.flags()
        v[29] = st[S_PRIME_TODAY]
        v[30] = st[S_LOCAL_DAY]
        v[31] = st[S_LOCAL_MS]

    def get(self, name):
        """A field of the last refresh by name (status_info's names, then EXTRA)."""
        return self.values[INDEX[name]]

    def pack_into(self, buf, at):
        """status_info's payload at buf[at:], one struct call. Allocation-free."""
        v = self.values
        struct.pack_into(FORMAT, buf, at, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                         v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16], v[17],
                         v[18], v[19], v[20], v[21], v[22], v[23], v[24], v[25], v[26], v[27],
                         v[28])


def snapshot(pump):
    """The pump's one Status (made on first use, then shared by link, console, host)."""
    s = getattr(pump, "status_snapshot", None)
    if s is None:
        s = Status(pump)
        pump.status_snapshot = s
    return s
